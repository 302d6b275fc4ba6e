"""Session tokens end to end: tampering, foreign keyrings, expiry, key-id binding, rotation.

Every request goes to a real ``broker serve`` process, signed by botocore's SigV4 signer with the
session token in ``X-Amz-Security-Token``. Each refusal is checked for the AWS code and status a
client sees (``InvalidClientTokenId`` / ``ExpiredToken``, both 403).

Expiry: the broker process reads the real clock and the product has no hook to move it, so the
expired token here is minted by an in-process runtime opened on the broker's own SQLite data
directory with a clock two hours in the past. The process then sees a genuine token of its own
keyring whose expiry has passed. The expiry boundary (one second before, and at, the expiry) is
checked in-process in ``tests/api/test_sts_inprocess.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.app import build_runtime
from broker.clock import SystemClock
from broker.config import load_config
from broker.core.tokens import token_kid
from tests.support.broker_proc import BrokerProcess, Creds, HttpReply

STS_VERSION = "2011-06-15"
PROPAGATION_LIMIT_SECONDS = 10.0
"""How long a test waits for a keyring change to reach the serving process (design: ~1 s)."""

ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
INVALID = (403, "InvalidClientTokenId")
EXPIRED = (403, "ExpiredToken")


def b64decode(token: str) -> bytes:
    """The bytes of a session token (url-safe base64 without padding)."""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64encode(raw: bytes) -> str:
    """The canonical text form of token bytes."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def setup_role(
    broker: BrokerProcess, *, role: str = "worker", path: str = "/"
) -> tuple[Creds, str]:
    """A user allowed everything and a role trusting the account; return (user key, role ARN)."""
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    iam.create_user(UserName="ops")
    iam.put_user_policy(UserName="ops", PolicyName="all", PolicyDocument=ALLOW_ALL)
    key = iam.create_access_key(UserName="ops")["AccessKey"]
    actions = ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": acct}, "Action": actions}]})  # fmt: skip
    arn = iam.create_role(RoleName=role, Path=path, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="all", PolicyDocument=ALLOW_ALL)
    return Creds(key["AccessKeyId"], key["SecretAccessKey"]), str(arn)


def assume(broker: BrokerProcess, user: Creds, role_arn: str, name: str, **extra: Any) -> Creds:
    """AssumeRole through boto3; return the session's credentials."""
    resp = broker.client("sts", user).assume_role(RoleArn=role_arn, RoleSessionName=name, **extra)
    c = resp["Credentials"]
    return Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])


def caller(broker: BrokerProcess, creds: Creds) -> HttpReply:
    """A raw, signed ``GetCallerIdentity`` (no client-side retries or checks)."""
    return broker.signed({"Action": "GetCallerIdentity", "Version": STS_VERSION}, creds,
                         service="sts")  # fmt: skip


def outcome(reply: HttpReply) -> tuple[int, str | None]:
    return reply.status, reply.error_code()


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after the propagation limit."""
    deadline = time.monotonic() + PROPAGATION_LIMIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.05)


# -- tampering ------------------------------------------------------------------------------


def test_a_flipped_byte_anywhere_in_the_token_is_refused(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    user, role = setup_role(broker)
    session = assume(broker, user, role, "tamper")
    assert session.session_token is not None
    assert outcome(caller(broker, session)) == (200, None)
    raw = b64decode(session.session_token)
    assert b64encode(raw) == session.session_token
    refused: dict[int, tuple[int, str | None]] = {}
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 1 << (i % 8)  # a different bit at each position; every byte changes
        forged = Creds(session.access_key_id, session.secret_access_key, b64encode(bytes(flipped)))
        refused[i] = outcome(caller(broker, forged))
    wrong = {i: got for i, got in refused.items() if got != INVALID}
    assert not wrong, f"positions not refused with InvalidClientTokenId: {wrong}"
    # Changes to the text that decode to the same bytes (or nearly) are refused too.
    token = session.session_token
    variants = {
        "padded": token + "=" * (-len(token) % 4 or 4),
        "standard alphabet": token.replace("-", "+").replace("_", "/"),
        "truncated": token[:-1],
        "extended": token + "A",
        "last character": token[:-1] + ("B" if token[-1] != "B" else "C"),
        "empty": "",
    }
    for label, text in variants.items():
        if text == token:
            continue
        forged = Creds(session.access_key_id, session.secret_access_key, text or None)
        assert outcome(caller(broker, forged)) == INVALID, label
    # The genuine token still works after all that.
    assert outcome(caller(broker, session)) == (200, None)


def test_a_token_from_another_brokers_keyring_is_refused(
    sqlite_broker: BrokerProcess, tmp_path: Path
) -> None:
    here = sqlite_broker
    other = BrokerProcess(tmp_path / "other").start()
    try:
        user_here, role_here = setup_role(here)
        user_there, role_there = setup_role(other)
        mine = assume(here, user_here, role_here, "mine")
        theirs = assume(other, user_there, role_there, "theirs")
        assert mine.session_token is not None and theirs.session_token is not None
        assert token_kid(mine.session_token) != token_kid(theirs.session_token)
        assert outcome(caller(other, theirs)) == (200, None)
        assert outcome(caller(here, mine)) == (200, None)
        # Correctly signed with the session's own secret, but sealed by another keyring.
        assert outcome(caller(here, theirs)) == INVALID
        assert outcome(caller(other, mine)) == INVALID
        # The same holds for a GetSessionToken session (another kind of claims).
        c = other.client("sts", user_there).get_session_token(DurationSeconds=900)["Credentials"]
        foreign = Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
        assert outcome(caller(other, foreign)) == (200, None)
        assert outcome(caller(here, foreign)) == INVALID
    finally:
        other.stop()


# -- expiry ---------------------------------------------------------------------------------


class ShiftedClock:
    """The real clock moved by a fixed offset (for minting in the past)."""

    def __init__(self, offset_seconds: int) -> None:
        self._offset = dt.timedelta(seconds=offset_seconds)
        self._real = SystemClock()

    def now(self) -> dt.datetime:
        return self._real.now() + self._offset

    def monotonic(self) -> float:
        return self._real.monotonic()


async def mint_session_token(broker: BrokerProcess, user: Creds, offset_seconds: int) -> Creds:
    """GetSessionToken (900 s) for ``user``, minted in-process on the broker's own data dir."""
    cfg = load_config(
        environ={}, overrides={"store": {"data_dir": str(broker.data_dir), "backend": "sqlite"}}
    )
    rt = await build_runtime(cfg, clock=ShiftedClock(offset_seconds))
    try:
        entry = await rt.authenticator.lookup(user.access_key_id)
        assert entry is not None and entry.active
        issued = await rt.sts.get_session_token(entry.principal, 900, None, None)
    finally:
        await rt.close()
    c = issued.claims
    return Creds(c.access_key_id, c.secret_access_key, issued.token)


async def test_a_token_past_its_expiry_is_refused(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    user, _ = setup_role(broker)
    live = broker.client("sts", user).get_session_token(DurationSeconds=900)["Credentials"]
    live_kid = token_kid(live["SessionToken"])
    # Minted two hours ago for 900 s: a genuine token of this keyring, expired 105 min ago.
    expired = await mint_session_token(broker, user, -7200)
    # Minted now by the same in-process path: accepted, so the refusal below is the expiry.
    fresh = await mint_session_token(broker, user, 0)
    assert expired.session_token is not None and fresh.session_token is not None
    assert token_kid(expired.session_token) == token_kid(fresh.session_token) == live_kid
    ok = caller(broker, fresh)
    assert outcome(ok) == (200, None)
    assert ":user/ops</Arn>" in ok.text
    reply = caller(broker, expired)
    assert outcome(reply) == EXPIRED
    assert reply.error_message() == "The security token included in the request is expired"
    # Through boto3 as well: the client sees the ExpiredToken code with status 403.
    with pytest.raises(ClientError) as err:
        broker.client("iam", expired).list_users()
    assert err.value.response["Error"]["Code"] == "ExpiredToken"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# -- binding to the access key id ----------------------------------------------------------


def test_the_access_key_id_must_be_the_one_sealed_in_the_token(
    sqlite_broker: BrokerProcess,
) -> None:
    broker = sqlite_broker
    user, role = setup_role(broker)
    a = assume(broker, user, role, "first")
    b = assume(broker, user, role, "second")
    assert a.access_key_id != b.access_key_id

    def check(akid: str, secret: str, token: str | None) -> tuple[int, str | None]:
        return outcome(caller(broker, Creds(akid, secret, token)))

    # Signed with a's secret (which the server would take from a's token) under b's key id.
    assert check(b.access_key_id, a.secret_access_key, a.session_token) == INVALID
    # b's key id and secret with a's token; a's key id and secret with b's token.
    assert check(b.access_key_id, b.secret_access_key, a.session_token) == INVALID
    assert check(a.access_key_id, a.secret_access_key, b.session_token) == INVALID
    # A key id that differs from a's only in its last character.
    near = a.access_key_id[:-1] + ("A" if a.access_key_id[-1] != "A" else "B")
    assert check(near, a.secret_access_key, a.session_token) == INVALID
    # No token at all for an ASIA key id.
    assert check(a.access_key_id, a.secret_access_key, None) == INVALID
    # Control: the right key id with a wrong secret is a signature failure, not a token one.
    assert check(a.access_key_id, b.secret_access_key, a.session_token) == (
        403,
        "SignatureDoesNotMatch",
    )
    assert outcome(caller(broker, a)) == (200, None)
    assert outcome(caller(broker, b)) == (200, None)


# -- opacity --------------------------------------------------------------------------------


def test_the_decoded_token_reveals_no_secret_arn_or_name(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    acct = broker.account_id()
    user, role = setup_role(broker, role="OpaqueRoleName", path="/hidden/team/")
    session_name = "visible-session-name"
    resp = broker.client("sts", user).assume_role(
        RoleArn=role,
        RoleSessionName=session_name,
        SourceIdentity="source-identity-x",
        Tags=[{"Key": "project", "Value": "tag-value-zebra"}],
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}],
            }
        ),
    )
    c = resp["Credentials"]
    token, secret = c["SessionToken"], c["SecretAccessKey"]
    raw = b64decode(token)
    assert resp["AssumedRoleUser"]["Arn"] == (
        f"arn:aws:sts::{acct}:assumed-role/OpaqueRoleName/{session_name}"
    )
    hidden = {
        "secret access key": secret,
        "role ARN": role,
        "role name": "OpaqueRoleName",
        "role path": "/hidden/team/",
        "session name": session_name,
        "session ARN": resp["AssumedRoleUser"]["Arn"],
        "access key id": c["AccessKeyId"],
        "account id": acct,
        "source identity": "source-identity-x",
        "tag value": "tag-value-zebra",
        "session policy action": "iam:ListUsers",
    }
    for label, text in hidden.items():
        assert text.encode() not in raw, f"{label} is readable in the decoded token"
        assert text not in token, f"{label} is readable in the token text"
    # Not even an 8-character piece of the secret shows.
    for start in range(len(secret) - 7):
        assert secret[start : start + 8].encode() not in raw
    # What is readable by design: the version byte and the key id (so any node finds the key).
    kid = token_kid(token)
    assert kid is not None and raw[0] == 1 and raw[2 : 2 + raw[1]] == kid.encode()
    # The credentials work (the checks above were on a genuine token).
    assert outcome(caller(broker, Creds(c["AccessKeyId"], secret, token))) == (200, None)


# -- rotation -------------------------------------------------------------------------------


def test_rotation_keeps_earlier_credentials_and_seals_new_ones_with_the_new_key(
    broker: BrokerProcess,
) -> None:
    user, role = setup_role(broker)
    before = assume(broker, user, role, "before")
    assert before.session_token is not None
    old_kid = token_kid(before.session_token)
    assert old_kid is not None
    listed = json.loads(broker.run_cli(["keys", "list"]))
    assert [k["kid"] for k in listed if k["kind"] == "token" and k["active"]] == [old_kid]

    rotated = json.loads(broker.run_cli(["keys", "rotate"]))
    [new_kid] = [k["kid"] for k in rotated if k["kind"] == "token"]
    assert new_kid != old_kid
    # The serving process picks the new key up (keyring generation); wait for that, not a time.
    after: list[Creds] = []

    def minted_with_new_key() -> bool:
        creds = assume(broker, user, role, f"after-{len(after)}")
        after.append(creds)
        return creds.session_token is not None and token_kid(creds.session_token) == new_kid

    wait_until(minted_with_new_key, "minting with the rotated-in key")
    newest = after[-1]
    # Every credential minted before the rotation keeps working, next to the new ones.
    assert outcome(caller(broker, before)) == (200, None)
    assert outcome(caller(broker, newest)) == (200, None)
    assert broker.client("iam", before).list_users()["Users"]
    state = {k["kid"]: k for k in json.loads(broker.run_cli(["keys", "list"]))}
    assert state[old_kid]["active"] is False and state[old_kid]["verifies"] is True
    assert state[new_kid]["active"] is True and state[new_kid]["verifies"] is True

    # Retiring the old key ends its credentials (and only those).
    retired = json.loads(broker.run_cli(["keys", "retire", old_kid]))
    assert retired["kid"] == old_kid and retired["retired"] is True
    wait_until(lambda: outcome(caller(broker, before)) == INVALID, "refusal of retired-key tokens")
    assert outcome(caller(broker, newest)) == (200, None)
