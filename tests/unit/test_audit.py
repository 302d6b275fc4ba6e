"""Unit tests for broker.audit: allow-list redaction, event shape, rotation, the spool."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

import pytest

from broker.audit import (
    HIDDEN,
    AuditEvent,
    AuditSink,
    JsonValue,
    RotatingFile,
    api_event,
    audit_files,
    delivery_event,
    event_matches,
    read_events,
    redact_parameters,
    redact_response,
    token_digest,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN"


class Kind(Enum):
    USER = "user"
    ASSUMED_ROLE = "assumed-role"


@dataclass(frozen=True)
class Session:
    account_id: str
    issuer_arn: str
    issuer_name: str
    issued_at: int
    mfa_authenticated: bool


@dataclass(frozen=True)
class Caller:
    kind: Kind
    account_id: str
    arn: str
    user_id: str
    name: str
    access_key_id: str
    session: Session | None = None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Password", "hunter2!"),
        ("NewPassword", "hunter3!"),
        ("OldPassword", "hunter1!"),
        ("PolicyDocument", '{"Version":"2012-10-17"}'),
        ("AssumeRolePolicyDocument", '{"Statement":[]}'),
        ("Policy", '{"Statement":[]}'),
        ("WebIdentityToken", "eyJhbGciOi.x.y"),
        ("TokenCode", "123456"),
        ("AuthenticationCode1", "123456"),
        ("AuthenticationCode2", "654321"),
        ("ExternalId", "shared-secret"),
        ("SAMLAssertion", "PHNhbWw+"),
        ("SomethingNew", "unknown"),
        ("Tags.member.1.Secret", "x"),
    ],
)
def test_unknown_or_secret_parameters_are_hidden(name: str, value: str) -> None:
    out = redact_parameters({"Action": "X", name: value})
    assert value not in json.dumps(out)
    assert HIDDEN in out.values()


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("RoleArn", "roleArn"),
        ("RoleSessionName", "roleSessionName"),
        ("UserName", "userName"),
        ("DurationSeconds", "durationSeconds"),
        ("SerialNumber", "serialNumber"),
        ("PolicyArns.member.1.arn", "policyArns.member.1.arn"),
        ("Tags.member.2.Key", "tags.member.2.key"),
    ],
)
def test_allowed_parameters_are_kept(name: str, key: str) -> None:
    assert redact_parameters({name: "v"}) == {key: "v"}


def test_action_version_and_sigv4_query_parameters_are_left_out() -> None:
    params = {
        "Action": "GetUser",
        "Version": "2010-05-08",
        "X-Amz-Signature": "abc",
        "X-Amz-Security-Token": TOKEN,
    }
    assert redact_parameters(params) == {}


def test_response_credentials_keep_only_key_id_and_expiration() -> None:
    result = {
        "Credentials": {
            "AccessKeyId": "ASIAEXAMPLE",
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": NOW,
        },
        "AssumedRoleUser": {"Arn": "arn:aws:sts::1:assumed-role/r/s", "AssumedRoleId": "AROA:s"},
        "PackedPolicySize": 6,
    }
    out = redact_response(result)
    assert out == {
        "credentials": {"accessKeyId": "ASIAEXAMPLE", "expiration": "2024-05-01T12:00:00Z"},
        "assumedRoleUser": {"arn": "arn:aws:sts::1:assumed-role/r/s", "assumedRoleId": "AROA:s"},
        "packedPolicySize": 6,
    }


def test_create_access_key_secret_is_dropped() -> None:
    out = redact_response(
        {"AccessKey": {"UserName": "u", "AccessKeyId": "AKIA1", "SecretAccessKey": SECRET}}
    )
    assert SECRET not in json.dumps(out)
    assert out == {"accessKey": {"userName": "u", "accessKeyId": "AKIA1"}}


def test_policy_text_hidden_but_policy_metadata_kept() -> None:
    assert redact_response({"PolicyDocument": "%7B%7D"}) == {"policyDocument": HIDDEN}
    assert redact_response({"Policy": {"PolicyName": "p"}}) == {"policy": {"policyName": "p"}}
    assert redact_response({"Policy": "{}"}) == {"policy": HIDDEN}


def test_mfa_seed_and_unknown_types_hidden() -> None:
    out = redact_response({"VirtualMFADevice": {"Base32StringSeed": "JBSWY3DP", "QRCodePNG": "x"}})
    assert out == {"virtualMFADevice": {"base32StringSeed": HIDDEN, "qRCodePNG": HIDDEN}}
    assert redact_response(object()) == HIDDEN


def test_api_event_shape_for_a_session_caller() -> None:
    caller = Caller(
        Kind.ASSUMED_ROLE,
        "111122223333",
        "arn:aws:sts::111122223333:assumed-role/r/s",
        "AROAEXAMPLE:s",
        "s",
        "ASIAEXAMPLE",
        Session("111122223333", "arn:aws:iam::111122223333:role/r", "r", 1714564800, True),
    )
    event = api_event(
        now=NOW,
        service="iam",
        action="ListUsers",
        region="eu-west-1",
        source_ip="127.0.0.1",
        user_agent="boto3",
        principal=caller,
        params={"Action": "ListUsers"},
        result={"Users": [], "IsTruncated": False},
        request_id="req-1",
    ).to_json()
    assert event["eventSource"] == "iam.amazonaws.com"
    assert event["eventName"] == "ListUsers"
    assert event["readOnly"] is True
    assert event["awsRegion"] == "eu-west-1"
    assert event["eventType"] == "AwsApiCall"
    assert event["recipientAccountId"] == "111122223333"
    assert "errorCode" not in event
    identity = event["userIdentity"]
    assert isinstance(identity, dict)
    assert identity["type"] == "AssumedRole"
    assert identity["accessKeyId"] == "ASIAEXAMPLE"
    assert identity["sessionContext"] == {
        "sessionIssuer": {
            "type": "Role",
            "principalId": "AROAEXAMPLE",
            "arn": "arn:aws:iam::111122223333:role/r",
            "accountId": "111122223333",
            "userName": "r",
        },
        "attributes": {"creationDate": "2024-05-01T12:00:00Z", "mfaAuthenticated": "true"},
    }


def test_failed_unauthenticated_call_records_error_and_no_response() -> None:
    event = api_event(
        now=NOW,
        service="",
        action="CreateUser",
        region="",
        source_ip="10.0.0.1",
        user_agent="",
        principal=None,
        params={"Action": "CreateUser", "UserName": "bob"},
        result={"User": {"UserName": "bob"}},
        request_id="req-2",
        error_code="InvalidClientTokenId",
        error_message="The security token included in the request is invalid.",
    ).to_json()
    assert event["errorCode"] == "InvalidClientTokenId"
    assert event["responseElements"] is None
    assert event["userIdentity"] == {"type": "Unknown"}
    assert event["readOnly"] is False
    assert event["awsRegion"] == "us-east-1"


def test_web_identity_event_records_token_digest_only() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig"
    event = api_event(
        now=NOW,
        service="sts",
        action="AssumeRoleWithWebIdentity",
        region="",
        source_ip="",
        user_agent="",
        principal=None,
        params={"WebIdentityToken": jwt, "RoleArn": "arn:aws:iam::111122223333:role/w"},
        result={"Provider": "https://idp.example", "SubjectFromWebIdentityToken": "x"},
        request_id="r",
    ).to_json()
    text = json.dumps(event)
    assert jwt not in text
    assert event["additionalEventData"] == {"webIdentityTokenSha256": token_digest(jwt)}
    assert event["userIdentity"] == {
        "type": "WebIdentityUser",
        "identityProvider": "https://idp.example",
    }
    assert event["recipientAccountId"] == "111122223333"


def test_delivery_event_names_channel_binding_role_and_key() -> None:
    event = delivery_event(
        now=NOW,
        channel="container",
        binding="web",
        role_arn="arn:aws:iam::111122223333:role/app",
        source_ip="127.0.0.1",
        user_agent="",
        access_key_id="ASIAEXAMPLE",
        expiration="2024-05-01T13:00:00Z",
    ).to_json()
    assert event["eventSource"] == "container"
    assert event["eventType"] == "AwsServiceEvent"
    assert event["serviceEventDetails"] == {
        "channel": "container",
        "roleArn": "arn:aws:iam::111122223333:role/app",
        "mapping": "web",
        "accessKeyId": "ASIAEXAMPLE",
    }


def test_rotation_keeps_backups_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = RotatingFile(path, max_bytes=100, backups=2)
    line = "x" * 59 + "\n"  # 60 bytes: one line per file
    writer.write_lines([f"{i}" + line[1:] for i in range(5)])
    writer.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    files = audit_files(path, 2)
    assert [p.name for p in files] == ["audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
    assert [p.read_text()[0] for p in files] == ["2", "3", "4"]
    assert not (tmp_path / "audit.jsonl.3").exists()
    assert all(p.stat().st_size <= 100 for p in files)


def test_rotation_without_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = RotatingFile(path, max_bytes=10, backups=0)
    writer.write_lines(["aaaaaaaa\n", "bbbbbbbb\n"])
    writer.close()
    assert path.read_text() == "bbbbbbbb\n"
    assert audit_files(path, 0) == [path]


def _event(i: int) -> AuditEvent:
    return delivery_event(
        now=NOW, channel="imds", binding=f"i-{i}", role_arn="r", source_ip="", user_agent=""
    )


async def test_spool_never_blocks_and_counts_drops(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "a.jsonl", queue_size=3)
    # The writer is not running: emit must still return at once and drop what does not fit.
    for i in range(10):
        sink.emit(_event(i))
    assert sink.pending == 3
    assert sink.dropped == 7
    await sink.close()
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(x)["serviceEventDetails"]["instanceId"] for x in lines] == [
        "i-0",
        "i-1",
        "i-2",
    ]


class _StuckStream(io.StringIO):
    """A stream whose writes wait until released (a sink that is down)."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


async def test_emit_does_not_wait_for_a_stuck_writer() -> None:
    stream = _StuckStream()
    sink = AuditSink(None, stream=stream, queue_size=5)
    sink.start()
    sink.emit(_event(0))
    await asyncio.sleep(0.05)  # the writer takes it and sticks in the stream
    for i in range(1, 20):
        sink.emit(_event(i))
    assert sink.dropped == 14
    stream.release.set()
    await sink.close()
    assert sink.written == 6
    assert stream.getvalue().count("\n") == 6


async def test_stdout_and_file_both_receive_events(tmp_path: Path) -> None:
    stream = io.StringIO()
    sink = AuditSink(tmp_path / "a.jsonl", stream=stream)
    sink.start()
    sink.emit(_event(1))
    await sink.close()
    assert stream.getvalue() == (tmp_path / "a.jsonl").read_text()
    assert list(read_events([tmp_path / "a.jsonl"]))[0]["eventSource"] == "imds"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"eventName": "GetUser"}, True),
        ({"eventName": "ListUsers"}, False),
        ({"userIdentity.type": "IAMUser"}, True),
        ({"readOnly": "true", "eventName": "GetUser"}, True),
        ({"errorCode": "AccessDenied"}, False),
    ],
)
def test_filters(filters: dict[str, str], expected: bool) -> None:
    event: dict[str, JsonValue] = {
        "eventName": "GetUser",
        "readOnly": True,
        "userIdentity": {"type": "IAMUser"},
    }
    assert event_matches(event, filters) is expected
