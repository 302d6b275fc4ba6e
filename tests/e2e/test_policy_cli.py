"""``broker policy validate`` and ``broker policy findings``: the real CLI, on a real broker.

``validate`` needs no store: it prints the findings as JSON and exits 1 when any is an ERROR or
a SECURITY_WARNING. ``findings`` reads an account's records (here those of a running broker,
made through boto3) and prints its unused-access and credential findings. A last group runs
the same service on hand-written records and a hand-set clock, for the day thresholds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.clock import iso8601
from broker.service.findings import AccountFindings
from broker.service.txn import Doc, Txn, transact
from broker.store.memory import MemoryStore
from tests.support.broker_proc import REPO, BrokerProcess

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


def broker_cli(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )


def by_code(findings: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["issueCode"] == code]


# -- validate --------------------------------------------------------------------------------


def test_validate_prints_findings_and_exits_1_on_security_warning(tmp_path: Path) -> None:
    policy = tmp_path / "risky.json"
    policy.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}],
            }
        )
    )
    out = broker_cli(["policy", "validate", str(policy)])
    assert out.returncode == 1, out.stderr
    [found] = json.loads(out.stdout)["findings"]
    assert found["issueCode"] == "PASS_ROLE_WITH_STAR_IN_RESOURCE"
    assert found["findingType"] == "SECURITY_WARNING"
    assert found["locations"][0]["path"][0] == {"value": "Statement"}


def test_validate_exits_0_on_warnings_only_and_reads_stdin() -> None:
    text = json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}
    )
    out = broker_cli(["policy", "validate", "-"], stdin=text)
    assert out.returncode == 0, out.stderr
    [found] = json.loads(out.stdout)["findings"]
    assert (found["issueCode"], found["findingType"]) == ("MISSING_VERSION", "WARNING")


def test_validate_clean_policy_and_exit_1_on_error(tmp_path: Path) -> None:
    clean = tmp_path / "clean.json"
    clean.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}
                ],
            }
        )
    )
    out = broker_cli(["policy", "validate", str(clean)])
    assert (out.returncode, json.loads(out.stdout)) == (0, {"findings": []})

    broken = tmp_path / "broken.json"
    broken.write_text('{"Version": "2012-10-17", "Statement": [')
    out = broker_cli(["policy", "validate", str(broken)])
    assert out.returncode == 1
    assert json.loads(out.stdout)["findings"][0]["issueCode"] == "JSON_SYNTAX_ERROR"


def test_validate_trust_policy_type_and_bad_arguments(tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}],
            }
        )
    )
    out = broker_cli(
        [
            "policy",
            "validate",
            str(trust),
            "--type",
            "RESOURCE_POLICY",
            "--resource-type",
            "AWS::IAM::AssumeRolePolicyDocument",
        ]
    )
    assert out.returncode == 1
    [found] = json.loads(out.stdout)["findings"]
    assert found["issueCode"] == "ROLE_TRUST_POLICY_UNSUPPORTED_WILDCARD_IN_PRINCIPAL"

    missing = broker_cli(["policy", "validate", str(tmp_path / "nope.json")])
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    wrong = broker_cli(["policy", "validate", str(trust), "--resource-type", "AWS::S3::Bucket"])
    assert wrong.returncode == 2 and "--resource-type" in wrong.stderr


# -- findings on a running broker --------------------------------------------------------------


def test_findings_of_a_live_account(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.root_creds()
    account = sqlite_broker.account_id()
    iam = sqlite_broker.client("iam", root)
    iam.create_user(UserName="dev")
    key = iam.create_access_key(UserName="dev")["AccessKey"]["AccessKeyId"]
    iam.attach_user_policy(UserName="dev", PolicyArn=ADMIN)
    iam.create_role(
        RoleName="app",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )

    report = json.loads(sqlite_broker.run_cli(["policy", "findings", "--account", account]))
    assert report["account"] == account
    assert report["unusedDays"] == 90
    findings = report["findings"]

    # (The root key was used by this test, but its use may not be flushed yet: only dev's.)
    [unused] = [
        f
        for f in by_code(findings, "ACCESS_KEY_UNUSED_SINCE_CREATION")
        if f["details"]["accessKeyId"] == key
    ]
    assert unused["details"]["ageDays"] == 0
    assert unused["details"]["exceedsThreshold"] is False
    assert unused["findingType"] == "UnusedIAMUserAccessKey"
    assert unused["resource"] == f"arn:aws:iam::{account}:user/dev"
    assert "never used" in unused["findingDetails"]

    [root_keys] = by_code(findings, "ROOT_ACCESS_KEY_PRESENT")
    assert root_keys["details"]["accessKeyIds"] == [root.access_key_id]
    assert root_keys["severity"] == "SECURITY_WARNING"
    assert root_keys["resource"] == f"arn:aws:iam::{account}:root"
    assert by_code(findings, "ROOT_USER_WITHOUT_MFA")

    [direct] = by_code(findings, "USER_POLICY_ATTACHED_DIRECTLY")
    assert direct["resource"] == f"arn:aws:iam::{account}:user/dev"
    assert direct["details"]["attachedPolicies"] == [ADMIN]

    [admin] = by_code(findings, "ADMIN_USER_WITHOUT_MFA")
    assert admin["resource"] == f"arn:aws:iam::{account}:user/dev"

    [role] = by_code(findings, "ROLE_NEVER_ASSUMED")
    assert role["resource"] == f"arn:aws:iam::{account}:role/app"

    [perm] = by_code(findings, "UNUSED_PERMISSION")
    assert perm["resource"] == f"arn:aws:iam::{account}:user/dev"
    assert [s["serviceNamespace"] for s in perm["details"]["services"]] == [
        "access-analyzer",
        "iam",
        "sts",
    ]

    # --unused-days is passed through; an unknown account is an error on stderr.
    short = json.loads(
        sqlite_broker.run_cli(["policy", "findings", "--account", account, "--unused-days", "7"])
    )
    assert short["unusedDays"] == 7
    gone = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "policy",
            "findings",
            "--account",
            "999999999999",
            *sqlite_broker.store_flags(),
        ],
        env=sqlite_broker.environment(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )
    assert gone.returncode == 1
    assert "NoSuchEntity" in gone.stderr


# -- the service on hand-written records -------------------------------------------------------

ACCOUNT = "123456789012"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class HandClock:
    """A clock that stays where the test puts it."""

    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


def ago(days: int) -> str:
    return iso8601(NOW - timedelta(days=days))


def user(name: str, **extra: Any) -> Doc:
    doc: Doc = {
        "name": name,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
        "created": ago(300),
        "groups": [],
        "attached": [],
        "inline": {},
        "keys": [],
    }
    doc.update(extra)
    return doc


def role(name: str, **extra: Any) -> Doc:
    doc: Doc = {
        "name": name,
        "arn": f"arn:aws:iam::{ACCOUNT}:role/{name}",
        "created": ago(300),
        "attached": [],
        "inline": {},
    }
    doc.update(extra)
    return doc


def key(akid: str, owner: str | None, created_days: int, status: str = "Active") -> Doc:
    return {"id": akid, "user": owner, "status": status, "created": ago(created_days)}


ALLOW_IAM_AND_S3 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:*", "s3:GetObject"], "Resource": "*"}],
    }
)


async def test_thresholds_on_hand_written_records() -> None:
    store = MemoryStore()

    async def fill(txn: Txn) -> None:
        txn.put(
            "account",
            {"id": ACCOUNT, "created": ago(400), "root_keys": ["AKROOT"], "mfa": "arn:mfa"},
        )
        txn.put("akey/AKROOT", key("AKROOT", None, 200))
        txn.put("akused/AKROOT", {"time": ago(120), "service": "iam", "region": "us-east-1"})
        txn.put("user/fresh", user("fresh", keys=["AKFRESH"]))
        txn.put("akey/AKFRESH", key("AKFRESH", "fresh", 10))
        txn.put("user/old", user("old", keys=["AKOLD"]))
        txn.put("akey/AKOLD", key("AKOLD", "old", 100))
        txn.put("user/busy", user("busy", keys=["AKBUSY"]))
        txn.put("akey/AKBUSY", key("AKBUSY", "busy", 30))
        txn.put("akused/AKBUSY", {"time": ago(1), "service": "sts", "region": "us-east-1"})
        txn.put("login/old", {"user": "old", "created": ago(100), "changed": ago(100)})
        txn.put("pwused/old", {"time": ago(95)})
        txn.put("login/busy", {"user": "busy", "created": ago(100), "changed": ago(100)})
        txn.put("pwused/busy", {"time": ago(2)})
        txn.put("group/admins", {"name": "admins", "attached": [ADMIN], "inline": {}})
        txn.put("user/boss", user("boss", groups=["admins"], mfa="arn:aws:iam::1:mfa/boss"))
        txn.put("user/nomfa", user("nomfa", groups=["admins"]))
        txn.put("role/app", role("app", inline={"p": ALLOW_IAM_AND_S3}))
        txn.put("rlused/app", {"time": ago(5), "region": "us-east-1"})
        txn.put(
            "accessed/role/app",
            {"iam": {"time": ago(1), "region": "us-east-1", "actions": {}}},
        )
        txn.put("role/stale", role("stale"))
        txn.put("rlused/stale", {"time": ago(200), "region": "us-east-1"})
        txn.put("role/never", role("never"))

    await transact(store, ACCOUNT, fill)
    report = await AccountFindings(store, HandClock()).account_findings(ACCOUNT, 90)
    findings: list[dict[str, Any]] = report["findings"]

    def of(code: str, resource_suffix: str) -> list[dict[str, Any]]:
        return [f for f in by_code(findings, code) if f["resource"].endswith(resource_suffix)]

    assert not by_code(findings, "ROOT_USER_WITHOUT_MFA")
    [root_unused] = of("UNUSED_ACCESS_KEY", ":root")
    assert root_unused["details"]["daysUnused"] == 120
    assert of("ACCESS_KEY_ROTATION", ":root")[0]["details"]["ageDays"] == 200

    [fresh] = of("ACCESS_KEY_UNUSED_SINCE_CREATION", "user/fresh")
    assert (fresh["details"]["ageDays"], fresh["details"]["exceedsThreshold"]) == (10, False)
    assert fresh["severity"] == "SUGGESTION"
    [old] = of("ACCESS_KEY_UNUSED_SINCE_CREATION", "user/old")
    assert (old["details"]["ageDays"], old["details"]["exceedsThreshold"]) == (100, True)
    assert old["severity"] == "WARNING"
    assert of("ACCESS_KEY_ROTATION", "user/old")
    assert not of("ACCESS_KEY_ROTATION", "user/fresh")
    assert not [f for f in findings if "AKBUSY" in json.dumps(f)]

    [password] = of("UNUSED_PASSWORD", "user/old")
    assert password["details"]["daysUnused"] == 95
    assert not of("UNUSED_PASSWORD", "user/busy")

    [nomfa] = by_code(findings, "ADMIN_USER_WITHOUT_MFA")
    assert nomfa["resource"].endswith("user/nomfa")
    assert not by_code(findings, "USER_POLICY_ATTACHED_DIRECTLY")

    assert not of("UNUSED_ROLE", "role/app") and not of("ROLE_NEVER_ASSUMED", "role/app")
    assert of("UNUSED_ROLE", "role/stale")[0]["details"]["daysUnused"] == 200
    assert of("ROLE_NEVER_ASSUMED", "role/never")[0]["details"]["exceedsThreshold"] is True
    [perm] = of("UNUSED_PERMISSION", "role/app")
    assert perm["details"]["services"] == [{"serviceNamespace": "s3", "lastAccessed": None}]
