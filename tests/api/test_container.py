"""The container credentials listener in-process: bearer tokens, documents, limits, reloads.

Each test gets a runtime on a ``MemoryStore``, the API listener (for signed IAM calls that
create the roles) and the container application on its own ``TestServer``, with one mapping
whose token is inline and one whose token is in a file.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker.api.container import (
    CREDENTIALS_PATH,
    DEFAULT_BURST,
    ContainerDeps,
    MappingTable,
    make_container_app,
)
from broker.api.imds import InstanceTable
from broker.app import Runtime, build_runtime, make_app, reload_delivery_tables
from broker.clock import SystemClock
from broker.config import ConfigError, load_config
from broker.service.delivery import (
    MIN_TOKEN_BYTES,
    DeliveryService,
    delivery_problems,
    parse_mappings,
)
from broker.store.memory import MemoryStore
from tests.api.conftest import _STATUSES, Api, Creds

ACCOUNT = "111122223333"
ROLE = "app-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
TOKEN = "inline-token-0123456789abcdef"
FILE_TOKEN = "file-token-fedcba9876543210"
EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Env:
    rt: Runtime
    api: Api
    delivery: DeliveryService
    mappings: MappingTable
    token_file: Path
    client: TestClient[web.Request, web.Application]
    clients: list[TestClient[web.Request, web.Application]] = field(default_factory=list)

    async def app(self, **kw: Any) -> TestClient[web.Request, web.Application]:
        """Another container listener on the same mappings and delivery service."""
        deps = ContainerDeps(self.delivery, self.mappings, SystemClock(), **kw)
        client: TestClient[web.Request, web.Application] = TestClient(
            TestServer(make_container_app(deps))
        )
        await client.start_server()
        self.clients.append(client)
        return client

    async def fetch(
        self,
        token: str | None,
        path: str = CREDENTIALS_PATH,
        method: str = "GET",
        client: TestClient[web.Request, web.Application] | None = None,
        **headers: str,
    ) -> Reply:
        hdrs = dict(headers)
        if token is not None:
            hdrs["Authorization"] = token
        c = client or self.client
        resp = await c.request(method, path, headers=hdrs)
        return Reply(resp.status, dict(resp.headers), await resp.text())


def mapping_tables(token_file: Path) -> list[dict[str, str]]:
    return [
        {"name": "app", "token": TOKEN, "role_arn": ROLE_ARN},
        {"token_file": str(token_file), "role_arn": ROLE_ARN},
    ]


async def make_env(tmp_path: Path) -> Env:
    cfg = load_config(environ={"BROKER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()})
    rt = await build_runtime(cfg, store=MemoryStore())
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
    await api.ok(
        "CreateRole",
        None,
        {"RoleName": ROLE, "AssumeRolePolicyDocument": trust("ecs-tasks.amazonaws.com")},
    )
    token_file = tmp_path / "token"
    token_file.write_text(FILE_TOKEN + "\n")
    mappings = MappingTable.load(parse_mappings(mapping_tables(token_file)))
    assert rt.delivery is not None
    deps = ContainerDeps(rt.delivery, mappings, SystemClock())
    container = make_container_app(deps)
    container.on_response_prepare.append(record)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(container))
    await client.start_server()
    return Env(rt, api, rt.delivery, mappings, token_file, client, [api_client, client])


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    built = await make_env(tmp_path)
    yield built
    for client in built.clients:
        await client.close()


async def caller_arn(api: Api, doc: Mapping[str, str]) -> str:
    """``GetCallerIdentity`` signed with delivered credentials; returns the caller's ARN."""
    body = urllib.parse.urlencode({"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    request = AWSRequest(method="POST", url=api.url + "/", data=body.encode(), headers=headers)
    creds = Credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"])
    SigV4Auth(creds, "sts", "us-east-1").add_auth(request)
    signed = {k: str(v) for k, v in request.headers.items()}
    reply = await api.send(
        "GetCallerIdentity", body=body.encode(), headers=signed, sign=False, service="sts"
    )
    arn = reply.text("Arn")
    assert arn is not None
    return arn


# -- success ----------------------------------------------------------------------------------


async def test_token_gets_the_mapped_role(env: Env) -> None:
    reply = await env.fetch(TOKEN)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["Cache-Control"] == "no-store"
    doc = reply.json()
    assert {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"} <= set(doc)
    assert doc["RoleArn"] == ROLE_ARN
    expires = dt.datetime.strptime(doc["Expiration"], EXPIRATION_FORMAT).replace(tzinfo=dt.UTC)
    remaining = expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=55) < remaining <= dt.timedelta(hours=1)
    arn = await caller_arn(env.api, doc)
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/app"


async def test_token_from_a_file_and_the_default_session_name(env: Env) -> None:
    doc = (await env.fetch(FILE_TOKEN)).json()
    arn = await caller_arn(env.api, doc)
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/container-1"


async def test_credentials_are_cached_and_concurrent_fetches_share_one_mint(env: Env) -> None:
    replies = await asyncio.gather(*(env.fetch(TOKEN) for _ in range(50)))
    assert {r.status for r in replies} == {200}
    assert len({r.json()["AccessKeyId"] for r in replies}) == 1
    assert env.delivery.mints == 1
    again = await env.fetch(TOKEN)
    assert again.json()["AccessKeyId"] == replies[0].json()["AccessKeyId"]


# -- refusals (spec/security.md C7, C8) ---------------------------------------------------


async def test_missing_token_is_401_without_credentials(env: Env) -> None:
    reply = await env.fetch(None)
    assert reply.status == 401
    doc = reply.json()
    assert set(doc) == {"code", "message"}


@pytest.mark.parametrize(
    "presented",
    [
        "wrong-token-0123456789abcdef",
        "Bearer " + TOKEN,
        TOKEN + "x",
        "x" + TOKEN,
        TOKEN[:-1],
        "",
        FILE_TOKEN + " x",
    ],
)
async def test_wrong_token_is_403_without_credentials(env: Env, presented: str) -> None:
    reply = await env.fetch(presented)
    assert reply.status == 403
    doc = reply.json()
    assert set(doc) == {"code", "message"}
    assert env.delivery.mints == 0


@pytest.mark.parametrize(
    "path", ["/", "/v1/credentials/", "/v1/credentials/../credentials", "/v2/credentials"]
)
async def test_other_paths_are_404(env: Env, path: str) -> None:
    port = env.client.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {TOKEN}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert data.split(b" ", 2)[1] == b"404", path
    assert b"AccessKeyId" not in data


async def test_other_methods_are_405(env: Env) -> None:
    assert (await env.fetch(TOKEN, method="POST")).status == 405


async def test_origin_header_is_403(env: Env) -> None:
    reply = await env.fetch(TOKEN, Origin="http://evil.example")
    assert reply.status == 403
    assert "AccessKeyId" not in reply.text


async def test_role_not_trusting_ecs_tasks_is_refused(env: Env) -> None:
    await env.api.ok(
        "UpdateAssumeRolePolicy",
        None,
        {"RoleName": ROLE, "PolicyDocument": trust("ec2.amazonaws.com")},
    )
    reply = await env.fetch(TOKEN)
    assert reply.status == 403
    assert reply.json()["code"] == "AccessDenied"


async def test_missing_role_is_404(env: Env) -> None:
    await env.api.ok("DeleteRole", None, {"RoleName": ROLE})
    reply = await env.fetch(TOKEN)
    assert reply.status == 404
    assert reply.json()["code"] == "NoSuchEntity"


async def test_rate_limit_answers_429(env: Env) -> None:
    client = await env.app(requests_per_second=0.001, burst=2)
    statuses = [(await env.fetch(TOKEN, client=client)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = [(await env.fetch("nope-nope-nope-nope", client=client)).status for _ in range(3)]
    assert refused == [403, 403, 429]
    assert DEFAULT_BURST >= 10


# -- token files and reloads ------------------------------------------------------------------


async def test_rotated_token_file_is_picked_up(env: Env) -> None:
    assert (await env.fetch(FILE_TOKEN)).status == 200
    rotated = "rotated-token-0123456789abcdef"
    env.token_file.write_text(rotated)
    os.utime(env.token_file, ns=(0, 1_000_000_000))  # a modification time that surely differs
    assert env.mappings.refresh_files() == 1
    assert (await env.fetch(FILE_TOKEN)).status == 403
    assert (await env.fetch(rotated)).status == 200
    assert env.mappings.refresh_files() == 0


async def test_unreadable_token_file_disables_only_its_mapping(env: Env) -> None:
    env.token_file.write_text("short")
    os.utime(env.token_file, ns=(0, 2_000_000_000))
    env.mappings.refresh_files()
    assert (await env.fetch("short")).status == 403
    assert (await env.fetch(TOKEN)).status == 200


def test_token_files_are_checked_when_loading(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("x" * (MIN_TOKEN_BYTES - 1))
    table = [{"token_file": str(short), "role_arn": ROLE_ARN}]
    with pytest.raises(ValueError, match="shorter than"):
        MappingTable.load(parse_mappings(table))
    missing = [{"token_file": str(tmp_path / "absent"), "role_arn": ROLE_ARN}]
    with pytest.raises(ValueError, match="cannot read"):
        MappingTable.load(parse_mappings(missing))


def test_mapping_problems_are_listed_together() -> None:
    with pytest.raises(ConfigError) as info:
        parse_mappings(
            [
                {"name": "aa", "token": "too-short", "role_arn": ROLE_ARN},
                {"name": "aa", "token": TOKEN, "token_file": "/x", "role_arn": ROLE_ARN},
                {"name": "b", "role_arn": "arn:aws:iam::111122223333:user/bob"},
                {"name": "c", "token": TOKEN, "role_arn": ROLE_ARN, "colour": "red"},
                {"name": "has space", "token": TOKEN + "2", "role_arn": ROLE_ARN},
            ]
        )
    text = "\n".join(info.value.problems)
    assert f"at least {MIN_TOKEN_BYTES} bytes" in text
    assert "name 'aa' is used twice" in text
    assert "exactly one of token and token_file" in text
    assert "role_arn must be a role ARN" in text
    assert "same token is used by two mappings" in text
    assert "unknown key(s) colour" in text
    assert "name must be" in text


def test_container_listener_must_be_loopback() -> None:
    cfg = load_config(environ={})
    container = replace(cfg.container, enabled=True, host="0.0.0.0")  # noqa: S104
    problems = delivery_problems(replace(cfg, container=container))
    assert any("every interface" in p for p in problems)


async def test_reload_replaces_tables_and_keeps_them_on_a_bad_file(
    env: Env, tmp_path: Path
) -> None:
    new_token = "reloaded-token-0123456789abcdef"
    config = tmp_path / "config.toml"
    config.write_text(
        "[imds]\n"
        "[[imds.instances]]\n"
        'source = "127.0.0.1"\n'
        'instance_id = "i-0123456789abcdef0"\n'
        f'instance_profile = "arn:aws:iam::{ACCOUNT}:instance-profile/web"\n'
        "[container]\n"
        "[[container.mappings]]\n"
        'name = "reloaded"\n'
        f'token = "{new_token}"\n'
        f'role_arn = "{ROLE_ARN}"\n'
    )
    instances = InstanceTable()
    assert reload_delivery_tables(str(config), instances, env.mappings, env.delivery)
    assert [b.instance_id for b in instances.bindings] == ["i-0123456789abcdef0"]
    assert (await env.fetch(TOKEN)).status == 403
    doc = (await env.fetch(new_token)).json()
    assert (await caller_arn(env.api, doc)).endswith("/reloaded")

    config.write_text("[container]\n[[container.mappings]]\nname = 'x'\n")
    assert not reload_delivery_tables(str(config), instances, env.mappings, env.delivery)
    assert (await env.fetch(new_token)).status == 200
    assert len(instances.bindings) == 1
