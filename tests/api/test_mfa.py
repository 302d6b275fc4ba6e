"""API tests: virtual MFA devices (every IAM MFA action) and the MFA check STS relies on.

The broker runs in-process on a ``MemoryStore`` with a clock the test sets by hand, so every
TOTP code is computed for a known time step. The clock starts at the real time (requests are
signed by botocore with the real time and must fall within the clock-skew window) and moves
only when a test moves it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import botocore.session
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.api.mfa import QR_ISSUER, mfa_for, render_qr_png
from broker.app import build_runtime, make_app
from broker.config import load_config
from broker.core.keyring import SealError
from broker.core.model import Principal, PrincipalKind
from broker.core.totp import DEFAULT_WINDOW, RESYNC_WINDOW, STEP_SECONDS, otpauth_uri, totp_code
from broker.errors import AccessDeniedError, InvalidAuthenticationCodeError, ValidationError
from broker.service.mfa import (
    MFA_DEVICES_PER_USER,
    MFA_FAILED_MESSAGE,
    MfaService,
)
from broker.store.memory import MemoryStore
from tests.api.conftest import _STATUSES, Api, Creds, allow, boto_parse, tag_params

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
BAD_CODE = "Authentication code for device is not valid."


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

    @property
    def step(self) -> int:
        return self.t // STEP_SECONDS


@dataclass
class Env:
    """One broker with a hand-set clock, its API client and its MFA service."""

    api: Api
    clock: HandClock
    mfa: MfaService
    store: MemoryStore

    @property
    def account(self) -> str:
        return self.api.account_id

    def serial(self, name: str, path: str = "/") -> str:
        return f"arn:aws:iam::{self.account}:mfa{path}{name}"


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    # Start a few seconds into a time step; the skew window leaves room to move the clock.
    clock = HandClock((int(time.time()) // STEP_SECONDS) * STEP_SECONDS + 5)
    cfg = load_config(
        environ={
            "BROKER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "BROKER_SECURITY_CLOCK_SKEW_SECONDS": "3600",
        }
    )
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
    yield Env(api, clock, mfa_for(rt.iam), store)
    await client.close()


def at(seed: bytes, step: int) -> str:
    """The device's code for time step ``step``."""
    return totp_code(seed, step * STEP_SECONDS)


def wrong_code(seed: bytes, around: int, spread: int = 3 * RESYNC_WINDOW) -> str:
    """A well-formed code that matches no step within ``spread`` of step ``around``."""
    taken = {at(seed, s) for s in range(around - spread, around + spread + 1)}
    return next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in taken)


async def create(
    env: Env, name: str, creds: Creds | None = None, params: dict[str, str] | None = None
) -> tuple[str, bytes]:
    """Create a virtual device; return (serial, seed)."""
    reply = await env.api.ok("CreateVirtualMFADevice", creds, params, VirtualMFADeviceName=name)
    parsed = boto_parse(reply)["VirtualMFADevice"]
    return parsed["SerialNumber"], base64.b32decode(parsed["Base32StringSeed"])


async def enable(env: Env, user: str, serial: str, seed: bytes, creds: Creds | None = None) -> None:
    """Enable ``serial`` for ``user`` with the codes of the previous and the current step."""
    s = env.clock.step
    await env.api.ok(
        "EnableMFADevice",
        creds,
        UserName=user,
        SerialNumber=serial,
        AuthenticationCode1=at(seed, s - 1),
        AuthenticationCode2=at(seed, s),
    )


async def user_with_device(env: Env, user: str, device: str | None = None) -> tuple[str, bytes]:
    await env.api.ok("CreateUser", UserName=user)
    serial, seed = await create(env, device or user)
    await enable(env, user, serial, seed)
    return serial, seed


# -- CreateVirtualMFADevice -----------------------------------------------------------------------


async def test_create_returns_seed_qr_code_and_tags(env: Env) -> None:
    reply = await env.api.ok(
        "CreateVirtualMFADevice",
        VirtualMFADeviceName="alice-phone",
        Path="/team/",
        params=tag_params({"owner": "alice"}),
    )
    parsed = boto_parse(reply)["VirtualMFADevice"]
    serial = f"arn:aws:iam::{env.account}:mfa/team/alice-phone"
    assert parsed["SerialNumber"] == serial
    # botocore decodes the blob: the base32 text of a 160-bit seed, unpadded.
    text = parsed["Base32StringSeed"]
    assert isinstance(text, bytes) and len(text) == 32 and b"=" not in text
    seed = base64.b32decode(text)
    assert len(seed) == 20
    png = parsed["QRCodePNG"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    uri = otpauth_uri(seed, account=f"alice-phone@{env.account}", issuer=QR_ISSUER)
    assert png == render_qr_png(uri)
    assert parsed["Tags"] == [{"Key": "owner", "Value": "alice"}]
    assert "User" not in parsed and "EnableDate" not in parsed


async def test_create_without_path_and_seeds_differ(env: Env) -> None:
    first, seed1 = await create(env, "one")
    second, seed2 = await create(env, "two")
    assert first == env.serial("one")
    assert second == env.serial("two")
    assert seed1 != seed2


async def test_device_names_are_unique_case_insensitively(env: Env) -> None:
    await create(env, "Phone")
    again = await env.api.call("CreateVirtualMFADevice", VirtualMFADeviceName="phone", Path="/x/")
    again.expect(409, "EntityAlreadyExists")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"VirtualMFADeviceName": "bad name"}, "virtualMFADeviceName"),
        ({"VirtualMFADeviceName": "ok", "Path": "no-slashes"}, "path"),
        ({}, "virtualMFADeviceName"),
    ],
)
async def test_create_validation(env: Env, params: dict[str, str], fragment: str) -> None:
    reply = await env.api.call("CreateVirtualMFADevice", params=params)
    reply.expect(400, "ValidationError")
    assert fragment in (reply.message or "")


async def test_create_serial_too_long_is_invalid_input(env: Env) -> None:
    reply = await env.api.call("CreateVirtualMFADevice", VirtualMFADeviceName="d" * 240)
    reply.expect(400, "InvalidInput")


async def test_create_rejects_reserved_tag_keys(env: Env) -> None:
    reply = await env.api.call(
        "CreateVirtualMFADevice",
        VirtualMFADeviceName="dev",
        params=tag_params({"aws:owner": "x"}),
    )
    reply.expect(400, "InvalidInput")
    assert (await env.api.ok("ListVirtualMFADevices")).members("VirtualMFADevices") == []


async def test_seed_is_sealed_at_rest(env: Env) -> None:
    serial, seed = await create(env, "dev")
    records = await env.store.scan(env.account, "")
    dump = b"\n".join(r.value for r in records)
    text = base64.b32encode(seed).rstrip(b"=")
    for form in (seed, text, text.lower(), seed.hex().encode(), base64.b64encode(seed)):
        assert form not in dump
    rec = await env.store.get(env.account, "mfa/dev")
    assert rec is not None
    assert b'"seed":"v1.' in rec.value
    # The sealed seed is bound to the serial: it opens only for its own device.
    keyring = env.api.rt.keyring
    sealed = rec.value.split(b'"seed":"', 1)[1].split(b'"', 1)[0].decode()
    assert keyring.unseal(sealed, aad=serial.encode()) == seed
    with pytest.raises(SealError):
        keyring.unseal(sealed, aad=env.serial("other").encode())


async def test_seed_is_never_shown_again_or_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await env.api.ok("CreateUser", UserName="alice")
    serial, seed = await create(env, "dev")
    text = base64.b32encode(seed).rstrip(b"=")
    await enable(env, "alice", serial, seed)
    bad = await env.api.call(
        "EnableMFADevice",
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1="000000",
        AuthenticationCode2="000000",
    )
    assert not bad.ok
    replies = [
        bad,
        await env.api.ok("ListVirtualMFADevices"),
        await env.api.ok("ListMFADevices", UserName="alice"),
        await env.api.ok("GetMFADevice", SerialNumber=serial, UserName="alice"),
    ]
    for reply in replies:
        assert text not in reply.body
        assert base64.b64encode(text) not in reply.body
        assert b"Base32StringSeed" not in reply.body and b"QRCodePNG" not in reply.body
    assert text.decode() not in caplog.text


# -- EnableMFADevice ----------------------------------------------------------------------------


async def test_enable_list_and_get(env: Env) -> None:
    await env.api.ok("CreateUser", UserName="alice", Path="/staff/")
    serial, seed = await create(env, "alice-phone")
    await enable(env, "alice", serial, seed)
    enabled_at = env.clock.now().strftime(TIMESTAMP_FORMAT)

    listed = await env.api.ok("ListMFADevices", UserName="alice")
    assert boto_parse(listed)["MFADevices"] == [
        {
            "UserName": "alice",
            "SerialNumber": serial,
            "EnableDate": env.clock.now().replace(microsecond=0),
        }
    ]
    assert listed.text("MFADevices/member/EnableDate") == enabled_at
    assert listed.text("IsTruncated") == "false"

    got = boto_parse(await env.api.ok("GetMFADevice", SerialNumber=serial, UserName="alice"))
    assert (got["UserName"], got["SerialNumber"]) == ("alice", serial)

    virtual = boto_parse(await env.api.ok("ListVirtualMFADevices"))["VirtualMFADevices"]
    [device] = virtual
    assert device["SerialNumber"] == serial
    assert device["User"]["UserName"] == "alice"
    assert device["User"]["Arn"] == f"arn:aws:iam::{env.account}:user/staff/alice"
    assert device["User"]["Path"] == "/staff/"
    assert "Base32StringSeed" not in device


async def test_enable_has_no_result_element(env: Env) -> None:
    await env.api.ok("CreateUser", UserName="alice")
    serial, seed = await create(env, "dev")
    s = env.clock.step
    reply = await env.api.ok(
        "EnableMFADevice",
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1=at(seed, s - 1),
        AuthenticationCode2=at(seed, s),
    )
    assert reply.root is not None
    assert (
        reply.root.find("{https://iam.amazonaws.com/doc/2010-05-08/}EnableMFADeviceResult") is None
    )
    assert boto_parse(reply)["ResponseMetadata"]["RequestId"] == reply.request_id


async def test_enable_needs_two_consecutive_codes(env: Env) -> None:
    await env.api.ok("CreateUser", UserName="alice")
    serial, seed = await create(env, "dev")
    s = env.clock.step
    wrong = wrong_code(seed, s)
    for code1, code2 in [
        (at(seed, s), at(seed, s - 1)),  # reversed
        (at(seed, s - 1), at(seed, s + 1)),  # a step apart
        (at(seed, s), at(seed, s)),  # the same code twice
        (wrong, at(seed, s)),
        (at(seed, s - 1), wrong),
        (at(seed, s - RESYNC_WINDOW - 3), at(seed, s - RESYNC_WINDOW - 2)),  # too old
        (at(seed, s + RESYNC_WINDOW + 1), at(seed, s + RESYNC_WINDOW + 2)),  # too far ahead
    ]:
        reply = await env.api.call(
            "EnableMFADevice",
            UserName="alice",
            SerialNumber=serial,
            AuthenticationCode1=code1,
            AuthenticationCode2=code2,
        )
        reply.expect(403, "InvalidAuthenticationCode", BAD_CODE)
        assert reply.fault == "Sender"
    assert (await env.api.ok("ListMFADevices", UserName="alice")).members("MFADevices") == []
    # A pair a few steps off (authenticator clock drift) is accepted.
    await env.api.ok(
        "EnableMFADevice",
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1=at(seed, s + 2),
        AuthenticationCode2=at(seed, s + 3),
    )


async def test_invalid_authentication_code_is_boto3s_modelled_error(env: Env) -> None:
    model = botocore.session.get_session().get_service_model("iam")
    shapes = {s.error_code: s for s in model.error_shapes}
    shape = shapes[InvalidAuthenticationCodeError.code]
    assert shape.metadata["error"]["httpStatusCode"] == InvalidAuthenticationCodeError.status


@pytest.mark.parametrize(
    ("code1", "code2", "fragment"),
    [
        ("12345", "123456", "authenticationCode1"),
        ("123456", "1234567", "authenticationCode2"),
        ("12345a", "123456", "authenticationCode1"),
    ],
)
async def test_enable_code_validation(env: Env, code1: str, code2: str, fragment: str) -> None:
    await env.api.ok("CreateUser", UserName="alice")
    serial, _ = await create(env, "dev")
    reply = await env.api.call(
        "EnableMFADevice",
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1=code1,
        AuthenticationCode2=code2,
    )
    reply.expect(400, "ValidationError")
    assert fragment in (reply.message or "")


async def test_enable_requires_user_name_and_serial(env: Env) -> None:
    reply = await env.api.call(
        "EnableMFADevice", AuthenticationCode1="123456", AuthenticationCode2="123456"
    )
    reply.expect(400, "ValidationError")
    assert "userName" in (reply.message or "") and "serialNumber" in (reply.message or "")


async def test_enable_unknown_user_or_device(env: Env) -> None:
    await env.api.ok("CreateUser", UserName="alice")
    serial, seed = await create(env, "dev")
    s = env.clock.step
    codes = {"AuthenticationCode1": at(seed, s - 1), "AuthenticationCode2": at(seed, s)}
    (
        await env.api.call("EnableMFADevice", None, codes, UserName="ghost", SerialNumber=serial)
    ).expect(404, "NoSuchEntity")
    for other in (
        env.serial("missing"),
        "arn:aws:iam::000000000000:mfa/dev",  # another account's serial
        "GAHT12345678",  # a hardware token serial
        f"arn:aws:iam::{env.account}:user/dev",
    ):
        reply = await env.api.call(
            "EnableMFADevice", None, codes, UserName="alice", SerialNumber=other
        )
        reply.expect(
            404, "NoSuchEntity", f"VirtualMFADevice with serial number {other} doesn't exist."
        )


async def test_one_device_per_user(env: Env) -> None:
    serial, _ = await user_with_device(env, "alice", "first")
    second, seed2 = await create(env, "second")
    s = env.clock.step
    reply = await env.api.call(
        "EnableMFADevice",
        UserName="alice",
        SerialNumber=second,
        AuthenticationCode1=at(seed2, s - 1),
        AuthenticationCode2=at(seed2, s),
    )
    reply.expect(409, "LimitExceeded")
    assert str(MFA_DEVICES_PER_USER) in (reply.message or "")
    listed = await env.api.ok("ListMFADevices", UserName="alice")
    assert listed.member_texts("MFADevices", "SerialNumber") == [serial]


async def test_assigned_device_cannot_be_enabled_again(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    await env.api.ok("CreateUser", UserName="bob")
    env.clock.advance(2 * STEP_SECONDS)
    s = env.clock.step
    for user in ("bob", "alice"):
        reply = await env.api.call(
            "EnableMFADevice",
            UserName=user,
            SerialNumber=serial,
            AuthenticationCode1=at(seed, s - 1),
            AuthenticationCode2=at(seed, s),
        )
        reply.expect(409, "EntityAlreadyExists")


async def test_racing_enables_for_one_user_leave_one_device(env: Env) -> None:
    await env.api.ok("CreateUser", UserName="alice")
    devices = [await create(env, f"dev{i}") for i in range(4)]
    s = env.clock.step
    replies = await asyncio.gather(
        *(
            env.api.call(
                "EnableMFADevice",
                UserName="alice",
                SerialNumber=serial,
                AuthenticationCode1=at(seed, s - 1),
                AuthenticationCode2=at(seed, s),
            )
            for serial, seed in devices
        )
    )
    assert sorted(r.status for r in replies) == [200, 409, 409, 409]
    assert {r.code for r in replies if not r.ok} == {"LimitExceeded"}
    listed = await env.api.ok("ListMFADevices", UserName="alice")
    assert len(listed.members("MFADevices")) == 1
    assigned = await env.api.ok("ListVirtualMFADevices", AssignmentStatus="Assigned")
    assert len(assigned.members("VirtualMFADevices")) == 1


# -- ListVirtualMFADevices ----------------------------------------------------------------------


async def test_list_virtual_by_assignment_status(env: Env) -> None:
    assigned, _ = await user_with_device(env, "alice", "a-dev")
    free, _ = await create(env, "b-dev")

    async def serials(status: str | None) -> list[str]:
        kw = {} if status is None else {"AssignmentStatus": status}
        reply = await env.api.ok("ListVirtualMFADevices", None, kw)
        return reply.member_texts("VirtualMFADevices", "SerialNumber")

    assert await serials(None) == [assigned, free]
    assert await serials("Any") == [assigned, free]
    assert await serials("Assigned") == [assigned]
    assert await serials("Unassigned") == [free]
    parsed = boto_parse(await env.api.ok("ListVirtualMFADevices"))["VirtualMFADevices"]
    assert "User" in parsed[0] and "EnableDate" in parsed[0]
    assert "User" not in parsed[1] and "EnableDate" not in parsed[1]
    bad = await env.api.call("ListVirtualMFADevices", AssignmentStatus="Some")
    bad.expect(400, "ValidationError")


async def test_list_virtual_paginates(env: Env) -> None:
    made = sorted([(await create(env, f"dev{i}"))[0] for i in range(5)])
    seen: list[str] = []
    marker: str | None = None
    while True:
        kw = {"MaxItems": "2"}
        if marker is not None:
            kw["Marker"] = marker
        page = await env.api.ok("ListVirtualMFADevices", None, kw)
        got = page.member_texts("VirtualMFADevices", "SerialNumber")
        assert len(got) <= 2
        seen += got
        if page.text("IsTruncated") == "false":
            assert page.text("Marker") is None
            break
        marker = page.text("Marker")
        assert marker
    assert seen == made


async def test_list_virtual_follows_a_renamed_user(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    await env.api.ok("UpdateUser", UserName="alice", NewUserName="alicia", NewPath="/moved/")
    [device] = boto_parse(await env.api.ok("ListVirtualMFADevices"))["VirtualMFADevices"]
    assert device["User"]["UserName"] == "alicia"
    assert device["User"]["Arn"].endswith(":user/moved/alicia")
    listed = await env.api.ok("ListMFADevices", UserName="alicia")
    assert listed.member_texts("MFADevices", "UserName") == ["alicia"]
    env.clock.advance(STEP_SECONDS)
    assert await env.mfa.verify(env.account, "alicia", serial, at(seed, env.clock.step))
    (await env.api.call("DeleteUser", UserName="alicia")).expect(409, "DeleteConflict")


# -- DeactivateMFADevice / DeleteVirtualMFADevice / DeleteUser ----------------------------------


async def test_deactivate_then_delete(env: Env) -> None:
    serial, _ = await user_with_device(env, "alice", "dev")
    (await env.api.call("DeleteVirtualMFADevice", SerialNumber=serial)).expect(
        409, "DeleteConflict"
    )
    reply = await env.api.ok("DeactivateMFADevice", UserName="alice", SerialNumber=serial)
    assert reply.root is not None and len(list(reply.root)) == 1  # only ResponseMetadata
    assert (await env.api.ok("ListMFADevices", UserName="alice")).members("MFADevices") == []
    free = await env.api.ok("ListVirtualMFADevices", AssignmentStatus="Unassigned")
    assert free.member_texts("VirtualMFADevices", "SerialNumber") == [serial]
    (await env.api.call("DeactivateMFADevice", UserName="alice", SerialNumber=serial)).expect(
        404, "NoSuchEntity"
    )
    await env.api.ok("DeleteVirtualMFADevice", SerialNumber=serial)
    assert (await env.api.ok("ListVirtualMFADevices")).members("VirtualMFADevices") == []
    assert await env.store.get(env.account, "mfa/dev") is None
    assert await env.store.get(env.account, "mfaused/dev") is None
    (await env.api.call("DeleteVirtualMFADevice", SerialNumber=serial)).expect(404, "NoSuchEntity")


async def test_deactivated_device_can_be_enabled_again(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    await env.api.ok("DeactivateMFADevice", UserName="alice", SerialNumber=serial)
    await env.api.ok("CreateUser", UserName="bob")
    env.clock.advance(2 * STEP_SECONDS)
    await enable(env, "bob", serial, seed)
    listed = await env.api.ok("ListMFADevices", UserName="bob")
    assert listed.member_texts("MFADevices", "SerialNumber") == [serial]


async def test_deactivate_needs_the_users_own_device(env: Env) -> None:
    serial, _ = await user_with_device(env, "alice", "dev")
    await env.api.ok("CreateUser", UserName="bob")
    (await env.api.call("DeactivateMFADevice", UserName="bob", SerialNumber=serial)).expect(
        404, "NoSuchEntity"
    )
    (await env.api.call("DeactivateMFADevice", UserName="ghost", SerialNumber=serial)).expect(
        404, "NoSuchEntity"
    )
    listed = await env.api.ok("ListMFADevices", UserName="alice")
    assert listed.member_texts("MFADevices", "SerialNumber") == [serial]


async def test_delete_user_with_enabled_device_conflicts(env: Env) -> None:
    serial, _ = await user_with_device(env, "alice", "dev")
    reply = await env.api.call("DeleteUser", UserName="alice")
    reply.expect(409, "DeleteConflict")
    assert "MFA" in (reply.message or "")
    await env.api.ok("DeactivateMFADevice", UserName="alice", SerialNumber=serial)
    await env.api.ok("DeleteUser", UserName="alice")


async def test_delete_recreate_starts_fresh(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    await env.api.ok("DeactivateMFADevice", UserName="alice", SerialNumber=serial)
    await env.api.ok("DeleteVirtualMFADevice", SerialNumber=serial)
    again, seed2 = await create(env, "dev")
    assert again == serial and seed2 != seed
    s = env.clock.step
    old = await env.api.call(
        "EnableMFADevice",
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1=at(seed, s - 1),
        AuthenticationCode2=at(seed, s),
    )
    old.expect(403, "InvalidAuthenticationCode")
    await enable(env, "alice", serial, seed2)


# -- GetMFADevice / ListMFADevices --------------------------------------------------------------


async def test_get_mfa_device_errors(env: Env) -> None:
    serial, _ = await user_with_device(env, "alice", "dev")
    free, _ = await create(env, "free")
    await env.api.ok("CreateUser", UserName="bob")
    (await env.api.call("GetMFADevice", SerialNumber=free, UserName="alice")).expect(
        404, "NoSuchEntity"
    )
    (await env.api.call("GetMFADevice", SerialNumber=serial, UserName="bob")).expect(
        404, "NoSuchEntity"
    )
    (await env.api.call("GetMFADevice", SerialNumber=serial, UserName="ghost")).expect(
        404, "NoSuchEntity"
    )
    (await env.api.call("GetMFADevice", SerialNumber="short")).expect(400, "ValidationError")


async def test_list_mfa_devices_unknown_user(env: Env) -> None:
    (await env.api.call("ListMFADevices", UserName="ghost")).expect(404, "NoSuchEntity")


async def test_user_manages_own_device_without_user_name(env: Env) -> None:
    own = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "iam:CreateVirtualMFADevice",
                    "iam:EnableMFADevice",
                    "iam:ListMFADevices",
                    "iam:GetMFADevice",
                    "iam:DeactivateMFADevice",
                    "iam:DeleteVirtualMFADevice",
                ],
                "Resource": [
                    f"arn:aws:iam::{env.account}:mfa/${{aws:username}}",
                    f"arn:aws:iam::{env.account}:user/${{aws:username}}",
                ],
            }
        ],
    }
    creds, _ = await env.api.new_user("alice", policy=json.dumps(own))
    await env.api.ok("CreateUser", UserName="bob")
    serial, seed = await create(env, "alice", creds)
    # Not the device name of another user, not another user's devices.
    (await env.api.call("CreateVirtualMFADevice", creds, VirtualMFADeviceName="bob")).expect(
        403, "AccessDenied"
    )
    (await env.api.call("ListMFADevices", creds, UserName="bob")).expect(403, "AccessDenied")
    await enable(env, "alice", serial, seed, creds)
    mine = await env.api.ok("ListMFADevices", creds)
    assert mine.member_texts("MFADevices", "UserName") == ["alice"]
    got = await env.api.ok("GetMFADevice", creds, SerialNumber=serial)
    assert got.text("UserName") == "alice"
    await env.api.ok("DeactivateMFADevice", creds, SerialNumber=serial)
    await env.api.ok("DeleteVirtualMFADevice", creds, SerialNumber=serial)


async def test_actions_are_authorized_before_existence(env: Env) -> None:
    creds, _ = await env.api.new_user("mallory", policy=allow("iam:GetUser"))
    for user in ("alice", "ghost"):
        if user == "alice":
            await user_with_device(env, "alice", "dev")
        for action, extra in [
            ("ListMFADevices", {}),
            ("GetMFADevice", {"SerialNumber": env.serial("dev")}),
            ("DeactivateMFADevice", {"SerialNumber": env.serial("dev")}),
            (
                "EnableMFADevice",
                {
                    "SerialNumber": env.serial("dev"),
                    "AuthenticationCode1": "123456",
                    "AuthenticationCode2": "654321",
                },
            ),
            (
                "ResyncMFADevice",
                {
                    "SerialNumber": env.serial("dev"),
                    "AuthenticationCode1": "123456",
                    "AuthenticationCode2": "654321",
                },
            ),
        ]:
            reply = await env.api.call(action, creds, extra, UserName=user)
            reply.expect(403, "AccessDenied")
            assert f":user/{user}" in (reply.message or "")
    for serial in (env.serial("dev"), env.serial("ghost")):
        reply = await env.api.call("DeleteVirtualMFADevice", creds, SerialNumber=serial)
        reply.expect(403, "AccessDenied")
    (await env.api.call("ListVirtualMFADevices", creds)).expect(403, "AccessDenied")
    (await env.api.call("CreateVirtualMFADevice", creds, VirtualMFADeviceName="x")).expect(
        403, "AccessDenied"
    )
    # Nothing changed.
    listed = await env.api.ok("ListMFADevices", UserName="alice")
    assert listed.member_texts("MFADevices", "SerialNumber") == [env.serial("dev")]


async def test_device_tags_and_request_tags_join_the_context(env: Env) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iam:CreateVirtualMFADevice",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"}},
            },
            {
                "Effect": "Allow",
                "Action": "iam:DeleteVirtualMFADevice",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:ResourceTag/team": "blue"}},
            },
        ],
    }
    creds, _ = await env.api.new_user("ops", policy=json.dumps(policy))
    (await env.api.call("CreateVirtualMFADevice", creds, VirtualMFADeviceName="untagged")).expect(
        403, "AccessDenied"
    )
    await env.api.ok(
        "CreateVirtualMFADevice",
        creds,
        VirtualMFADeviceName="blue",
        params=tag_params({"team": "blue"}),
    )
    await create(env, "red", params=tag_params({"team": "red"}))
    (await env.api.call("DeleteVirtualMFADevice", creds, SerialNumber=env.serial("red"))).expect(
        403, "AccessDenied"
    )
    await env.api.ok("DeleteVirtualMFADevice", creds, SerialNumber=env.serial("blue"))


async def test_role_session_must_name_the_user(env: Env) -> None:
    role = Principal(
        PrincipalKind.ASSUMED_ROLE,
        env.account,
        f"arn:aws:sts::{env.account}:assumed-role/r/s",
        "AROAEXAMPLEEXAMPLE:s",
        "s",
        "ASIAEXAMPLEEXAMPLE12",
    )
    with pytest.raises(ValidationError, match="non-User credentials"):
        await env.mfa.list_devices(role, None)


# -- ResyncMFADevice ----------------------------------------------------------------------------


async def test_resync_learns_the_device_drift(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    env.clock.advance(10 * STEP_SECONDS)
    # The authenticator's clock now runs five steps behind the broker's.
    lag = 5
    device_step = env.clock.step - lag
    with pytest.raises(AccessDeniedError):
        await env.mfa.verify(env.account, "alice", serial, at(seed, device_step))
    wrong = wrong_code(seed, env.clock.step)
    (
        await env.api.call(
            "ResyncMFADevice",
            UserName="alice",
            SerialNumber=serial,
            AuthenticationCode1=wrong,
            AuthenticationCode2=at(seed, device_step),
        )
    ).expect(403, "InvalidAuthenticationCode", BAD_CODE)
    await env.api.ok(
        "ResyncMFADevice",
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1=at(seed, device_step - 1),
        AuthenticationCode2=at(seed, device_step),
    )
    # The resync pair is used up; the next code of the lagging device works.
    with pytest.raises(AccessDeniedError):
        await env.mfa.verify(env.account, "alice", serial, at(seed, device_step))
    env.clock.advance(STEP_SECONDS)
    assert (
        await env.mfa.verify(env.account, "alice", serial, at(seed, device_step + 1)) == env.clock.t
    )
    # Replaying the resync pair is refused.
    (
        await env.api.call(
            "ResyncMFADevice",
            UserName="alice",
            SerialNumber=serial,
            AuthenticationCode1=at(seed, device_step - 1),
            AuthenticationCode2=at(seed, device_step),
        )
    ).expect(403, "InvalidAuthenticationCode")


async def test_resync_needs_an_enabled_device(env: Env) -> None:
    await env.api.ok("CreateUser", UserName="alice")
    serial, seed = await create(env, "dev")
    s = env.clock.step
    reply = await env.api.call(
        "ResyncMFADevice",
        UserName="alice",
        SerialNumber=serial,
        AuthenticationCode1=at(seed, s - 1),
        AuthenticationCode2=at(seed, s),
    )
    reply.expect(404, "NoSuchEntity")


# -- verify (STS) -------------------------------------------------------------------------------


async def test_verify_accepts_a_fresh_code_once(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    # Enabling used the current step's code: it cannot authenticate anything now.
    with pytest.raises(AccessDeniedError) as info:
        await env.mfa.verify(env.account, "alice", serial, at(seed, env.clock.step))
    assert info.value.message == MFA_FAILED_MESSAGE
    assert info.value.status == 403
    env.clock.advance(STEP_SECONDS + 3)
    code = at(seed, env.clock.step)
    assert await env.mfa.verify(env.account, "alice", serial, code) == env.clock.t
    with pytest.raises(AccessDeniedError, match="invalid MFA one time pass code"):
        await env.mfa.verify(env.account, "alice", serial, code)
    # An older, still-in-window code is refused once a newer one was used.
    env.clock.advance(STEP_SECONDS)
    with pytest.raises(AccessDeniedError):
        await env.mfa.verify(env.account, "alice", serial, code)
    assert await env.mfa.verify(env.account, "alice", serial, at(seed, env.clock.step))


async def test_verify_window(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    env.clock.advance(10 * STEP_SECONDS)
    s = env.clock.step
    for off in (-DEFAULT_WINDOW - 1, DEFAULT_WINDOW + 1, DEFAULT_WINDOW + 2):
        with pytest.raises(AccessDeniedError):
            await env.mfa.verify(env.account, "alice", serial, at(seed, s + off))
    assert await env.mfa.verify(env.account, "alice", serial, at(seed, s - DEFAULT_WINDOW))
    assert await env.mfa.verify(env.account, "alice", serial, at(seed, s + DEFAULT_WINDOW))


async def test_racing_verifications_accept_a_code_once(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    env.clock.advance(STEP_SECONDS)
    code = at(seed, env.clock.step)
    results = await asyncio.gather(
        *(env.mfa.verify(env.account, "alice", serial, code) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, int) for r in results) == 1
    assert sum(isinstance(r, AccessDeniedError) for r in results) == 4


@pytest.mark.parametrize(
    "case", ["other-user", "unknown-user", "root", "bad-serial", "other-account", "malformed"]
)
async def test_verify_refuses_devices_not_assigned_to_the_user(env: Env, case: str) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    await env.api.ok("CreateUser", UserName="bob")
    env.clock.advance(STEP_SECONDS)
    code = at(seed, env.clock.step)
    user: str | None = "alice"
    account = env.account
    if case == "other-user":
        user = "bob"
    elif case == "unknown-user":
        user = "ghost"
    elif case == "root":
        user = None
    elif case == "bad-serial":
        serial = env.serial("other")
    elif case == "other-account":
        account = "000000000000"
    else:
        serial = "not-an-arn"
    with pytest.raises(AccessDeniedError, match="invalid MFA one time pass code"):
        await env.mfa.verify(account, user, serial, code)


async def test_verify_refuses_a_deactivated_device(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    await env.api.ok("DeactivateMFADevice", UserName="alice", SerialNumber=serial)
    env.clock.advance(STEP_SECONDS)
    with pytest.raises(AccessDeniedError):
        await env.mfa.verify(env.account, "alice", serial, at(seed, env.clock.step))


async def test_verify_does_not_bump_the_generation(env: Env) -> None:
    serial, seed = await user_with_device(env, "alice", "dev")
    env.clock.advance(STEP_SECONDS)
    before = await env.store.generation(env.account)
    assert await env.mfa.verify(env.account, "alice", serial, at(seed, env.clock.step))
    assert await env.store.generation(env.account) == before


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", ""])
async def test_verify_refuses_malformed_codes(env: Env, code: str) -> None:
    serial, _ = await user_with_device(env, "alice", "dev")
    with pytest.raises(AccessDeniedError):
        await env.mfa.verify(env.account, "alice", serial, code)


# -- the root user's device ---------------------------------------------------------------------


async def test_root_enables_and_uses_its_own_device(env: Env) -> None:
    serial, seed = await create(env, "root-account-mfa-device")
    assert serial == f"arn:aws:iam::{env.account}:mfa/root-account-mfa-device"
    await enable(env, env.account, serial, seed)
    mine = boto_parse(await env.api.ok("ListMFADevices"))["MFADevices"]
    assert [(d["UserName"], d["SerialNumber"]) for d in mine] == [(env.account, serial)]
    named = await env.api.ok("ListMFADevices", UserName=env.account)
    assert named.member_texts("MFADevices", "SerialNumber") == [serial]
    got = await env.api.ok("GetMFADevice", SerialNumber=serial)
    assert got.text("UserName") == env.account
    [device] = boto_parse(await env.api.ok("ListVirtualMFADevices"))["VirtualMFADevices"]
    assert device["User"]["Arn"] == f"arn:aws:iam::{env.account}:root"
    assert device["User"]["UserId"] == env.account
    assert "UserName" not in device["User"]

    env.clock.advance(STEP_SECONDS)
    code = at(seed, env.clock.step)
    with pytest.raises(AccessDeniedError):
        await env.mfa.verify(env.account, "root", serial, code)  # not an IAM user
    assert await env.mfa.verify(env.account, None, serial, code) == env.clock.t
    with pytest.raises(AccessDeniedError):
        await env.mfa.verify(env.account, None, serial, code)

    # The root user has one device, too; and it cannot be deleted while enabled.
    other, seed2 = await create(env, "spare")
    s = env.clock.step
    reply = await env.api.call(
        "EnableMFADevice",
        UserName=env.account,
        SerialNumber=other,
        AuthenticationCode1=at(seed2, s - 1),
        AuthenticationCode2=at(seed2, s),
    )
    reply.expect(409, "LimitExceeded")
    (await env.api.call("DeleteVirtualMFADevice", SerialNumber=serial)).expect(
        409, "DeleteConflict"
    )
    await env.api.ok("DeactivateMFADevice", SerialNumber=serial)
    assert (await env.api.ok("ListMFADevices")).members("MFADevices") == []
    await env.api.ok("DeleteVirtualMFADevice", SerialNumber=serial)


async def test_users_cannot_reach_the_root_device(env: Env) -> None:
    serial, seed = await create(env, "root-account-mfa-device")
    await enable(env, env.account, serial, seed)
    creds, _ = await env.api.new_user("admin", policy=allow("*"))
    # For an IAM user, the account id is just a user name (and no such user exists).
    env.clock.advance(2 * STEP_SECONDS)
    s = env.clock.step
    codes = {"AuthenticationCode1": at(seed, s - 1), "AuthenticationCode2": at(seed, s)}
    for reply in [
        await env.api.call("DeactivateMFADevice", creds, UserName=env.account, SerialNumber=serial),
        await env.api.call("GetMFADevice", creds, UserName=env.account, SerialNumber=serial),
        await env.api.call("ListMFADevices", creds, UserName=env.account),
        await env.api.call(
            "ResyncMFADevice", creds, codes, UserName=env.account, SerialNumber=serial
        ),
    ]:
        reply.expect(404, "NoSuchEntity")
    # An admin sees the root's device in the account-wide listing but cannot delete it.
    listed = await env.api.ok("ListVirtualMFADevices", creds)
    assert listed.member_texts("VirtualMFADevices", "SerialNumber") == [serial]
    (await env.api.call("DeleteVirtualMFADevice", creds, SerialNumber=serial)).expect(
        409, "DeleteConflict"
    )
    mine = await env.api.ok("ListMFADevices")
    assert mine.member_texts("MFADevices", "SerialNumber") == [serial]
