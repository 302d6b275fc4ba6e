"""API tests: GenerateCredentialReport / GetCredentialReport (states, errors, the CSV).

The broker runs in-process on a ``MemoryStore`` with a clock the test moves by hand; botocore
signs every request at that clock's time, so hours can pass between two calls. Password data
is written as the ``login/``, ``pwused/`` and ``pwpolicy`` records the password feature keeps
(layouts fixed in the shared record table), which is all the report reads of it.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import io
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import botocore.auth
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.api.reports import reports_for
from broker.app import build_runtime, make_app
from broker.config import load_config
from broker.core.totp import STEP_SECONDS, totp_code
from broker.service.reports import BUILD_STALE_AFTER, REPORT_HEADER, REPORT_MAX_AGE
from broker.service.txn import encode
from broker.store.base import Put
from broker.store.memory import MemoryStore
from tests.api.conftest import _STATUSES, Api, Creds, allow, boto_parse

HEADER_LINE = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)


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

    def text(self) -> str:
        """The clock's time as the report renders it."""
        return self.now().isoformat()


@dataclass
class Env:
    api: Api
    clock: HandClock
    store: MemoryStore

    @property
    def account(self) -> str:
        return self.api.account_id


@pytest.fixture
def signed_at_clock() -> Iterator[HandClock]:
    clock = HandClock(int(time.time()))
    with mock.patch.object(
        botocore.auth,
        "get_current_datetime",
        side_effect=lambda *a, **k: clock.now().replace(tzinfo=None),
    ):
        yield clock


@pytest.fixture
async def env(signed_at_clock: HandClock) -> AsyncIterator[Env]:
    clock = signed_at_clock
    cfg = load_config(environ={"BROKER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()})
    store = MemoryStore()
    rt = await build_runtime(cfg, clock=clock, store=store)
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
    yield Env(api, clock, store)
    await reports_for(rt.iam).wait_builds()
    await client.close()


async def generate(env: Env, creds: Creds | None = None) -> str:
    reply = await env.api.ok("GenerateCredentialReport", creds)
    state = boto_parse(reply)["State"]
    assert isinstance(state, str)
    return state


async def fresh_report(env: Env) -> dict[str, Any]:
    """Generate a report, wait for its build, and fetch it (parsed as boto3 does)."""
    assert await generate(env) == "STARTED"
    await reports_for(env.api.rt.iam).wait_builds()
    assert await generate(env) == "COMPLETE"
    return boto_parse(await env.api.ok("GetCredentialReport"))


def rows_of(content: bytes) -> list[dict[str, str]]:
    text = content.decode("utf-8")
    assert text.splitlines()[0] == HEADER_LINE
    return list(csv.DictReader(io.StringIO(text)))


async def put_record(env: Env, key: str, doc: dict[str, Any]) -> None:
    await env.store.commit(env.account, {key: Put(encode(doc))}, bump=False)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_get_before_generate_is_report_not_present(env: Env) -> None:
    reply = await env.api.call("GetCredentialReport")
    reply.expect(410, "ReportNotPresent")
    assert reply.fault == "Sender"


async def test_states_started_inprogress_complete(env: Env) -> None:
    reports = reports_for(env.api.rt.iam)
    gate = reports.build_gate = asyncio.Event()
    assert await generate(env) == "STARTED"
    # The build waits at the gate: every caller sees it in progress, Get says so with 404.
    assert await generate(env) == "INPROGRESS"
    (await env.api.call("GetCredentialReport")).expect(404, "ReportInProgress")
    gate.set()
    await reports.wait_builds()
    assert await generate(env) == "COMPLETE"
    reply = await env.api.ok("GetCredentialReport")
    parsed = boto_parse(reply)
    assert parsed["ReportFormat"] == "text/csv"
    assert parsed["GeneratedTime"] == env.clock.now()
    assert isinstance(parsed["Content"], bytes)  # a blob: botocore decoded the base64
    assert reply.text("Content") == base64.b64encode(parsed["Content"]).decode()
    rows = rows_of(parsed["Content"])
    assert [r["user"] for r in rows] == ["<root_account>"]


async def test_root_row(env: Env) -> None:
    await env.api.rt.tracker.flush()  # the fixture's GetCallerIdentity used the root key
    report = await fresh_report(env)
    [root] = rows_of(report["Content"])
    account = await env.store.get(env.account, "account")
    assert account is not None
    created = json.loads(account.value)["created"]
    assert root["user"] == "<root_account>"
    assert root["arn"] == f"arn:aws:iam::{env.account}:root"
    assert root["user_creation_time"] == created.replace("Z", "+00:00")
    for column in (
        "password_enabled",
        "password_last_used",
        "password_last_changed",
        "password_next_rotation",
    ):
        assert root[column] == "not_supported"
    assert root["mfa_active"] == "false"
    assert root["access_key_1_active"] == "true"
    assert root["access_key_1_last_rotated"] == created.replace("Z", "+00:00")
    assert root["access_key_1_last_used_date"] == env.clock.text()
    assert root["access_key_1_last_used_region"] == "us-east-1"
    assert root["access_key_1_last_used_service"] == "sts"
    assert root["access_key_2_active"] == "false"
    assert root["access_key_2_last_rotated"] == "N/A"
    assert (root["cert_1_active"], root["cert_1_last_rotated"]) == ("false", "N/A")
    assert (root["cert_2_active"], root["cert_2_last_rotated"]) == ("false", "N/A")


async def test_user_rows_keys_mfa_and_passwords(env: Env) -> None:
    api, clock = env.api, env.clock
    start = clock.text()
    await api.ok("CreateUser", UserName="zed")
    await api.ok("CreateUser", UserName="Bob")
    clock.advance(60)
    first = await api.ok("CreateAccessKey", UserName="Bob")
    first_id = first.text("AccessKey/AccessKeyId")
    first_secret = first.text("AccessKey/SecretAccessKey")
    assert first_id is not None and first_secret is not None
    first_made = clock.text()
    clock.advance(60)
    second = await api.ok("CreateAccessKey", UserName="Bob")
    second_id = second.text("AccessKey/AccessKeyId")
    assert second_id is not None
    second_made = clock.text()
    await api.ok("UpdateAccessKey", UserName="Bob", AccessKeyId=second_id, Status="Inactive")
    # Bob uses his first key; the last-used record is written behind.
    clock.advance(60)
    used_at = clock.text()
    await api.sts_ok("GetCallerIdentity", Creds(first_id, first_secret))
    await api.rt.tracker.flush()

    # MFA for zed (the root user enables the device with two codes from its seed).
    device = await api.ok("CreateVirtualMFADevice", VirtualMFADeviceName="zed-phone")
    serial = device.text("VirtualMFADevice/SerialNumber")
    assert serial is not None
    seed = await _seed(env, "zed-phone")
    step = clock.t // STEP_SECONDS
    await api.ok(
        "EnableMFADevice",
        UserName="zed",
        SerialNumber=serial,
        AuthenticationCode1=totp_code(seed, (step - 1) * STEP_SECONDS),
        AuthenticationCode2=totp_code(seed, step * STEP_SECONDS),
    )

    # A password for "amy" (changed 10 days ago, used once) and one for zed (never used),
    # under a policy with a 90-day maximum age.
    await api.ok("CreateUser", UserName="amy")
    changed = clock.now() - dt.timedelta(days=10)
    signed_in = clock.now() - dt.timedelta(days=1)
    await put_record(
        env,
        "login/amy",
        {
            "user": "amy",
            "created": iso(changed),
            "changed": iso(changed),
            "hash": "not-a-real-hash",
            "reset_required": False,
            "history": [],
        },
    )
    await put_record(env, "pwused/amy", {"time": iso(signed_in)})
    await put_record(
        env,
        "login/zed",
        {
            "user": "zed",
            "created": iso(changed),
            "changed": iso(changed),
            "hash": "not-a-real-hash",
            "reset_required": True,
            "history": [],
        },
    )
    await put_record(env, "pwpolicy", {"MaxPasswordAge": 90, "MinimumPasswordLength": 8})

    report = await fresh_report(env)
    content: bytes = report["Content"]
    assert b"not-a-real-hash" not in content
    rows = rows_of(content)
    assert [r["user"] for r in rows] == ["<root_account>", "amy", "Bob", "zed"]
    by_user = {r["user"]: r for r in rows}

    bob = by_user["Bob"]
    assert bob["arn"] == f"arn:aws:iam::{env.account}:user/Bob"
    assert bob["user_creation_time"] == start
    assert (bob["password_enabled"], bob["password_last_used"]) == ("false", "N/A")
    assert (bob["password_last_changed"], bob["password_next_rotation"]) == ("N/A", "N/A")
    assert bob["mfa_active"] == "false"
    assert bob["access_key_1_active"] == "true"
    assert bob["access_key_1_last_rotated"] == first_made
    assert bob["access_key_1_last_used_date"] == used_at
    assert bob["access_key_1_last_used_region"] == "us-east-1"
    assert bob["access_key_1_last_used_service"] == "sts"
    assert bob["access_key_2_active"] == "false"  # made Inactive
    assert bob["access_key_2_last_rotated"] == second_made
    assert bob["access_key_2_last_used_date"] == "N/A"
    assert bob["access_key_2_last_used_region"] == "N/A"
    assert bob["access_key_2_last_used_service"] == "N/A"

    amy = by_user["amy"]
    assert amy["password_enabled"] == "true"
    assert amy["password_last_used"] == signed_in.replace(microsecond=0).isoformat()
    assert amy["password_last_changed"] == changed.replace(microsecond=0).isoformat()
    rotation = changed.replace(microsecond=0) + dt.timedelta(days=90)
    assert amy["password_next_rotation"] == rotation.isoformat()
    assert amy["mfa_active"] == "false"
    assert amy["access_key_1_active"] == "false"
    assert amy["access_key_1_last_rotated"] == "N/A"

    zed = by_user["zed"]
    assert zed["password_enabled"] == "true"
    assert zed["password_last_used"] == "no_information"
    assert zed["mfa_active"] == "true"


async def test_next_rotation_needs_a_max_age(env: Env) -> None:
    await env.api.ok("CreateUser", UserName="amy")
    changed = iso(env.clock.now())
    login = {"user": "amy", "created": changed, "changed": changed, "hash": "h", "history": []}
    await put_record(env, "login/amy", login)
    await put_record(env, "pwpolicy", {"MinimumPasswordLength": 12})
    [_, amy] = rows_of((await fresh_report(env))["Content"])
    assert amy["password_enabled"] == "true"
    assert amy["password_last_changed"] == changed.replace("Z", "+00:00")
    assert amy["password_next_rotation"] == "N/A"


async def _seed(env: Env, name: str) -> bytes:
    record = await env.store.get(env.account, f"mfa/{name}")
    assert record is not None
    doc = json.loads(record.value)
    return env.api.rt.keyring.unseal(doc["seed"], aad=doc["serial"].encode("utf-8"))


async def test_kept_for_four_hours_then_expired(env: Env) -> None:
    first = await fresh_report(env)
    generated = first["GeneratedTime"]
    await env.api.ok("CreateUser", UserName="late")
    env.clock.advance(int(REPORT_MAX_AGE.total_seconds()) - 60)
    # Within four hours: Generate keeps the report, which does not show the new user.
    assert await generate(env) == "COMPLETE"
    again = boto_parse(await env.api.ok("GetCredentialReport"))
    assert again["GeneratedTime"] == generated
    assert again["Content"] == first["Content"]
    env.clock.advance(60)
    reply = await env.api.call("GetCredentialReport")
    reply.expect(410, "ReportExpired")
    # A new Generate builds a new report, now with the new user.
    newer = await fresh_report(env)
    assert newer["GeneratedTime"] == env.clock.now()
    assert [r["user"] for r in rows_of(newer["Content"])] == ["<root_account>", "late"]


async def test_build_of_another_node_in_progress_and_abandoned(env: Env) -> None:
    # Another node started a build moments ago: this node reports it, does not start one.
    started = iso(env.clock.now() - dt.timedelta(seconds=10))
    await put_record(
        env,
        "credreport",
        {"state": "INPROGRESS", "generated": started, "csv": "", "build": "other"},
    )
    assert await generate(env) == "INPROGRESS"
    (await env.api.call("GetCredentialReport")).expect(404, "ReportInProgress")
    # That node never finished: after BUILD_STALE_AFTER the next Generate takes over.
    env.clock.advance(int(BUILD_STALE_AFTER.total_seconds()))
    assert await generate(env) == "STARTED"
    await reports_for(env.api.rt.iam).wait_builds()
    report = boto_parse(await env.api.ok("GetCredentialReport"))
    assert rows_of(report["Content"])[0]["user"] == "<root_account>"
    # A late write of the abandoned build id changes nothing.
    record = await env.store.get(env.account, "credreport")
    assert record is not None
    assert json.loads(record.value)["build"] != "other"


async def test_authorization(env: Env) -> None:
    nobody, arn = await env.api.new_user("nobody")
    for action in ("GenerateCredentialReport", "GetCredentialReport"):
        reply = await env.api.call(action, nobody)
        reply.expect(403, "AccessDenied")
        assert f"{arn} is not authorized to perform: iam:{action}" in (reply.message or "")
    auditor, _ = await env.api.new_user(
        "auditor", policy=allow(["iam:GenerateCredentialReport", "iam:GetCredentialReport"])
    )
    assert await generate(env, auditor) == "STARTED"
    await reports_for(env.api.rt.iam).wait_builds()
    report = boto_parse(await env.api.ok("GetCredentialReport", auditor))
    assert [r["user"] for r in rows_of(report["Content"])] == [
        "<root_account>",
        "auditor",
        "nobody",
    ]


def test_header_is_awss() -> None:
    assert ",".join(REPORT_HEADER) == HEADER_LINE
