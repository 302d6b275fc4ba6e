"""API tests: temporary credentials in-process: expiry, tampering, forged tokens, key rotation.

The broker runs in-process on a ``MemoryStore`` with a wall clock the test moves by hand, so a
session's expiry is reached without waiting (a ``broker serve`` process reads the real clock and
has no hook to move it; ``tests/e2e/test_sts_tokens.py`` covers the rest end to end). Requests are
signed by botocore at the real time; the clock-skew window is widened to an hour so the broker's
clock may run up to that far ahead of the signatures.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker.app import Runtime, build_runtime, make_app
from broker.config import load_config
from broker.core.tokens import (
    TokenKey,
    open_session_token,
    seal_session_token,
    token_kid,
)
from broker.store.memory import MemoryStore
from tests.api.conftest import (
    _STATUSES,
    ALLOW_ALL,
    FORM_TYPE,
    REGION,
    STS_VERSION,
    Api,
    Creds,
    Reply,
)

SKEW_SECONDS = 3600
EXPIRED_MESSAGE = "The security token included in the request is expired"


class HandClock:
    """Wall-clock time that moves only when told; monotonic time is real."""

    def __init__(self, t: int) -> None:
        self.t = t

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.t, dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, seconds: int) -> None:
        self.t += seconds


@dataclass(frozen=True, slots=True)
class Session:
    """Temporary credentials as the broker returned them."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    token: str = field(repr=False)
    expiration: str


@dataclass
class Env:
    """One in-process broker with a hand-moved clock, a user allowed everything and a role."""

    api: Api
    rt: Runtime
    clock: HandClock
    user: Creds
    role_arn: str


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = HandClock(int(time.time()))
    cfg = load_config(
        environ={
            "BROKER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "BROKER_SECURITY_CLOCK_SKEW_SECONDS": str(SKEW_SECONDS),
        }
    )
    rt = await build_runtime(cfg, clock=clock, store=MemoryStore())
    key = await rt.accounts.create_account()
    app = make_app(rt)

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        _STATUSES.append((response.status, request.method))

    app.on_response_prepare.append(record)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    api = Api(rt, client)
    api.root = Creds(key.access_key_id, key.secret_access_key)
    api.account_id = (await api.sts("GetCallerIdentity")).text("Account") or ""
    user, _ = await api.new_user("ops", policy=ALLOW_ALL)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": api.account_id}, "Action": "sts:AssumeRole"}]})  # fmt: skip
    role = await api.ok("CreateRole", RoleName="worker", AssumeRolePolicyDocument=trust)
    await api.ok("PutRolePolicy", RoleName="worker", PolicyName="all", PolicyDocument=ALLOW_ALL)
    role_arn = role.text("Role/Arn")
    assert role_arn is not None
    yield Env(api, rt, clock, user, role_arn)
    await client.close()


def session_of(reply: Reply) -> Session:
    values = [reply.text(f"Credentials/{name}") for name in
              ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")]  # fmt: skip
    akid, secret, token, expiration = values
    assert akid and secret and token and expiration
    return Session(akid, secret, token, expiration)


async def mint(env: Env, action: str, duration: int = 900) -> Session:
    """Mint a session with ``action`` (signed with the user's long-term key)."""
    params: dict[str, str | int | bool] = {"DurationSeconds": duration}
    if action == "AssumeRole":
        params.update(RoleArn=env.role_arn, RoleSessionName="s1")
    elif action == "GetFederationToken":
        params.update(Name="visitor", Policy=ALLOW_ALL)
    reply = await env.api.sts(action, env.user, **params)
    return session_of(reply)


async def call_as(
    env: Env,
    akid: str,
    secret: str,
    token: str | None,
    action: str = "GetCallerIdentity",
    service: str = "sts",
    **params: str,
) -> Reply:
    """Send ``action`` signed with temporary credentials (the token in a signed header)."""
    version = STS_VERSION if service == "sts" else "2010-05-08"
    body = urllib.parse.urlencode({"Action": action, "Version": version, **params}).encode()
    request = AWSRequest(
        method="POST", url=env.api.url + "/", data=body, headers={"Content-Type": FORM_TYPE}
    )
    SigV4Auth(Credentials(akid, secret, token), service, REGION).add_auth(request)
    headers = {k: str(v) for k, v in request.headers.items()}
    return await env.api.send(action, body=body, headers=headers, sign=False, service=service)


async def use(env: Env, s: Session, **kw: str) -> Reply:
    return await call_as(env, s.access_key_id, s.secret_access_key, s.token, **kw)


def flip(token: str, position: int, mask: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[position] ^= mask
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")


def token_bytes(token: str) -> int:
    return len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


MINTING = ["GetSessionToken", "AssumeRole", "GetFederationToken"]


# -- expiry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("action", MINTING)
async def test_credentials_work_until_their_expiry_and_not_at_it(env: Env, action: str) -> None:
    start = env.clock.t
    session = await mint(env, action, duration=900)
    expires = dt.datetime.fromtimestamp(start + 900, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert session.expiration == expires
    assert (await use(env, session)).ok
    env.clock.advance(899)
    assert (await use(env, session)).ok
    assert (await use(env, session, service="iam", action="ListUsers")).ok
    env.clock.advance(1)  # now == expiry: refused
    reply = (await use(env, session)).expect(403, "ExpiredToken", EXPIRED_MESSAGE)
    assert reply.fault == "Sender"
    assert reply.request_id and reply.headers["x-amzn-RequestId"] == reply.request_id
    # IAM answers the same code, in its own namespace.
    iam = await use(env, session, service="iam", action="ListUsers")
    iam.expect(403, "ExpiredToken", EXPIRED_MESSAGE)
    assert iam.ns == "https://iam.amazonaws.com/doc/2010-05-08/"
    env.clock.advance(SKEW_SECONDS - 60)  # long after: still the same answer
    (await use(env, session)).expect(403, "ExpiredToken")


async def test_default_and_longest_durations(env: Env) -> None:
    start = env.clock.t
    role_default = await env.api.sts(
        "AssumeRole", env.user, RoleArn=env.role_arn, RoleSessionName="dd"
    )
    user_default = await env.api.sts("GetSessionToken", env.user)

    def at(offset: int) -> str:
        return dt.datetime.fromtimestamp(start + offset, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert session_of(role_default).expiration == at(3600)
    assert session_of(user_default).expiration == at(43200)
    env.clock.advance(3600)
    (await use(env, session_of(role_default))).expect(403, "ExpiredToken")
    assert (await use(env, session_of(user_default))).ok


async def test_an_expired_token_is_refused_before_its_signature_is_checked(env: Env) -> None:
    session = await mint(env, "GetSessionToken")
    env.clock.advance(900)
    # Wrong secret: still ExpiredToken, which comes before SignatureDoesNotMatch (aws-wire 5.6).
    reply = await call_as(env, session.access_key_id, "x" * 40, session.token)
    reply.expect(403, "ExpiredToken")


async def test_a_garbled_expired_token_says_invalid_not_expired(env: Env) -> None:
    session = await mint(env, "GetSessionToken")
    env.clock.advance(900)
    (await use(env, session)).expect(403, "ExpiredToken")
    for position in (0, 5, token_bytes(session.token) // 2, token_bytes(session.token) - 1):
        forged = flip(session.token, position, 0x40)
        reply = await call_as(env, session.access_key_id, session.secret_access_key, forged)
        reply.expect(403, "InvalidClientTokenId")


async def test_a_presigned_url_dies_with_its_session(env: Env) -> None:
    session = await mint(env, "GetSessionToken")
    url = env.api.url + "/?Action=GetCallerIdentity&Version=" + STS_VERSION
    request = AWSRequest(method="GET", url=url)
    creds = Credentials(session.access_key_id, session.secret_access_key, session.token)
    SigV4QueryAuth(creds, "sts", REGION, expires=3600).add_auth(request)
    query = urllib.parse.urlsplit(request.url).query
    assert "X-Amz-Security-Token=" in query

    async def fetch() -> Reply:
        return await env.api.send(
            "GetCallerIdentity", method="GET", query=query, sign=False, service="sts"
        )

    assert (await fetch()).ok
    env.clock.advance(900)  # the URL itself would live another 45 minutes
    (await fetch()).expect(403, "ExpiredToken")


# -- tampering and forgery ------------------------------------------------------------------


async def test_every_byte_of_the_token_is_protected(env: Env) -> None:
    session = await mint(env, "AssumeRole")
    size = token_bytes(session.token)
    assert size > 100
    wrong: list[tuple[int, int, str | None]] = []
    for position in range(size):
        for mask in (0x01, 0x80, 0xFF):
            forged = flip(session.token, position, mask)
            reply = await call_as(env, session.access_key_id, session.secret_access_key, forged)
            if (reply.status, reply.code) != (403, "InvalidClientTokenId"):
                wrong.append((position, mask, reply.code))
    assert not wrong
    assert (await use(env, session)).ok


async def test_a_token_sealed_with_a_guessed_key_under_the_real_kid_is_refused(env: Env) -> None:
    session = await mint(env, "AssumeRole")
    loaded = await env.rt.keys.current()
    real = loaded.token_keys[token_kid(session.token) or ""]
    claims = open_session_token(session.token, loaded.token_keys.get, now=env.clock.t)
    # An attacker who knows the kid (it is in the clear) and makes up the claims of a more
    # powerful principal, sealed with a key of their own: the tag does not verify.
    escalated = replace(claims, principal_arn=f"arn:aws:iam::{env.api.account_id}:root")
    guessed = TokenKey(real.kid, os.urandom(32))
    forged = seal_session_token(escalated, guessed)
    assert token_kid(forged) == real.kid
    reply = await call_as(env, claims.access_key_id, claims.secret_access_key, forged)
    reply.expect(403, "InvalidClientTokenId")
    # Control: the same claims sealed with the real key are accepted, so the key is what failed.
    resealed = seal_session_token(claims, real)
    assert (await call_as(env, claims.access_key_id, claims.secret_access_key, resealed)).ok


async def test_a_token_of_another_broker_is_refused(env: Env) -> None:
    cfg = load_config(environ={"BROKER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()})
    other = await build_runtime(cfg, clock=env.clock, store=MemoryStore())
    try:
        key = await other.keys.active_token_key()
    finally:
        await other.close()
    mine = await mint(env, "GetSessionToken")
    claims = open_session_token(
        mine.token, (await env.rt.keys.current()).token_keys.get, now=env.clock.t
    )
    # Genuine claims of this broker's session, sealed by the other broker's keyring.
    theirs = seal_session_token(claims, key)
    assert token_kid(theirs) != token_kid(mine.token)
    reply = await call_as(env, mine.access_key_id, mine.secret_access_key, theirs)
    reply.expect(403, "InvalidClientTokenId")


async def test_the_signing_key_id_must_match_the_token(env: Env) -> None:
    a = await mint(env, "AssumeRole")
    b = await mint(env, "GetSessionToken")
    (await call_as(env, b.access_key_id, a.secret_access_key, a.token)).expect(
        403, "InvalidClientTokenId"
    )
    (await call_as(env, a.access_key_id, a.secret_access_key, b.token)).expect(
        403, "InvalidClientTokenId"
    )
    (await call_as(env, a.access_key_id, a.secret_access_key, None)).expect(
        403, "InvalidClientTokenId"
    )
    # A long-term key id with a session token: the token lends it neither identity nor secret.
    reply = await call_as(env, env.user.access_key_id, a.secret_access_key, a.token)
    reply.expect(403, "SignatureDoesNotMatch")


# -- rotation -------------------------------------------------------------------------------


async def test_rotation_then_retirement(env: Env) -> None:
    before = await mint(env, "AssumeRole")
    old_kid = token_kid(before.token)
    rotated = await env.rt.keys.rotate()
    [new_kid] = [k.kid for k in rotated if k.kind == "token"]
    assert new_kid != old_kid
    after = await mint(env, "AssumeRole")
    assert token_kid(after.token) == new_kid
    assert (await use(env, before)).ok
    assert (await use(env, after)).ok
    info = {k.kid: k for k in await env.rt.keys.list_keys()}
    assert old_kid is not None and info[old_kid].verifies and not info[old_kid].active
    await env.rt.keys.retire(old_kid)
    (await use(env, before)).expect(403, "InvalidClientTokenId")
    assert (await use(env, after)).ok
