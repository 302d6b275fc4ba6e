"""The audit log of a real broker: one event per call, the right codes, no secrets anywhere."""

from __future__ import annotations

import base64
import json
import stat
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.core.totp import STEP_SECONDS, totp_code
from tests.support.broker_proc import BrokerProcess, Creds

POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
    }
)


def _events(broker: BrokerProcess) -> list[dict[str, Any]]:
    path = broker.data_dir / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_event_per_call_and_no_secrets(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    acct = broker.account_id()
    root = broker.root_creds()
    iam = broker.client("iam", root)
    expected: list[tuple[str, str | None]] = []

    iam.create_user(UserName="alice")
    expected.append(("CreateUser", None))
    iam.put_user_policy(UserName="alice", PolicyName="assume", PolicyDocument=POLICY)
    expected.append(("PutUserPolicy", None))
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    expected.append(("CreateAccessKey", None))
    alice = Creds(key["AccessKeyId"], key["SecretAccessKey"])
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{acct}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    role = iam.create_role(RoleName="reader", AssumeRolePolicyDocument=trust)["Role"]
    expected.append(("CreateRole", None))

    resp = broker.client("sts", alice).assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
    expected.append(("AssumeRole", None))
    c = resp["Credentials"]
    session = Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])

    ident = broker.client("sts", session).get_caller_identity()
    expected.append(("GetCallerIdentity", None))
    assert ident["Arn"].endswith("assumed-role/reader/s1")

    with pytest.raises(ClientError) as denied:
        broker.client("iam", session).list_users()
    expected.append(("ListUsers", "AccessDenied"))
    assert denied.value.response["Error"]["Code"] == "AccessDenied"

    with pytest.raises(ClientError) as bad_key:
        broker.client("iam", Creds("AKIAIOSFODNN7EXAMPLE", "x" * 40)).get_user()
    expected.append(("GetUser", "InvalidClientTokenId"))
    assert bad_key.value.response["Error"]["Code"] == "InvalidClientTokenId"

    with pytest.raises(ClientError):
        iam.get_user(UserName="nobody")
    expected.append(("GetUser", "NoSuchEntity"))

    assert broker.stop() == 0  # shutdown flushes the spool
    events = _events(broker)
    assert [(e["eventName"], e.get("errorCode")) for e in events] == expected
    assert len({e["eventID"] for e in events}) == len(events)
    assert all(e["requestID"] for e in events)

    by_name = {e["eventName"]: e for e in events}
    assumed = by_name["AssumeRole"]
    assert assumed["eventSource"] == "sts.amazonaws.com"
    assert assumed["userIdentity"]["type"] == "IAMUser"
    assert assumed["userIdentity"]["accessKeyId"] == alice.access_key_id
    assert assumed["requestParameters"]["roleArn"] == role["Arn"]
    assert assumed["responseElements"]["credentials"] == {
        "accessKeyId": session.access_key_id,
        "expiration": assumed["responseElements"]["credentials"]["expiration"],
    }
    caller = by_name["GetCallerIdentity"]["userIdentity"]
    assert caller["type"] == "AssumedRole"
    assert caller["sessionContext"]["sessionIssuer"]["arn"] == role["Arn"]
    created = by_name["CreateAccessKey"]
    assert created["responseElements"]["accessKey"]["accessKeyId"] == alice.access_key_id
    put = by_name["PutUserPolicy"]["requestParameters"]
    assert put["policyDocument"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    unknown = events[-2]
    assert unknown["userIdentity"] == {"type": "Unknown"}

    secrets = [root.secret_access_key, alice.secret_access_key, session.secret_access_key]
    assert session.session_token is not None
    secrets.append(session.session_token)
    audit_text = (broker.data_dir / "audit.jsonl").read_text()
    log_text = broker.log()
    for secret in secrets:
        assert secret not in audit_text
        assert secret not in log_text

    tail = broker.run_cli(["audit", "tail", "--filter", "errorCode=AccessDenied", "-n", "5"])
    lines = [json.loads(line) for line in tail.splitlines()]
    assert [e["eventName"] for e in lines] == ["ListUsers"]
    last = broker.run_cli(["audit", "tail", "-n", "2"])
    assert [json.loads(x)["errorCode"] for x in last.splitlines()] == [
        "InvalidClientTokenId",
        "NoSuchEntity",
    ]


def test_passwords_sign_in_and_mfa_seeds_never_reach_the_log(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    iam = broker.client("iam", broker.root_creds())
    first, second = "Audit-Passw0rd-1!", "Audit-Passw0rd-2!"
    wrong = "Not-The-Passw0rd!"
    expected: list[tuple[str, str | None]] = []

    iam.create_user(UserName="bob")
    expected.append(("CreateUser", None))
    iam.create_login_profile(UserName="bob", Password=first)
    expected.append(("CreateLoginProfile", None))
    iam.update_login_profile(UserName="bob", Password=second)
    expected.append(("UpdateLoginProfile", None))
    with pytest.raises(ClientError) as weak:
        iam.update_login_profile(UserName="bob", Password="Qz9weak")
    assert weak.value.response["Error"]["Code"] == "PasswordPolicyViolation"
    expected.append(("UpdateLoginProfile", "PasswordPolicyViolation"))
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob")["VirtualMFADevice"]
    expected.append(("CreateVirtualMFADevice", None))
    seed_text = device["Base32StringSeed"].decode("ascii")
    seed = base64.b32decode(seed_text)
    step = int(time.time()) // STEP_SECONDS
    iam.enable_mfa_device(
        UserName="bob",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp_code(seed, (step - 2) * STEP_SECONDS),
        AuthenticationCode2=totp_code(seed, (step - 1) * STEP_SECONDS),
    )
    expected.append(("EnableMFADevice", None))

    def sign_in(password: str) -> dict[str, Any]:
        code = totp_code(seed, (int(time.time()) // STEP_SECONDS) * STEP_SECONDS)
        body = {"account": broker.account_id(), "user": "bob", "password": password}
        reply = broker.request(
            "POST",
            "/signin",
            body=json.dumps({**body, "mfa_code": code}).encode(),
            headers={"Content-Type": "application/json"},
        )
        return {"status": reply.status, "body": json.loads(reply.body)}

    assert sign_in(wrong)["status"] == 401
    expected.append(("ConsoleLogin", "SigninFailed"))
    ok = sign_in(second)
    assert ok["status"] == 200
    expected.append(("ConsoleLogin", None))

    assert broker.stop() == 0
    events = _events(broker)
    assert [(e["eventName"], e.get("errorCode")) for e in events] == expected
    logins = [e for e in events if e["eventName"] == "ConsoleLogin"]
    assert [e["responseElements"]["ConsoleLogin"] for e in logins] == ["Failure", "Success"]
    assert logins[1]["additionalEventData"]["MFAUsed"] == "Yes"

    secrets = [first, second, wrong, "Qz9weak", seed_text, device["Base32StringSeed"].decode()]
    secrets += [ok["body"]["SecretAccessKey"], ok["body"]["SessionToken"]]
    secrets.append(base64.b64encode(device["Base32StringSeed"]).decode("ascii"))
    audit_text = (broker.data_dir / "audit.jsonl").read_text()
    log_text = broker.log()
    for secret in secrets:
        assert secret not in audit_text
        assert secret not in log_text
