"""Audit: CloudTrail-shaped events (spec H1-H4), allow-list redaction and the JSON-lines sink.

Every API call (failures and unauthenticated calls included) and every credential handed out by
the IMDS and container listeners becomes one :class:`AuditEvent`, written as one JSON line.
Parameters and response elements pass through an allow-list: members whose names are not known
to be safe keep their name but their value becomes ``HIDDEN_DUE_TO_SECURITY_REASONS`` (as AWS
writes it), and the secret members of credentials are left out entirely (spec H2).

:class:`AuditSink` never blocks the response path: ``emit`` only puts the event on a bounded
queue (dropping it, and counting the drop, when full); a background task writes batches to the
file (mode 0600, size-based rotation) and/or a stream, in a worker thread.

This module imports nothing from ``broker``; callers pass plain values or objects that have the
attributes of :class:`PrincipalLike`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TextIO

import orjson

from broker.core import ids

EVENT_VERSION = "1.08"
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
DEFAULT_REGION = "us-east-1"
DEFAULT_QUEUE_SIZE = 10_000
"""Events the spool holds before new ones are dropped (and counted)."""
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 5
AUDIT_FILE = "audit.jsonl"
CLOSE_TIMEOUT_SECONDS = 10.0
"""How long shutdown waits for the spool to be written."""
MAX_BATCH = 512
"""Events written by one worker-thread call."""

EVENT_SOURCES = {"iam": "iam.amazonaws.com", "sts": "sts.amazonaws.com"}
API_CALL = "AwsApiCall"
SERVICE_EVENT = "AwsServiceEvent"

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]

# Member names whose values are safe to record (requests and responses alike). Everything
# else (passwords, secret keys, tokens, policy documents, MFA codes, seeds) is hidden.
SAFE_MEMBERS = frozenset(
    name.lower()
    for name in (
        "Account",
        "AccountAlias",
        "AccessKey",
        "AccessKeyId",
        "AccessKeyLastUsed",
        "AccessKeyMetadata",
        "ActionNames",
        "Arn",
        "AssignmentStatus",
        "AssumedRoleId",
        "AssumedRoleUser",
        "AttachedPolicies",
        "AttachmentCount",
        "Audience",
        "ClientIDList",
        "CreateDate",
        "Credentials",
        "DefaultVersionId",
        "Description",
        "DurationSeconds",
        "EnableDate",
        "EntityFilter",
        "Expiration",
        "FederatedUser",
        "FederatedUserId",
        "Group",
        "GroupId",
        "GroupName",
        "Groups",
        "InstanceProfile",
        "InstanceProfileId",
        "InstanceProfileName",
        "InstanceProfiles",
        "IsAttachable",
        "IsDefaultVersion",
        "IsTruncated",
        "Key",
        "LastUsedDate",
        "Marker",
        "MaxItems",
        "MaxSessionDuration",
        "Name",
        "NewGroupName",
        "NewPath",
        "NewUserName",
        "OnlyAttached",
        "OpenIDConnectProviderArn",
        "OpenIDConnectProviderList",
        "PackedPolicySize",
        "PasswordLastUsed",
        "PasswordResetRequired",
        "Path",
        "PathPrefix",
        "PermissionsBoundary",
        "PermissionsBoundaryArn",
        "PermissionsBoundaryType",
        "PolicyArn",
        "PolicyArns",
        "PolicyGroups",
        "PolicyId",
        "PolicyName",
        "PolicyNames",
        "PolicyRoles",
        "PolicySourceArn",
        "PolicyUsageFilter",
        "PolicyUsers",
        "Policies",
        "PrincipalArn",
        "Provider",
        "ProviderId",
        "Region",
        "ResourceArns",
        "Role",
        "RoleArn",
        "RoleId",
        "RoleLastUsed",
        "RoleName",
        "RoleSessionName",
        "Roles",
        "Scope",
        "SerialNumber",
        "ServiceName",
        "SetAsDefault",
        "SourceIdentity",
        "Status",
        "SubjectFromWebIdentityToken",
        "Tags",
        "TagKeys",
        "ThumbprintList",
        "TransitiveTagKeys",
        "UpdateDate",
        "Url",
        "User",
        "UserId",
        "UserName",
        "Users",
        "Value",
        "VersionId",
        "VirtualMFADevice",
        "VirtualMFADeviceName",
        "VirtualMFADevices",
        "arn",
        "Type",
        "Code",
    )
)
# Allowed only when the value is a structure or list (``Policy`` in CreatePolicy's answer is
# metadata; ``Policy`` in AssumeRole's request is a policy text).
STRUCTURE_MEMBERS = frozenset({"policy", "policyversion", "versions", "evaluationresults"})
# Left out altogether rather than hidden (spec H2: credentials keep accessKeyId and expiration).
DROPPED_MEMBERS = frozenset({"secretaccesskey", "sessiontoken", "token"})
# Request parameters that name the call or sign it: recorded elsewhere or never.
_SKIPPED_PARAMS = frozenset({"action", "version"})
# Segments of flattened query names that carry no meaning of their own.
_CONTAINER_SEGMENTS = frozenset({"member", "entry"})


def _camel(name: str) -> str:
    """CloudTrail's spelling of a member name: first letter lower-case."""
    return name[:1].lower() + name[1:]


def _safe(name: str) -> bool:
    return name.lower() in SAFE_MEMBERS


def redact_parameters(params: Mapping[str, str]) -> dict[str, JsonValue]:
    """Return ``requestParameters`` for query-protocol ``params`` (flattened ``A.member.1.B``).

    A parameter is kept only when every named segment of it is on the allow-list; otherwise its
    value is replaced by ``HIDDEN_DUE_TO_SECURITY_REASONS``. ``Action``, ``Version`` and the
    SigV4 query parameters (``X-Amz-*``) are left out.

    .. warning:: Never record a parameter without passing it through this function.
    """
    out: dict[str, JsonValue] = {}
    for name, value in params.items():
        if name.lower() in _SKIPPED_PARAMS or name.lower().startswith("x-amz-"):
            continue
        segments = [
            s for s in name.split(".") if s and not s.isdigit() and s not in _CONTAINER_SEGMENTS
        ]
        key = ".".join(_camel(s) for s in name.split("."))
        if segments and all(_safe(s) for s in segments):
            out[key] = value
        else:
            out[key] = HIDDEN
    return out


def redact_response(node: object) -> JsonValue:
    """Return ``responseElements`` for a rendered result tree (mappings, lists, scalars).

    Mapping members not on the allow-list are hidden, secret credential members are dropped,
    and values of unknown types are hidden.
    """
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, datetime):
        return _iso(node)
    if isinstance(node, Mapping):
        out: dict[str, JsonValue] = {}
        for key, child in node.items():
            name = str(key)
            lowered = name.lower()
            if lowered in DROPPED_MEMBERS:
                continue
            structured = isinstance(child, Mapping) or (
                isinstance(child, Sequence) and not isinstance(child, str)
            )
            if _safe(name) or (lowered in STRUCTURE_MEMBERS and structured):
                out[_camel(name)] = redact_response(child)
            else:
                out[_camel(name)] = HIDDEN
        return out
    if isinstance(node, Sequence):
        return [redact_response(item) for item in node]
    return HIDDEN


def _iso(moment: datetime) -> str:
    m = moment.astimezone(UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def token_digest(token: str) -> str:
    """SHA-256 (hex) of a web identity token: traces a session to its token (spec H4)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_read_only(action: str) -> bool:
    """Whether CloudTrail marks ``action`` read-only."""
    return action.startswith(("Get", "List", "Describe", "Simulate", "AssumeRole"))


class SessionLike(Protocol):
    """The session-token claims the audit record reads (see ``SessionClaims``)."""

    @property
    def account_id(self) -> str: ...
    @property
    def issuer_arn(self) -> str: ...
    @property
    def issuer_name(self) -> str: ...
    @property
    def issued_at(self) -> int: ...
    @property
    def mfa_authenticated(self) -> bool: ...


class KindLike(Protocol):
    """An enum member with a string value (``PrincipalKind``)."""

    @property
    def value(self) -> str: ...


class PrincipalLike(Protocol):
    """The authenticated caller as the audit record reads it (see ``Principal``)."""

    @property
    def kind(self) -> KindLike: ...
    @property
    def account_id(self) -> str: ...
    @property
    def arn(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def access_key_id(self) -> str: ...
    @property
    def session(self) -> SessionLike | None: ...


_IDENTITY_TYPES = {
    "root": "Root",
    "user": "IAMUser",
    "assumed-role": "AssumedRole",
    "federated-user": "FederatedUser",
}


def _issuer_type(arn: str) -> str:
    if ":role/" in arn:
        return "Role"
    if arn.endswith(":root"):
        return "Root"
    return "IAMUser"


def user_identity(
    principal: PrincipalLike | None, *, web_identity: bool = False
) -> dict[str, JsonValue]:
    """The ``userIdentity`` block of a caller (``None``: authentication did not succeed)."""
    kind = principal.kind.value if principal is not None else "unknown"
    if principal is None or kind not in _IDENTITY_TYPES:
        return {"type": "WebIdentityUser" if web_identity else "Unknown"}
    identity: dict[str, JsonValue] = {
        "type": _IDENTITY_TYPES[kind],
        "principalId": principal.user_id,
        "arn": principal.arn,
        "accountId": principal.account_id,
        "accessKeyId": principal.access_key_id,
    }
    if kind == "user":
        identity["userName"] = principal.name
    session = principal.session
    if session is not None:
        identity["sessionContext"] = {
            "sessionIssuer": {
                "type": _issuer_type(session.issuer_arn),
                "principalId": principal.user_id.split(":", 1)[0],
                "arn": session.issuer_arn,
                "accountId": session.account_id,
                "userName": session.issuer_name,
            },
            "attributes": {
                "creationDate": _iso(datetime.fromtimestamp(session.issued_at, UTC)),
                "mfaAuthenticated": "true" if session.mfa_authenticated else "false",
            },
        }
    return identity


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One CloudTrail-shaped record. Build it with :func:`api_event` or :func:`delivery_event`."""

    event_time: datetime
    event_source: str
    event_name: str
    aws_region: str
    source_ip: str
    user_agent: str
    user_identity: dict[str, JsonValue]
    request_id: str
    event_id: str
    read_only: bool
    recipient_account_id: str
    event_type: str = API_CALL
    request_parameters: dict[str, JsonValue] | None = None
    response_elements: JsonValue = None
    error_code: str | None = None
    error_message: str | None = None
    additional_data: dict[str, JsonValue] = field(default_factory=dict)
    service_details: dict[str, JsonValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, JsonValue]:
        """The event as CloudTrail names its fields."""
        out: dict[str, JsonValue] = {
            "eventVersion": EVENT_VERSION,
            "userIdentity": self.user_identity,
            "eventTime": _iso(self.event_time),
            "eventSource": self.event_source,
            "eventName": self.event_name,
            "awsRegion": self.aws_region or DEFAULT_REGION,
            "sourceIPAddress": self.source_ip,
            "userAgent": self.user_agent,
        }
        if self.error_code is not None:
            out["errorCode"] = self.error_code
            out["errorMessage"] = self.error_message or ""
        out["requestParameters"] = self.request_parameters
        out["responseElements"] = self.response_elements
        if self.additional_data:
            out["additionalEventData"] = self.additional_data
        if self.service_details:
            out["serviceEventDetails"] = self.service_details
        out["requestID"] = self.request_id
        out["eventID"] = self.event_id
        out["readOnly"] = self.read_only
        out["eventType"] = self.event_type
        out["recipientAccountId"] = self.recipient_account_id
        return out

    def to_line(self) -> str:
        """One JSON line (with its newline)."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_APPEND_NEWLINE).decode("utf-8")


def api_event(
    *,
    now: datetime,
    service: str,
    action: str,
    region: str,
    source_ip: str,
    user_agent: str,
    principal: PrincipalLike | None,
    params: Mapping[str, str],
    result: object,
    request_id: str,
    error_code: str | None = None,
    error_message: str | None = None,
    event_id: str | None = None,
) -> AuditEvent:
    """The event of one query-protocol API call (``service`` ``iam``/``sts``, or ``""``)."""
    web_identity = action == "AssumeRoleWithWebIdentity"
    extra: dict[str, JsonValue] = {}
    token = params.get("WebIdentityToken")
    if web_identity and token:
        extra["webIdentityTokenSha256"] = token_digest(token)
    identity = user_identity(principal, web_identity=web_identity)
    response = redact_response(result) if error_code is None else None
    if web_identity and isinstance(response, dict):
        provider = response.get("provider")
        if isinstance(provider, str):
            identity["identityProvider"] = provider
    recipient = principal.account_id if principal is not None else ""
    if not recipient:
        recipient = _account_of(params.get("RoleArn", ""))
    return AuditEvent(
        event_time=now,
        event_source=EVENT_SOURCES.get(service, EVENT_SOURCES["iam"]),
        event_name=action,
        aws_region=region,
        source_ip=source_ip,
        user_agent=user_agent,
        user_identity=identity,
        request_id=request_id,
        event_id=event_id or ids.request_id(),
        read_only=is_read_only(action),
        recipient_account_id=recipient,
        request_parameters=redact_parameters(params),
        response_elements=response,
        error_code=error_code,
        error_message=error_message,
        additional_data=extra,
    )


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def delivery_event(
    *,
    now: datetime,
    channel: str,
    binding: str,
    role_arn: str,
    source_ip: str,
    user_agent: str,
    access_key_id: str | None = None,
    expiration: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    region: str = "",
) -> AuditEvent:
    """The event of one credential hand-out (``channel`` ``imds`` or ``container``).

    ``binding`` is the instance id (IMDS) or the mapping name (container). The secret key and
    session token are never arguments, so they cannot be recorded.
    """
    details: dict[str, JsonValue] = {"channel": channel, "roleArn": role_arn}
    details["instanceId" if channel == "imds" else "mapping"] = binding
    response: JsonValue = None
    if access_key_id is not None:
        details["accessKeyId"] = access_key_id
        response = {"credentials": {"accessKeyId": access_key_id, "expiration": expiration}}
    return AuditEvent(
        event_time=now,
        event_source=channel,
        event_name="GetInstanceCredentials" if channel == "imds" else "GetContainerCredentials",
        aws_region=region,
        source_ip=source_ip,
        user_agent=user_agent,
        user_identity={"type": "AWSService", "invokedBy": channel},
        request_id=ids.request_id(),
        event_id=ids.request_id(),
        read_only=True,
        recipient_account_id=_account_of(role_arn),
        event_type=SERVICE_EVENT,
        response_elements=response,
        error_code=error_code,
        error_message=error_message,
        service_details=details,
    )


class RotatingFile:
    """Appends lines to ``path`` (mode 0600), rotating to ``path.1`` .. ``path.N`` by size.

    Synchronous; :class:`AuditSink` calls it from a worker thread. ``backups = 0`` truncates.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max(1, max_bytes)
        self.backups = max(0, backups)
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with contextlib.suppress(OSError):
                os.fchmod(self._fd, 0o600)
        return self._fd

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _rotate(self) -> None:
        self.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        self._backup(self.backups).unlink(missing_ok=True)
        for index in range(self.backups - 1, 0, -1):
            older = self._backup(index)
            if older.exists():
                older.replace(self._backup(index + 1))
        if self.path.exists():
            self.path.replace(self._backup(1))

    def write_lines(self, lines: Iterable[str]) -> None:
        """Append ``lines``; rotate first whenever the next line would pass ``max_bytes``."""
        fd = self._open()
        size = os.fstat(fd).st_size  # once per batch: other processes may append too
        chunk: list[bytes] = []
        pending = 0
        for line in lines:
            data = line.encode("utf-8")
            if size + pending > 0 and size + pending + len(data) > self.max_bytes:
                if chunk:
                    _write_all(fd, b"".join(chunk))
                    size += pending
                    chunk, pending = [], 0
                self._rotate()
                fd = self._open()
                size = os.fstat(fd).st_size
            chunk.append(data)
            pending += len(data)
        if chunk:
            _write_all(fd, b"".join(chunk))

    def close(self) -> None:
        """Close the file (it is reopened on the next write)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def audit_files(path: Path, backups: int) -> list[Path]:
    """The audit file and its rotated backups that exist, oldest first."""
    found = [path.with_name(f"{path.name}.{i}") for i in range(backups, 0, -1)]
    found.append(path)
    return [p for p in found if p.exists()]


def read_events(paths: Sequence[Path]) -> Iterator[dict[str, JsonValue]]:
    """Parse audit lines from ``paths`` in order, skipping lines that are not JSON objects."""
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(doc, dict):
                    yield doc


def event_matches(event: Mapping[str, JsonValue], filters: Mapping[str, str]) -> bool:
    """Whether ``event`` has every ``KEY=VALUE`` of ``filters`` (dotted keys reach nesting)."""
    for key, wanted in filters.items():
        node: JsonValue = dict(event)
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return False
        text = str(node).lower() if isinstance(node, bool) else str(node)
        if text != wanted:
            return False
    return True


class AuditSink:
    """A bounded, non-blocking spool of audit events and the task that writes them.

    ``emit`` never waits: when the queue is full the event is dropped and ``dropped`` grows.
    ``start`` runs the writer on the running loop; ``close`` writes what is queued and stops.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        stream: TextIO | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self._file = RotatingFile(path, max_bytes, backups) if path is not None else None
        self._stream = stream
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(maxsize=max(1, queue_size))
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0
        self.failures = 0

    def emit(self, event: AuditEvent) -> None:
        """Queue ``event`` for writing; drop it (counted) when the spool is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    @property
    def pending(self) -> int:
        """Events queued and not yet written."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _drain(self, first: AuditEvent) -> list[str]:
        lines = [first.to_line()]
        while len(lines) < MAX_BATCH:
            try:
                lines.append(self._queue.get_nowait().to_line())
            except asyncio.QueueEmpty:
                break
        return lines

    def _write(self, lines: list[str]) -> None:
        if self._file is not None:
            self._file.write_lines(lines)
        if self._stream is not None:
            self._stream.write("".join(lines))
            self._stream.flush()

    async def _write_batch(self, lines: list[str]) -> None:
        try:
            await asyncio.to_thread(self._write, lines)
            self.written += len(lines)
        except Exception:  # a full disk or closed stream must not stop auditing later events
            self.failures += 1
            self.dropped += len(lines)
        finally:
            for _ in lines:
                self._queue.task_done()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            await self._write_batch(self._drain(first))

    async def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write every queued event (waiting up to ``timeout``), stop the writer, close the file."""
        if self._task is None:
            self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._file is not None:
            self._file.close()


def default_path(path: str, data_dir: Path) -> Path:
    """``[audit] path``, or ``audit.jsonl`` in the data directory when it is empty."""
    return Path(path) if path else data_dir / AUDIT_FILE
