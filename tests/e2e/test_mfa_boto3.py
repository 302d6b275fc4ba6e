"""Virtual MFA devices through unmodified boto3 and the real ``aws`` CLI, on a real broker.

Codes are computed from the ``Base32StringSeed`` the broker returned, at the real time, the way
an authenticator app would.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.core.totp import STEP_SECONDS, totp_code
from tests.support.broker_proc import BrokerProcess

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def consecutive_codes(seed: bytes) -> tuple[str, str]:
    """The codes of the previous and the current time step, as an authenticator shows them."""
    step = int(time.time()) // STEP_SECONDS
    return totp_code(seed, (step - 1) * STEP_SECONDS), totp_code(seed, step * STEP_SECONDS)


def not_a_code(seed: bytes) -> str:
    """A six-digit code that no step near now produces."""
    step = int(time.time()) // STEP_SECONDS
    taken = {totp_code(seed, s * STEP_SECONDS) for s in range(step - 30, step + 31)}
    return next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in taken)


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: dict[str, Any] = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_boto3_virtual_mfa_lifecycle(broker: BrokerProcess) -> None:
    iam = broker.client("iam", broker.root_creds())
    account = broker.account_id()
    iam.create_user(UserName="alice")

    created = iam.create_virtual_mfa_device(
        VirtualMFADeviceName="alice-phone",
        Path="/people/",
        Tags=[{"Key": "owner", "Value": "alice"}],
    )["VirtualMFADevice"]
    serial = created["SerialNumber"]
    assert serial == f"arn:aws:iam::{account}:mfa/people/alice-phone"
    assert isinstance(created["Base32StringSeed"], bytes)  # botocore decoded the blob
    seed = base64.b32decode(created["Base32StringSeed"])
    assert len(seed) == 20
    assert created["QRCodePNG"].startswith(PNG_SIGNATURE)
    assert created["Tags"] == [{"Key": "owner", "Value": "alice"}]

    # Wrong codes: boto3's modelled exception, 403.
    wrong = not_a_code(seed)
    with pytest.raises(iam.exceptions.InvalidAuthenticationCodeException) as bad:
        iam.enable_mfa_device(
            UserName="alice",
            SerialNumber=serial,
            AuthenticationCode1=wrong,
            AuthenticationCode2=wrong,
        )
    assert error_of(bad) == ("InvalidAuthenticationCode", 403)

    code1, code2 = consecutive_codes(seed)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    iam.enable_mfa_device(
        UserName="alice", SerialNumber=serial, AuthenticationCode1=code1, AuthenticationCode2=code2
    )

    [device] = iam.list_mfa_devices(UserName="alice")["MFADevices"]
    assert device["UserName"] == "alice"
    assert device["SerialNumber"] == serial
    assert device["EnableDate"] >= before - dt.timedelta(seconds=5)
    got = iam.get_mfa_device(SerialNumber=serial, UserName="alice")
    assert (got["UserName"], got["SerialNumber"]) == ("alice", serial)

    [assigned] = iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")["VirtualMFADevices"]
    assert assigned["SerialNumber"] == serial
    assert assigned["User"]["UserName"] == "alice"
    assert assigned["User"]["Arn"] == f"arn:aws:iam::{account}:user/alice"
    assert "Base32StringSeed" not in assigned and "QRCodePNG" not in assigned
    assert iam.list_virtual_mfa_devices(AssignmentStatus="Unassigned")["VirtualMFADevices"] == []

    # One device per user; an enabled device blocks deleting it and its user.
    spare = iam.create_virtual_mfa_device(VirtualMFADeviceName="spare")["VirtualMFADevice"]
    spare_seed = base64.b32decode(spare["Base32StringSeed"])
    s1, s2 = consecutive_codes(spare_seed)
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.enable_mfa_device(
            UserName="alice",
            SerialNumber=spare["SerialNumber"],
            AuthenticationCode1=s1,
            AuthenticationCode2=s2,
        )
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_virtual_mfa_device(SerialNumber=serial)
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_user(UserName="alice")

    paginator = iam.get_paginator("list_virtual_mfa_devices")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 1}))
    assert len(pages) == 2
    assert [d["SerialNumber"] for p in pages for d in p["VirtualMFADevices"]] == sorted(
        [serial, spare["SerialNumber"]]
    )

    iam.deactivate_mfa_device(UserName="alice", SerialNumber=serial)
    assert iam.list_mfa_devices(UserName="alice")["MFADevices"] == []
    iam.delete_virtual_mfa_device(SerialNumber=serial)
    iam.delete_virtual_mfa_device(SerialNumber=spare["SerialNumber"])
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_virtual_mfa_device(SerialNumber=serial)
    iam.delete_user(UserName="alice")
    assert iam.list_virtual_mfa_devices()["VirtualMFADevices"] == []


def test_seed_is_sealed_on_disk_and_never_logged(sqlite_broker: BrokerProcess) -> None:
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    iam.create_user(UserName="bob")
    created = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob")["VirtualMFADevice"]
    text = created["Base32StringSeed"]
    seed = base64.b32decode(text)
    code1, code2 = consecutive_codes(seed)
    iam.enable_mfa_device(
        UserName="bob",
        SerialNumber=created["SerialNumber"],
        AuthenticationCode1=code1,
        AuthenticationCode2=code2,
    )
    iam.list_virtual_mfa_devices()
    on_disk = b"".join(p.read_bytes() for p in sqlite_broker.data_dir.iterdir() if p.is_file())
    assert b"mfa/bob" in on_disk  # the device record is there ...
    for form in (text, text.lower(), seed, seed.hex().encode(), base64.b64encode(seed)):
        assert form not in on_disk  # ... but not its seed
    assert text.decode() not in sqlite_broker.log()


def test_aws_cli_writes_the_qr_code_and_enables_with_the_seed_file(
    sqlite_broker: BrokerProcess, tmp_path: Path
) -> None:
    creds = sqlite_broker.root_creds()
    sqlite_broker.aws(["iam", "create-user", "--user-name", "carol"], creds, check=True)
    png = tmp_path / "carol.png"
    sqlite_broker.aws(
        [
            "iam",
            "create-virtual-mfa-device",
            "--virtual-mfa-device-name",
            "carol-qr",
            "--outfile",
            str(png),
            "--bootstrap-method",
            "QRCodePNG",
        ],
        creds,
        check=True,
    )
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    seed_file = tmp_path / "carol.txt"
    out = sqlite_broker.aws(
        [
            "iam",
            "create-virtual-mfa-device",
            "--virtual-mfa-device-name",
            "carol",
            "--outfile",
            str(seed_file),
            "--bootstrap-method",
            "Base32StringSeed",
        ],
        creds,
        check=True,
    )
    serial = json.loads(out.stdout)["VirtualMFADevice"]["SerialNumber"]
    seed = base64.b32decode(seed_file.read_bytes().strip())
    code1, code2 = consecutive_codes(seed)
    sqlite_broker.aws(
        [
            "iam",
            "enable-mfa-device",
            "--user-name",
            "carol",
            "--serial-number",
            serial,
            "--authentication-code1",
            code1,
            "--authentication-code2",
            code2,
        ],
        creds,
        check=True,
    )
    listed = sqlite_broker.aws(["iam", "list-mfa-devices", "--user-name", "carol"], creds)
    assert listed.returncode == 0, listed.stderr
    [device] = json.loads(listed.stdout)["MFADevices"]
    assert (device["UserName"], device["SerialNumber"]) == ("carol", serial)
