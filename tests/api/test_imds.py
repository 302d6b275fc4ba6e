"""The instance metadata listener in-process: IMDSv2 rules, metadata paths, delivery service.

Each test gets a runtime on a ``MemoryStore`` (behind a switch that can make the store
unavailable), a hand-moved clock, the API listener (to create roles and instance profiles with
signed IAM calls) and the IMDS application on its own ``TestServer``. Callers come from
127.0.0.1, which the instance table maps to one instance.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from broker.api.imds import (
    DEFAULT_MAX_TOKENS,
    MAX_TOKEN_TTL_SECONDS,
    TOKEN_HEADER,
    TTL_HEADER,
    ImdsDeps,
    InstanceTable,
    TokenTable,
    make_imds_app,
    set_hop_limit,
)
from broker.app import Runtime, build_runtime, make_app
from broker.config import ConfigError, load_config
from broker.service.delivery import (
    SERVE_STALE_UNTIL_SECONDS,
    DeliveryService,
    DeliverySettings,
    InstanceBinding,
    delivery_problems,
    match_instance,
    parse_instances,
)
from broker.store.base import Put, Record, StoreUnavailable
from broker.store.memory import MemoryStore
from tests.api.conftest import _STATUSES, Api, Creds

ACCOUNT = "111122223333"
INSTANCE = "i-0123456789abcdef0"
OTHER_INSTANCE = "i-0fedcba9876543210"
ROLE = "web-role"
OTHER_ROLE = "other-role"
PROFILE = "web"
PROFILE_ARN = f"arn:aws:iam::{ACCOUNT}:instance-profile/{PROFILE}"
CREDS_PATH = "/latest/meta-data/iam/security-credentials/"
EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


class HandClock:
    """Wall-clock and monotonic time that move only when told."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))
        self.mono = 1000.0

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.t, dt.UTC)

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds


class SwitchedStore:
    """A ``MemoryStore`` that answers ``StoreUnavailable`` while ``down`` is set."""

    backend = "memory"

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("switched off")

    async def get(self, ns: str, key: str) -> Record | None:
        self._check()
        return await self.inner.get(ns, key)

    async def get_many(self, ns: str, keys: Sequence[str]) -> list[Record | None]:
        self._check()
        return await self.inner.get_many(ns, keys)

    async def scan(
        self, ns: str, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[Record]:
        self._check()
        return await self.inner.scan(ns, prefix, start_after=start_after, limit=limit)

    async def commit(
        self,
        ns: str,
        writes: Mapping[str, Put | None],
        *,
        expect: Mapping[str, int] | None = None,
        bump: bool = True,
    ) -> int:
        self._check()
        return await self.inner.commit(ns, writes, expect=expect, bump=bump)

    async def generation(self, ns: str) -> int:
        self._check()
        return await self.inner.generation(ns)

    async def namespaces(self) -> list[str]:
        self._check()
        return await self.inner.namespaces()

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        await self.inner.close()


def binding(
    source: str = "127.0.0.1/32", instance_id: str = INSTANCE, profile: str = PROFILE_ARN
) -> InstanceBinding:
    (found,) = parse_instances(
        [{"source": source, "instance_id": instance_id, "instance_profile": profile}]
    )
    return found


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Env:
    """A runtime, its API listener, a delivery service and an IMDS listener."""

    rt: Runtime
    api: Api
    clock: HandClock
    store: SwitchedStore
    delivery: DeliveryService
    instances: InstanceTable
    imds: TestClient[web.Request, web.Application]
    clients: list[TestClient[web.Request, web.Application]] = field(default_factory=list)

    async def iam(self, action: str, **params: str) -> None:
        reply = await self.api.ok(action, None, params)
        assert reply.ok

    async def imds_app(
        self, probe: ResponseHook | None = None, **kw: Any
    ) -> TestClient[web.Request, web.Application]:
        """Another IMDS listener on the same delivery service (its own token table)."""
        deps = ImdsDeps(self.delivery, self.instances, self.clock, **kw)
        app = make_imds_app(deps)
        if probe is not None:
            app.on_response_prepare.append(probe)
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        self.clients.append(client)
        return client

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        client: TestClient[web.Request, web.Application] | None = None,
    ) -> Reply:
        c = client or self.imds
        resp = await c.request(method, URL(path, encoded=True), headers=dict(headers or {}))
        text = await resp.text()
        return Reply(resp.status, dict(resp.headers), text)

    async def raw_get(self, path: str, token: str) -> Reply:
        """A GET whose request target is sent byte for byte (no client-side normalisation)."""
        port = self.imds.server.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{TOKEN_HEADER}: {token}\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return Reply(status, {}, body.decode("utf-8", "replace"))

    async def token(
        self, ttl: int = 21600, client: TestClient[web.Request, web.Application] | None = None
    ) -> str:
        reply = await self.request("PUT", "/latest/api/token", {TTL_HEADER: str(ttl)}, client)
        assert reply.status == 200, reply
        return reply.text

    async def get(
        self,
        path: str,
        token: str | None,
        client: TestClient[web.Request, web.Application] | None = None,
        **headers: str,
    ) -> Reply:
        hdrs = dict(headers)
        if token is not None:
            hdrs[TOKEN_HEADER] = token
        return await self.request("GET", path, hdrs, client)

    async def credentials(self, token: str, role: str = ROLE) -> dict[str, Any]:
        reply = await self.get(CREDS_PATH + role, token)
        assert reply.status == 200, reply
        doc = reply.json()
        assert isinstance(doc, dict)
        return doc


async def caller_arn(api: Api, doc: Mapping[str, str]) -> str:
    """``GetCallerIdentity`` signed with delivered credentials; returns the caller's ARN."""
    body = urllib.parse.urlencode({"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    url = api.url + "/"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    request = AWSRequest(method="POST", url=url, data=body.encode(), headers=headers)
    creds = Credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"])
    SigV4Auth(creds, "sts", "us-east-1").add_auth(request)
    signed = {k: str(v) for k, v in request.headers.items()}
    reply = await api.send(
        "GetCallerIdentity", body=body.encode(), headers=signed, sign=False, service="sts"
    )
    arn = reply.text("Arn")
    assert arn is not None
    return arn


async def make_env(settings: DeliverySettings | None = None, **imds: Any) -> Env:
    clock = HandClock()
    store = SwitchedStore()
    cfg = load_config(
        environ={
            "BROKER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "BROKER_SECURITY_CLOCK_SKEW_SECONDS": "3600",
        }
    )
    rt = await build_runtime(cfg, clock=clock, store=store)
    key = await rt.accounts.create_account(ACCOUNT)
    app = make_app(rt)

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        _STATUSES.append((response.status, request.method))

    app.on_response_prepare.append(record)
    api_client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await api_client.start_server()
    api = Api(rt, api_client)
    api.root = Creds(key.access_key_id, key.secret_access_key)
    api.account_id = ACCOUNT
    delivery = DeliveryService(store, rt.sts, rt.generations, clock, settings)
    instances = InstanceTable([binding()])
    deps = ImdsDeps(delivery, instances, clock, **imds)
    imds_app = make_imds_app(deps)
    imds_app.on_response_prepare.append(record)
    imds_client: TestClient[web.Request, web.Application] = TestClient(TestServer(imds_app))
    await imds_client.start_server()
    env = Env(rt, api, clock, store, delivery, instances, imds_client, [api_client, imds_client])
    await env.iam("CreateRole", RoleName=ROLE, AssumeRolePolicyDocument=trust("ec2.amazonaws.com"))
    await env.iam(
        "CreateRole", RoleName=OTHER_ROLE, AssumeRolePolicyDocument=trust("ec2.amazonaws.com")
    )
    await env.iam("CreateInstanceProfile", InstanceProfileName=PROFILE)
    await env.iam("AddRoleToInstanceProfile", InstanceProfileName=PROFILE, RoleName=ROLE)
    return env


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    built = await make_env()
    yield built
    for client in built.clients:
        await client.close()


@pytest.fixture
async def short_env() -> AsyncIterator[Env]:
    """Credentials of 900 s, renewed when fewer than 600 s remain."""
    built = await make_env(DeliverySettings(instance_seconds=900, instance_renew_before=600))
    yield built
    for client in built.clients:
        await client.close()


def parse_expiration(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, EXPIRATION_FORMAT).replace(tzinfo=dt.UTC)


# -- the IMDSv2 happy path ------------------------------------------------------------------


async def test_token_then_role_name_then_credentials(env: Env) -> None:
    put = await env.request("PUT", "/latest/api/token", {TTL_HEADER: "21600"})
    assert put.status == 200
    assert put.headers[TTL_HEADER] == "21600"
    assert put.headers["Content-Type"].startswith("text/plain")
    token = put.text
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) >= 16

    listing = await env.get(CREDS_PATH, token)
    assert (listing.status, listing.text) == (200, ROLE)  # the whole body is the role name
    assert int(listing.headers[TTL_HEADER]) <= 21600
    assert listing.headers["Cache-Control"] == "no-store"

    reply = await env.get(CREDS_PATH + ROLE, token)
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    doc = reply.json()
    assert set(doc) == {
        "Code",
        "LastUpdated",
        "Type",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
    }
    assert (doc["Code"], doc["Type"]) == ("Success", "AWS-HMAC")
    assert doc["AccessKeyId"].startswith("ASIA")
    expires = parse_expiration(doc["Expiration"])
    updated = parse_expiration(doc["LastUpdated"])
    assert expires - updated == dt.timedelta(seconds=3600)
    arn = await caller_arn(env.api, doc)
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{INSTANCE}"


async def test_listing_without_trailing_slash_is_the_role_name(env: Env) -> None:
    token = await env.token()
    reply = await env.get(CREDS_PATH.rstrip("/"), token)
    assert (reply.status, reply.text) == (200, ROLE)


async def test_metadata_paths(env: Env) -> None:
    token = await env.token()
    assert (await env.get("/latest/meta-data/instance-id", token)).text == INSTANCE
    assert (await env.get("/latest/meta-data/placement/region", token)).text == "us-east-1"
    zone = await env.get("/latest/meta-data/placement/availability-zone", token)
    assert zone.text == "us-east-1a"
    info = (await env.get("/latest/meta-data/iam/info", token)).json()
    assert info["Code"] == "Success"
    assert info["InstanceProfileArn"] == PROFILE_ARN
    assert info["InstanceProfileId"].startswith("AIPA")
    doc = (await env.get("/latest/dynamic/instance-identity/document", token)).json()
    assert doc["instanceId"] == INSTANCE
    assert doc["accountId"] == ACCOUNT
    assert doc["region"] == "us-east-1"
    assert doc["availabilityZone"] == "us-east-1a"
    listing = await env.get("/latest/meta-data/", token)
    assert "iam/" in listing.text.split("\n")


async def test_credentials_are_cached_per_instance_and_role(env: Env) -> None:
    token = await env.token()
    first = await env.credentials(token)
    second = await env.credentials(await env.token())
    assert first["AccessKeyId"] == second["AccessKeyId"]
    assert env.delivery.mints == 1


# -- token rules (spec/security.md C1-C3) -------------------------------------------------------


@pytest.mark.parametrize("ttl", [None, "", "0", "-1", "21601", "abc", "1.5", "99999999999"])
async def test_bad_token_ttl_is_400(env: Env, ttl: str | None) -> None:
    headers = {} if ttl is None else {TTL_HEADER: ttl}
    reply = await env.request("PUT", "/latest/api/token", headers)
    assert reply.status == 400
    assert reply.text == ""


@pytest.mark.parametrize("ttl", [1, MAX_TOKEN_TTL_SECONDS])
async def test_token_ttl_bounds_are_accepted(env: Env, ttl: int) -> None:
    reply = await env.request("PUT", "/latest/api/token", {TTL_HEADER: str(ttl)})
    assert reply.status == 200
    assert reply.headers[TTL_HEADER] == str(ttl)


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "Via"])
async def test_token_request_through_a_proxy_is_refused(env: Env, header: str) -> None:
    reply = await env.request("PUT", "/latest/api/token", {TTL_HEADER: "60", header: "10.0.0.1"})
    assert reply.status == 403
    assert reply.text == ""


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_other_methods_on_the_token_path_are_405(env: Env, method: str) -> None:
    reply = await env.request(method, "/latest/api/token", {TTL_HEADER: "60"})
    assert reply.status == 405


async def test_get_without_token_is_401_when_v1_is_off(env: Env) -> None:
    for path in (CREDS_PATH, CREDS_PATH + ROLE, "/latest/meta-data/instance-id"):
        reply = await env.get(path, None)
        assert (reply.status, reply.text) == (401, "")


async def test_unknown_token_is_401(env: Env) -> None:
    await env.token()
    reply = await env.get(CREDS_PATH, "not-a-token")
    assert (reply.status, reply.text) == (401, "")


async def test_token_expires_exactly_at_its_ttl(env: Env) -> None:
    token = await env.token(ttl=5)
    env.clock.advance(4.5)
    live = await env.get("/latest/meta-data/instance-id", token)
    assert live.status == 200
    assert live.headers[TTL_HEADER] == "1"
    env.clock.advance(0.5)
    assert (await env.get("/latest/meta-data/instance-id", token)).status == 401


async def test_v1_serves_without_token_but_rejects_bad_tokens() -> None:
    built = await make_env(v1_enabled=True)
    try:
        reply = await built.get(CREDS_PATH, None)
        assert (reply.status, reply.text) == (200, ROLE)
        assert TTL_HEADER not in reply.headers
        assert (await built.get(CREDS_PATH, "bogus")).status == 401
    finally:
        for client in built.clients:
            await client.close()


async def test_token_is_bound_to_the_instance(env: Env) -> None:
    token = await env.token()
    assert (await env.get(CREDS_PATH, token)).status == 200
    env.instances.replace([binding(instance_id=OTHER_INSTANCE)])
    reply = await env.get(CREDS_PATH, token)
    assert (reply.status, reply.text) == (401, "")
    fresh = await env.token()
    assert (await env.get("/latest/meta-data/instance-id", fresh)).text == OTHER_INSTANCE


async def test_token_is_bound_to_its_listener(env: Env) -> None:
    other = await env.imds_app()
    token = await env.token()
    assert (await env.get(CREDS_PATH, token, other)).status == 401
    assert (await env.get(CREDS_PATH, await env.token(client=other), other)).status == 200


async def test_token_table_is_capped_dropping_the_one_expiring_first(env: Env) -> None:
    small = await env.imds_app(max_tokens=2)
    long_lived = await env.token(ttl=100, client=small)
    short_lived = await env.token(ttl=50, client=small)
    newest = await env.token(ttl=200, client=small)
    assert (await env.get(CREDS_PATH, short_lived, small)).status == 401
    assert (await env.get(CREDS_PATH, long_lived, small)).status == 200
    assert (await env.get(CREDS_PATH, newest, small)).status == 200


def test_token_table_defaults_and_expiry() -> None:
    table = TokenTable()
    assert DEFAULT_MAX_TOKENS >= 1000
    token = table.issue(INSTANCE, 10, now=0.0)
    assert table.check(token, INSTANCE, now=9.0) == pytest.approx(1.0)
    assert table.check(token, OTHER_INSTANCE, now=9.0) is None
    assert table.check(token, INSTANCE, now=10.0) is None
    assert len(table) == 0
    tokens = {table.issue(INSTANCE, 10, now=20.0) for _ in range(100)}
    assert len(tokens) == 100


# -- DNS rebinding, callers, paths (C4, C6, C8) ---------------------------------------------


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "169.254.169.254:80", "[fd00:ec2::254]", "localhost:8169"]
)
async def test_metadata_host_names_are_accepted(env: Env, host: str) -> None:
    reply = await env.request("PUT", "/latest/api/token", {TTL_HEADER: "60", "Host": host})
    assert reply.status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8169", "10.0.0.1"])
async def test_other_host_names_are_403(env: Env, host: str) -> None:
    token = await env.token()
    put = await env.request("PUT", "/latest/api/token", {TTL_HEADER: "60", "Host": host})
    assert put.status == 403
    assert (await env.get(CREDS_PATH, token, Host=host)).status == 403


async def test_origin_header_is_403(env: Env) -> None:
    token = await env.token()
    reply = await env.get(CREDS_PATH + ROLE, token, Origin="http://evil.example")
    assert reply.status == 403
    assert "AccessKeyId" not in reply.text


async def test_extra_allowed_hosts(env: Env) -> None:
    client = await env.imds_app(allowed_hosts=("metadata.internal",))
    reply = await env.request(
        "PUT", "/latest/api/token", {TTL_HEADER: "60", "Host": "metadata.internal"}, client
    )
    assert reply.status == 200


async def test_caller_matching_no_instance_is_403(env: Env) -> None:
    env.instances.replace([binding(source="10.0.0.0/8")])
    assert (await env.request("PUT", "/latest/api/token", {TTL_HEADER: "60"})).status == 403
    assert (await env.get(CREDS_PATH, None)).status == 403


@pytest.mark.parametrize(
    "path",
    [
        "/latest/meta-data/nothing-here",
        "/latest/meta-data/iam/security-credentials/" + OTHER_ROLE,
        "/latest/meta-data/iam/security-credentials/web-role/extra",
        "/latest/meta-data/iam/security-credentials/..%2f..%2fetc%2fpasswd",
        "/latest/meta-data/iam/security-credentials/web%2drole",
        "/latest/meta-data/iam/security-credentials/web%252drole",
        "/latest/meta-data/../meta-data/instance-id",
        "/latest/meta-data/./instance-id",
        "/latest/meta-data//instance-id",
        "/latest/meta-data/iam/security-credentials/%00",
        "/latest/meta-data/iam/security-credentials/" + "r" * 65,
        "/etc/passwd",
        "/",
    ],
)
async def test_unknown_and_crafted_paths_are_404(env: Env, path: str) -> None:
    token = await env.token()
    reply = await env.raw_get(path, token)
    assert reply.status == 404, path
    assert "AccessKeyId" not in reply.text
    assert (await env.raw_get("/latest/meta-data/instance-id", token)).status == 200


async def test_post_on_a_metadata_path_is_405(env: Env) -> None:
    token = await env.token()
    reply = await env.request("POST", CREDS_PATH + ROLE, {TOKEN_HEADER: token})
    assert reply.status == 405


def test_source_matching_picks_the_most_specific_network() -> None:
    wide = binding(source="127.0.0.0/8", instance_id=OTHER_INSTANCE)
    narrow = binding(source="127.0.0.7")
    everyone = binding(source="::/0", instance_id="i-00000000000000001")
    table = [wide, narrow, everyone]
    assert match_instance(table, "127.0.0.7") is narrow
    assert match_instance(table, "127.0.0.8") is wide
    assert match_instance(table, "::ffff:127.0.0.7") is narrow
    assert match_instance(table, "::1") is everyone
    assert match_instance(table, "10.1.2.3") is None
    assert match_instance(table, "not-an-address") is None


# -- roles, trust and renewal -----------------------------------------------------------------


async def test_role_swapped_in_the_profile_is_what_the_next_fetch_returns(env: Env) -> None:
    token = await env.token()
    first = await env.credentials(token)
    await env.iam("RemoveRoleFromInstanceProfile", InstanceProfileName=PROFILE, RoleName=ROLE)
    await env.iam("AddRoleToInstanceProfile", InstanceProfileName=PROFILE, RoleName=OTHER_ROLE)
    assert (await env.get(CREDS_PATH, token)).text == OTHER_ROLE
    assert (await env.get(CREDS_PATH + ROLE, token)).status == 404
    second = await env.credentials(token, OTHER_ROLE)
    assert second["AccessKeyId"] != first["AccessKeyId"]
    arn = await caller_arn(env.api, second)
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{OTHER_ROLE}/{INSTANCE}"


async def test_profile_without_role_is_404(env: Env) -> None:
    token = await env.token()
    await env.iam("RemoveRoleFromInstanceProfile", InstanceProfileName=PROFILE, RoleName=ROLE)
    assert (await env.get(CREDS_PATH, token)).status == 404
    assert (await env.get(CREDS_PATH + ROLE, token)).status == 404
    assert (await env.get("/latest/meta-data/iam/info", token)).status == 404


async def test_unknown_instance_profile_is_404(env: Env) -> None:
    env.instances.replace([binding(profile=f"arn:aws:iam::{ACCOUNT}:instance-profile/nope")])
    token = await env.token()
    assert (await env.get(CREDS_PATH, token)).status == 404


async def test_role_not_trusting_ec2_gets_no_credentials(env: Env) -> None:
    await env.iam(
        "UpdateAssumeRolePolicy",
        RoleName=ROLE,
        PolicyDocument=trust("ecs-tasks.amazonaws.com"),
    )
    token = await env.token()
    reply = await env.get(CREDS_PATH + ROLE, token)
    assert reply.status == 200
    doc = reply.json()
    assert doc["Code"] == "AssumeRoleUnauthorizedAccess"
    assert "AccessKeyId" not in doc
    assert env.delivery.mints == 0


async def test_trust_change_stops_cached_credentials(env: Env) -> None:
    token = await env.token()
    await env.credentials(token)
    await env.iam(
        "UpdateAssumeRolePolicy", RoleName=ROLE, PolicyDocument=trust("lambda.amazonaws.com")
    )
    doc = (await env.get(CREDS_PATH + ROLE, token)).json()
    assert "AccessKeyId" not in doc


async def test_session_is_capped_at_the_role_max_session_duration() -> None:
    built = await make_env(DeliverySettings(instance_seconds=7200, instance_renew_before=3600))
    try:
        doc = await built.credentials(await built.token())
        lifetime = parse_expiration(doc["Expiration"]) - parse_expiration(doc["LastUpdated"])
        assert lifetime == dt.timedelta(seconds=3600)  # the role's default MaxSessionDuration
        built.clock.advance(1700)  # the renewal margin shrank in proportion: 1800 s
        again = await built.credentials(await built.token())
        assert again["AccessKeyId"] == doc["AccessKeyId"]
        built.clock.advance(101)
        renewed = await built.credentials(await built.token())
        assert renewed["AccessKeyId"] != doc["AccessKeyId"]
    finally:
        for client in built.clients:
            await client.close()


async def test_credentials_are_renewed_before_they_expire(short_env: Env) -> None:
    env = short_env
    token = await env.token()
    first = await env.credentials(token)
    env.clock.advance(299)
    assert (await env.credentials(token))["AccessKeyId"] == first["AccessKeyId"]
    env.clock.advance(2)
    second = await env.credentials(token)
    assert second["AccessKeyId"] != first["AccessKeyId"]
    assert parse_expiration(second["Expiration"]) > parse_expiration(first["Expiration"])
    assert env.delivery.mints == 2


async def test_concurrent_fetches_share_one_mint(env: Env) -> None:
    token = await env.token()
    docs = await asyncio.gather(*(env.credentials(token) for _ in range(200)))
    assert len({d["AccessKeyId"] for d in docs}) == 1
    assert env.delivery.mints == 1
    sessions = await env.rt.sessions.list_sessions(ACCOUNT)
    assert len(sessions) == 1


async def test_revoked_session_is_replaced_on_the_next_fetch(env: Env) -> None:
    token = await env.token()
    first = await env.credentials(token)
    (session,) = await env.rt.sessions.list_sessions(ACCOUNT)
    await env.rt.sessions.revoke_session(ACCOUNT, session["sid"])
    second = await env.credentials(token)
    assert second["AccessKeyId"] != first["AccessKeyId"]


# -- store outages (spec/security.md F4) --------------------------------------------------


async def test_store_outage_serves_cached_credentials_until_5_minutes_before_expiry(
    short_env: Env,
) -> None:
    env = short_env
    token = await env.token()
    first = await env.credentials(token)
    env.store.down = True
    env.clock.advance(400)  # due for renewal; 500 s left
    assert (await env.credentials(token))["AccessKeyId"] == first["AccessKeyId"]
    env.clock.advance(900 - 400 - SERVE_STALE_UNTIL_SECONDS - 1)
    assert (await env.credentials(token))["AccessKeyId"] == first["AccessKeyId"]
    env.clock.advance(2)  # fewer than 5 minutes left: not served any more
    reply = await env.get(CREDS_PATH + ROLE, token)
    assert reply.status == 503
    assert "AccessKeyId" not in reply.text
    _STATUSES.clear()  # the 503 is the expected answer here
    env.store.down = False
    env.clock.advance(10)
    recovered = await env.credentials(token)
    assert recovered["AccessKeyId"] != first["AccessKeyId"]
    assert parse_expiration(recovered["Expiration"]) > env.clock.now()


async def test_store_outage_before_any_mint_is_503(env: Env) -> None:
    token = await env.token()
    env.store.down = True
    reply = await env.get(CREDS_PATH + ROLE, token)
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "1"
    _STATUSES.clear()


async def test_secrets_never_reach_the_log(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        token = await env.token()
        doc = await env.credentials(token)
        await env.get(CREDS_PATH + ROLE, "wrong")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "delivered channel=imds" in text
    for secret in (doc["SecretAccessKey"], doc["Token"], token, doc["AccessKeyId"]):
        assert secret not in text


# -- hop limit and configuration --------------------------------------------------------------


def test_hop_limit_sets_the_socket_ttl() -> None:
    class Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> object:
            return self.sock if name == "socket" else None

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert set_hop_limit(Transport(sock), 1)
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 1
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock6:
        assert set_hop_limit(Transport(sock6), 2)
        assert sock6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 2
    assert not set_hop_limit(object(), 1)


async def test_token_reply_socket_gets_the_hop_limit(env: Env) -> None:
    seen: list[int] = []

    async def probe(request: web.Request, response: web.StreamResponse) -> None:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            seen.append(sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL))

    client = await env.imds_app(probe, hop_limit=3)
    token = await env.token(client=client)
    assert (await env.get("/latest/meta-data/instance-id", token, client)).status == 200
    assert seen == [3, 3]
    seen.clear()
    default = await env.imds_app(probe, hop_limit=0)
    await env.token(client=default)
    assert len(seen) == 1
    assert seen[0] > 3  # the system default stays


def test_instance_table_problems_are_listed_together() -> None:
    with pytest.raises(ConfigError) as info:
        parse_instances(
            [
                {"source": "nonsense", "instance_id": "x", "instance_profile": "web"},
                {"source": "10.0.0.0/8", "instance_id": INSTANCE, "extra": "1"},
            ]
        )
    text = "\n".join(info.value.problems)
    assert "not an address or CIDR" in text
    assert "instance_id must look like" in text
    assert "instance_profile must be an instance profile ARN" in text
    assert "unknown key(s) extra" in text


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"host": "0.0.0.0"}, "every interface"),  # noqa: S104 - the refused case
        ({"host": "::"}, "every interface"),
        ({"host": "10.1.2.3"}, "loopback or link-local"),
        ({"renew_before_seconds": 3600}, "renew_before_seconds"),
        ({"renew_before_seconds": 100}, "renew_before_seconds"),
        ({"session_seconds": 600}, "session_seconds"),
        ({"hop_limit": 300}, "hop_limit"),
    ],
)
def test_delivery_settings_are_checked(changes: dict[str, Any], fragment: str) -> None:
    cfg = load_config(environ={})
    imds = replace(cfg.imds, enabled=True, **changes)
    problems = delivery_problems(replace(cfg, imds=imds))
    assert any(fragment in p for p in problems), problems


def test_link_local_and_loopback_listeners_are_fine() -> None:
    cfg = load_config(environ={})
    for host in ("127.0.0.1", "169.254.169.254", "::1", "localhost"):
        imds = replace(cfg.imds, enabled=True, host=host)
        assert delivery_problems(replace(cfg, imds=imds)) == []


class _Recorder:
    """An audit sink stand-in that keeps events in memory (the real sink writes files)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: Any) -> None:
        self.events.append(event.to_json())


async def test_every_credential_handed_out_is_audited_without_secrets(env: Env) -> None:
    recorder = _Recorder()
    client = await env.imds_app(audit=recorder)
    put = await env.request("PUT", "/latest/api/token", {TTL_HEADER: "60"}, client=client)
    reply = await env.request(
        "GET", CREDS_PATH + ROLE, {"X-aws-ec2-metadata-token": put.text}, client=client
    )
    doc = reply.json()
    assert len(recorder.events) == 1
    event = json.dumps(recorder.events[0])
    assert doc["AccessKeyId"] in event
    assert INSTANCE in event and ROLE in event
    assert doc["SecretAccessKey"] not in event and doc["Token"] not in event
