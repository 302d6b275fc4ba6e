"""The credential report through the real ``aws`` CLI on a real ``broker serve`` process.

The test sets up users with boto3 (two keys for one user, one used and one made Inactive;
an MFA device for another; console passwords for two more, one of whom signs in), waits for
the last-used write-behind, then runs
``aws iam generate-credential-report`` until it is COMPLETE and decodes the CSV that
``aws iam get-credential-report`` prints.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from broker.core.totp import STEP_SECONDS, totp_code
from tests.support.broker_proc import BrokerProcess, Creds

PASSWORD = "Corr3ct-Horse-Battery!"

HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)


@pytest.fixture
def node(tmp_path: Path) -> Any:
    broker = BrokerProcess(tmp_path / "data", env={"BROKER_TRACKING_FLUSH_SECONDS": "0.2"}).start()
    yield broker
    broker.stop()


def cli_json(node: BrokerProcess, args: list[str], creds: Creds) -> dict[str, Any]:
    out = node.aws(args, creds)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert isinstance(doc, dict)
    return doc


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat()


def test_cli_credential_report(node: BrokerProcess) -> None:
    root = node.root_creds()
    account = node.account_id()
    iam = node.client("iam", root)

    missing = node.aws(["iam", "get-credential-report"], root)
    assert missing.returncode != 0
    assert "ReportNotPresent" in missing.stderr

    carol = iam.create_user(UserName="carol")["User"]
    key1 = iam.create_access_key(UserName="carol")["AccessKey"]
    time.sleep(1.1)  # the second key is younger: it is key 2 in the report
    key2 = iam.create_access_key(UserName="carol")["AccessKey"]
    iam.update_access_key(UserName="carol", AccessKeyId=key2["AccessKeyId"], Status="Inactive")
    dave = iam.create_user(UserName="dave")["User"]
    erin = iam.create_user(UserName="Erin")["User"]

    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="dave-phone")["VirtualMFADevice"]
    seed = base64.b32decode(device["Base32StringSeed"])
    step = int(time.time()) // STEP_SECONDS
    iam.enable_mfa_device(
        UserName="dave",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp_code(seed, (step - 1) * STEP_SECONDS),
        AuthenticationCode2=totp_code(seed, step * STEP_SECONDS),
    )

    # Console passwords under a 90-day policy: fay never signs in, gus signs in once.
    iam.update_account_password_policy(MinimumPasswordLength=12, MaxPasswordAge=90)
    fay = iam.create_user(UserName="fay")["User"]
    cli_json(
        node,
        ["iam", "create-login-profile", "--user-name", "fay", "--password", PASSWORD],
        root,
    )
    fay_profile = iam.get_login_profile(UserName="fay")["LoginProfile"]
    iam.create_user(UserName="gus")
    iam.create_login_profile(UserName="gus", Password=PASSWORD)
    before_signin = dt.datetime.now(dt.UTC).replace(microsecond=0)
    signin = node.request(
        "POST",
        "/signin",
        body=json.dumps({"account": account, "user": "gus", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert signin.status == 200, signin.text

    # Carol's first key makes one call; wait until its last use is written behind.
    carol_key = Creds(key1["AccessKeyId"], key1["SecretAccessKey"])
    cli_json(node, ["sts", "get-caller-identity"], carol_key)
    deadline = time.monotonic() + 15
    last_used: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last_used = iam.get_access_key_last_used(AccessKeyId=key1["AccessKeyId"])[
            "AccessKeyLastUsed"
        ]
        if "LastUsedDate" in last_used:
            break
        time.sleep(0.1)
    assert "LastUsedDate" in last_used

    states = [cli_json(node, ["iam", "generate-credential-report"], root)["State"]]
    assert states == ["STARTED"]
    deadline = time.monotonic() + 30
    while states[-1] != "COMPLETE" and time.monotonic() < deadline:
        time.sleep(0.2)
        states.append(cli_json(node, ["iam", "generate-credential-report"], root)["State"])
    assert states[-1] == "COMPLETE"
    assert set(states[1:-1]) <= {"INPROGRESS"}

    got = cli_json(node, ["iam", "get-credential-report"], root)
    assert got["ReportFormat"] == "text/csv"
    generated = dt.datetime.fromisoformat(got["GeneratedTime"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - generated).total_seconds()) < 120
    text = base64.b64decode(got["Content"]).decode("utf-8")
    assert text.splitlines()[0] == HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["user"] for r in rows] == ["<root_account>", "carol", "dave", "Erin", "fay", "gus"]
    by_user = {r["user"]: r for r in rows}

    root_row = by_user["<root_account>"]
    assert root_row["arn"] == f"arn:aws:iam::{account}:root"
    assert root_row["password_enabled"] == "not_supported"
    assert root_row["password_last_used"] == "not_supported"
    assert root_row["mfa_active"] == "false"
    assert root_row["access_key_1_active"] == "true"
    assert root_row["access_key_1_last_used_date"] != "N/A"  # the root key set all this up
    assert root_row["access_key_1_last_used_region"] == "us-east-1"
    assert root_row["access_key_2_active"] == "false"
    assert root_row["access_key_2_last_rotated"] == "N/A"

    c = by_user["carol"]
    assert c["arn"] == carol["Arn"]
    assert c["user_creation_time"] == iso(carol["CreateDate"])
    assert (c["password_enabled"], c["password_last_used"]) == ("false", "N/A")
    assert (c["password_last_changed"], c["password_next_rotation"]) == ("N/A", "N/A")
    assert c["mfa_active"] == "false"
    assert c["access_key_1_active"] == "true"
    assert c["access_key_1_last_rotated"] == iso(key1["CreateDate"])
    assert c["access_key_1_last_used_date"] == iso(last_used["LastUsedDate"])
    assert c["access_key_1_last_used_region"] == "us-east-1"
    assert c["access_key_1_last_used_service"] == "sts"
    assert c["access_key_2_active"] == "false"
    assert c["access_key_2_last_rotated"] == iso(key2["CreateDate"])
    assert c["access_key_2_last_used_date"] == "N/A"
    assert c["access_key_2_last_used_region"] == "N/A"
    assert c["access_key_2_last_used_service"] == "N/A"
    assert (c["cert_1_active"], c["cert_1_last_rotated"]) == ("false", "N/A")
    assert (c["cert_2_active"], c["cert_2_last_rotated"]) == ("false", "N/A")

    d = by_user["dave"]
    assert d["arn"] == dave["Arn"]
    assert d["mfa_active"] == "true"
    assert d["access_key_1_active"] == d["access_key_2_active"] == "false"
    assert d["access_key_1_last_rotated"] == "N/A"

    e = by_user["Erin"]
    assert e["arn"] == erin["Arn"] == f"arn:aws:iam::{account}:user/Erin"
    assert e["mfa_active"] == "false"
    assert e["password_enabled"] == "false"

    f = by_user["fay"]
    assert f["arn"] == fay["Arn"]
    assert f["password_enabled"] == "true"
    assert f["password_last_used"] == "no_information"
    assert f["password_last_changed"] == iso(fay_profile["CreateDate"])
    rotation = fay_profile["CreateDate"] + dt.timedelta(days=90)
    assert f["password_next_rotation"] == iso(rotation)

    g = by_user["gus"]
    assert g["password_enabled"] == "true"
    used = dt.datetime.fromisoformat(g["password_last_used"])
    assert before_signin <= used <= dt.datetime.now(dt.UTC)

    # Within four hours a new Generate keeps the report.
    again = cli_json(node, ["iam", "generate-credential-report"], root)
    assert again["State"] == "COMPLETE"
    assert cli_json(node, ["iam", "get-credential-report"], root)["Content"] == got["Content"]
