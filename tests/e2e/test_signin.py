"""Password sign-in (``POST /signin``) of a real ``broker serve`` process.

Covers sign-in with and without MFA (TOTP codes computed here from the seed the broker returned),
uniform failures, lockout and recovery, forced password changes (reset required, maximum age,
hard expiry), sign-in by account alias, the cookie, and that the returned credentials work with
boto3. The password's age is moved back by rewriting its ``login/`` record in the SQLite store,
which is what the passing of days would do.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.core.totp import STEP_SECONDS, totp_code
from tests.support.broker_proc import BrokerProcess, Creds, HttpReply

LOCKOUT_SECONDS = 2
MAX_FAILURES = 3
ENV = {
    "BROKER_SIGNIN_HASH_TIME_COST": "1",
    "BROKER_SIGNIN_HASH_MEMORY_KIB": "64",
    "BROKER_SIGNIN_MAX_FAILURES": str(MAX_FAILURES),
    "BROKER_SIGNIN_LOCKOUT_SECONDS": str(LOCKOUT_SECONDS),
}
PASSWORD = "Sign-in-Passw0rd"
NEW_PASSWORD = "Changed-Passw0rd"
MFA_ONLY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iam:ListUsers",
                "Resource": "*",
                "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
            }
        ],
    }
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", env=ENV).start()
    yield proc
    proc.stop()


def post(broker: BrokerProcess, path: str = "/signin", **body: Any) -> HttpReply:
    return broker.request(
        "POST",
        path,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


def session_creds(reply: HttpReply) -> Creds:
    assert reply.status == 200, reply.text
    doc = json.loads(reply.body)
    return Creds(doc["AccessKeyId"], doc["SecretAccessKey"], doc["SessionToken"])


def new_user(broker: BrokerProcess, name: str, **profile: Any) -> str:
    iam = broker.client("iam", broker.root_creds())
    arn = str(iam.create_user(UserName=name)["User"]["Arn"])
    iam.create_login_profile(UserName=name, Password=PASSWORD, **profile)
    return arn


def enable_mfa(broker: BrokerProcess, user: str) -> bytes:
    """Give ``user`` a virtual MFA device, enabled with the codes of the two previous steps.

    The current step's code stays unused, so a sign-in can use it right away.
    """
    iam = broker.client("iam", broker.root_creds())
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"]
    seed = base64.b32decode(device["Base32StringSeed"])
    step = int(time.time()) // STEP_SECONDS
    iam.enable_mfa_device(
        UserName=user,
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp_code(seed, (step - 2) * STEP_SECONDS),
        AuthenticationCode2=totp_code(seed, (step - 1) * STEP_SECONDS),
    )
    return seed


def current_code(seed: bytes) -> str:
    return totp_code(seed, (int(time.time()) // STEP_SECONDS) * STEP_SECONDS)


def not_a_code(seed: bytes) -> str:
    step = int(time.time()) // STEP_SECONDS
    taken = {totp_code(seed, s * STEP_SECONDS) for s in range(step - 5, step + 6)}
    return next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in taken)


def age_password(broker: BrokerProcess, user: str, days: int) -> None:
    """Make ``user``'s password ``days`` days older, as time passing would."""
    db = sqlite3.connect(broker.data_dir / "broker.db", timeout=10)
    try:
        account = broker.account_id()
        key = f"login/{user.lower()}"
        (value,) = db.execute(
            "SELECT value FROM records WHERE ns = ? AND key = ?", (account, key)
        ).fetchone()
        doc = json.loads(value)
        changed = dt.datetime.fromisoformat(doc["changed"].replace("Z", "+00:00"))
        doc["changed"] = (changed - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with db:
            db.execute(
                "UPDATE records SET value = ?, version = version + 1 WHERE ns = ? AND key = ?",
                (json.dumps(doc).encode(), account, key),
            )
    finally:
        db.close()


def test_signin_without_and_with_mfa(broker: BrokerProcess) -> None:
    account = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    alice_arn = new_user(broker, "alice")
    bob_arn = new_user(broker, "bob")
    for name in ("alice", "bob"):
        iam.put_user_policy(UserName=name, PolicyName="mfa-only", PolicyDocument=MFA_ONLY)
    seed = enable_mfa(broker, "bob")

    # Alice (no device): a password is enough; her session is not MFA-authenticated.
    alice = session_creds(post(broker, account=account, user="alice", password=PASSWORD))
    assert broker.client("sts", alice).get_caller_identity()["Arn"] == alice_arn
    with pytest.raises(Exception) as denied:
        broker.client("iam", alice).list_users()
    assert "AccessDenied" in str(denied.value)

    # Bob has a device: without a code, or with a wrong one, the answer is the uniform 401.
    no_code = post(broker, account=account, user="bob", password=PASSWORD)
    wrong = post(broker, account=account, user="bob", password=PASSWORD, mfa_code=not_a_code(seed))
    code = current_code(seed)
    ok = post(broker, account=account, user="bob", password=PASSWORD, mfa_code=code)
    bob = session_creds(ok)
    replayed = post(broker, account=account, user="bob", password=PASSWORD, mfa_code=code)
    wrong_password = post(broker, account=account, user="alice", password="Wrong-Passw0rd")
    unknown_user = post(broker, account=account, user="nobody", password=PASSWORD)
    unknown_account = post(broker, account="000000000000", user="alice", password=PASSWORD)
    failures = [no_code, wrong, replayed, wrong_password, unknown_user, unknown_account]
    assert {(r.status, r.body) for r in failures} == {(401, failures[0].body)}
    assert json.loads(failures[0].body)["code"] == "SigninFailed"

    assert broker.client("sts", bob).get_caller_identity()["Arn"] == bob_arn
    users = broker.client("iam", bob).list_users()["Users"]  # MFA-only policy: allowed
    assert {u["UserName"] for u in users} == {"alice", "bob"}

    # The cookie: HttpOnly, SameSite=Strict, Path=/, Max-Age = session length, no secret.
    cookie = ok.headers["set-cookie"]
    attrs = [a.strip() for a in cookie.split(";")]
    name, value = attrs[0].split("=", 1)
    assert name == "broker-session" and value
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs
    assert "Max-Age=43200" in attrs and "Secure" not in attrs  # plain HTTP
    assert bob.secret_access_key not in cookie and (bob.session_token or "") not in cookie

    # Last sign-in time is recorded (pwused/), and each attempt was audited without secrets.
    broker.stop()
    audit = (broker.data_dir / "audit.jsonl").read_text()
    events = [json.loads(line) for line in audit.splitlines()]
    logins = [e for e in events if e["eventName"] == "ConsoleLogin"]
    outcomes = [e["responseElements"]["ConsoleLogin"] for e in logins]
    assert outcomes.count("Success") == 2 and outcomes.count("Failure") == 6
    assert all(e["eventSource"] == "signin.amazonaws.com" for e in logins)
    mfa_success = [e for e in logins if e["additionalEventData"]["MFAUsed"] == "Yes"]
    assert [e["userIdentity"]["arn"] for e in mfa_success] == [bob_arn]
    hidden = [
        e for e in logins if e["userIdentity"].get("userName") == "HIDDEN_DUE_TO_SECURITY_REASONS"
    ]
    assert len(hidden) == 2  # the unknown user and the unknown account
    for secret in (PASSWORD, "Wrong-Passw0rd", code, bob.secret_access_key):
        assert secret not in audit
        assert secret not in broker.log()
    db = sqlite3.connect(broker.data_dir / "broker.db")
    try:
        used = db.execute(
            "SELECT key FROM records WHERE ns = ? AND key LIKE 'pwused/%'", (broker.account_id(),)
        ).fetchall()
    finally:
        db.close()
    assert sorted(k for (k,) in used) == ["pwused/alice", "pwused/bob"]


def test_lockout_and_recovery(broker: BrokerProcess) -> None:
    account = broker.account_id()
    new_user(broker, "carol")
    for _ in range(MAX_FAILURES):
        assert post(broker, account=account, user="carol", password="Wrong-Passw0rd").status == 401
    locked = post(broker, account=account, user="carol", password=PASSWORD)
    assert locked.status == 429
    assert 1 <= int(locked.headers["retry-after"]) <= LOCKOUT_SECONDS
    assert json.loads(locked.body)["code"] == "TooManyFailures"
    # Other users are not affected.
    new_user(broker, "dan")
    assert post(broker, account=account, user="dan", password=PASSWORD).status == 200

    time.sleep(LOCKOUT_SECONDS + 0.5)
    session_creds(post(broker, account=account, user="carol", password=PASSWORD))
    # The success reset the count: MAX_FAILURES - 1 failures do not lock again.
    for _ in range(MAX_FAILURES - 1):
        assert post(broker, account=account, user="carol", password="Wrong-Passw0rd").status == 401
    session_creds(post(broker, account=account, user="carol", password=PASSWORD))


def test_expired_password_forces_a_change(broker: BrokerProcess) -> None:
    account = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    iam.update_account_password_policy(
        MinimumPasswordLength=10, RequireNumbers=True, MaxPasswordAge=30, PasswordReusePrevention=1
    )
    arn = new_user(broker, "erin")
    session_creds(post(broker, account=account, user="erin", password=PASSWORD))
    age_password(broker, "erin", 31)

    expired = post(broker, account=account, user="erin", password=PASSWORD)
    assert expired.status == 403 and json.loads(expired.body)["code"] == "PasswordResetRequired"
    assert "set-cookie" not in expired.headers
    change = "/signin/change-password"
    reuse = post(
        broker, change, account=account, user="erin", password=PASSWORD, new_password=PASSWORD
    )
    assert reuse.status == 400 and json.loads(reuse.body)["code"] == "PasswordPolicyViolation"
    weak = post(broker, change, account=account, user="erin", password=PASSWORD, new_password="x")
    assert weak.status == 400
    changed = post(
        broker, change, account=account, user="erin", password=PASSWORD, new_password=NEW_PASSWORD
    )
    creds = session_creds(changed)
    assert broker.client("sts", creds).get_caller_identity()["Arn"] == arn
    session_creds(post(broker, account=account, user="erin", password=NEW_PASSWORD))
    assert post(broker, account=account, user="erin", password=PASSWORD).status == 401

    # HardExpiry: an expired password cannot be changed by its user, only reset by an admin.
    iam.update_account_password_policy(MinimumPasswordLength=10, MaxPasswordAge=30, HardExpiry=True)
    age_password(broker, "erin", 31)
    hard = post(broker, account=account, user="erin", password=NEW_PASSWORD)
    assert hard.status == 403 and json.loads(hard.body)["code"] == "PasswordExpired"
    refused = post(
        broker,
        change,
        account=account,
        user="erin",
        password=NEW_PASSWORD,
        new_password="Third-Passw0rd",
    )
    assert refused.status == 403 and json.loads(refused.body)["code"] == "PasswordExpired"
    iam.update_login_profile(UserName="erin", Password="Admin-Reset-Passw0rd1")
    session_creds(post(broker, account=account, user="erin", password="Admin-Reset-Passw0rd1"))


def test_reset_required_and_signin_by_alias(broker: BrokerProcess) -> None:
    iam = broker.client("iam", broker.root_creds())
    iam.create_account_alias(AccountAlias="signin-corp")
    arn = new_user(broker, "fay", PasswordResetRequired=True)
    first = post(broker, account="signin-corp", user="fay", password=PASSWORD)
    assert first.status == 403 and json.loads(first.body)["code"] == "PasswordResetRequired"
    creds = session_creds(
        post(
            broker,
            "/signin/change-password",
            account="signin-corp",
            user="fay",
            password=PASSWORD,
            new_password=NEW_PASSWORD,
        )
    )
    assert broker.client("sts", creds).get_caller_identity()["Arn"] == arn
    assert iam.get_login_profile(UserName="fay")["LoginProfile"]["PasswordResetRequired"] is False
    session_creds(post(broker, account="signin-corp", user="fay", password=NEW_PASSWORD))
    # A user name differing only in case is the same user, as in IAM.
    session_creds(post(broker, account="signin-corp", user="FAY", password=NEW_PASSWORD))


def test_malformed_requests_are_client_errors(broker: BrokerProcess) -> None:
    for body, ctype in [
        (b"{", "application/json"),
        (b'{"account": 1}', "application/json"),
        (b"account=1", "application/x-www-form-urlencoded"),
        (b"x" * 20000, "application/json"),
    ]:
        reply = broker.request("POST", "/signin", body=body, headers={"Content-Type": ctype})
        assert 400 <= reply.status < 500
        assert json.loads(reply.body)["code"] in {"MalformedRequest", "RequestEntityTooLarge"}
