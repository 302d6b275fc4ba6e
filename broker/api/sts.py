"""API: the STS actions of the query protocol (parse -> service call -> render).

Handlers take ``(services, caller, params)``: ``services`` is the listener's dependency
bundle (``broker.api.server.ApiDeps``: ``sts``, ``iam``, ``token_keys`` ...), typed here by the
small :class:`StsServices` protocol to keep the import graph one-way.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from broker.api.query import Node, Params
from broker.clock import iso8601
from broker.core.arn import parse_arn
from broker.core.model import Principal
from broker.errors import AccessDeniedError, UnavailableError, ValidationError
from broker.service.authz import Authorizer
from broker.service.sessions import SessionService, parse_time
from broker.service.sts import AssumeRoleInput, IssuedSession, StsService
from broker.service.txn import Doc

ROLE_SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
ROLE_SESSION_NAME_TEXT = r"[\w+=,.@-]*"
EXTERNAL_ID = re.compile(r"[\w+=,.@:\/-]*", re.ASCII)
EXTERNAL_ID_TEXT = r"[\w+=,.@:\/-]*"
SERIAL = re.compile(r"[\w+=/:,.@-]*", re.ASCII)
SERIAL_TEXT = r"[\w+=/:,.@-]*"
TOKEN_CODE = re.compile(r"[\d]*", re.ASCII)
POLICY = re.compile(r"[\u0009\u000A\u000D\u0020-\u00FF]+")
POLICY_TEXT = r"[\u0009\u000A\u000D\u0020-\u00FF]+"
FEDERATED_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
ACCESS_KEY_ID = re.compile(r"[\w]*", re.ASCII)


class StsServices(Protocol):
    """What STS handlers need from the listener."""

    @property
    def sts(self) -> StsService | None: ...


StsHandler = Callable[[StsServices, Principal, Params], Awaitable[Node]]

STS_ACTIONS: dict[str, StsHandler] = {}
UNSIGNED_STS_ACTIONS: set[str] = set()
"""Actions served without a signature (their caller is ``ANONYMOUS``): web identity, SAML."""


def sts_action(name: str) -> Callable[[StsHandler], StsHandler]:
    """Register a handler for STS action ``name``."""

    def register(fn: StsHandler) -> StsHandler:
        STS_ACTIONS[name] = fn
        return fn

    return register


def _service(services: StsServices) -> StsService:
    if services.sts is None:  # pragma: no cover - always wired by broker.app
        raise UnavailableError()
    return services.sts


def _credentials(issued: IssuedSession) -> dict[str, Node]:
    c = issued.claims
    return {
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "SessionToken": issued.token,
        "Expiration": iso8601_epoch(c.expires_at),
    }


def iso8601_epoch(epoch: int) -> str:
    """Render epoch seconds as AWS's ``YYYY-MM-DDTHH:MM:SSZ``."""
    return iso8601(datetime.fromtimestamp(epoch, UTC))


def _duration(p: Params, low: int, high: int) -> int | None:
    return p.integer("DurationSeconds", min_value=low, max_value=high)


def _policy(p: Params) -> str | None:
    return p.string("Policy", min_len=1, max_len=2048, pattern=POLICY, pattern_text=POLICY_TEXT)


def _policy_arns(p: Params) -> tuple[str, ...]:
    items = p.struct_list("PolicyArns", ("arn",)) or []
    out: list[str] = []
    for i, item in enumerate(items, start=1):
        arn = p.string(f"PolicyArns.member.{i}.arn", min_len=20, max_len=2048, value=item["arn"])
        if arn is not None:
            out.append(arn)
    return tuple(out)


def _tags(p: Params) -> tuple[tuple[str, str], ...]:
    return tuple(p.tags())


def _mfa(p: Params) -> tuple[str | None, str | None]:
    serial = p.string(
        "SerialNumber", min_len=9, max_len=256, pattern=SERIAL, pattern_text=SERIAL_TEXT
    )
    code = p.string("TokenCode", min_len=6, max_len=6, pattern=TOKEN_CODE, pattern_text=r"[\d]*")
    return serial, code


@sts_action("GetCallerIdentity")
async def get_caller_identity(services: StsServices, caller: Principal, p: Params) -> Node:
    """GetCallerIdentity: needs no permission; answers who signed the request."""
    p.check()
    return {"UserId": caller.user_id, "Account": caller.account_id, "Arn": caller.arn}


@sts_action("AssumeRole")
async def assume_role(services: StsServices, caller: Principal, p: Params) -> Node:
    """AssumeRole."""
    role_arn = p.req("RoleArn", min_len=20, max_len=2048)
    session_name = p.req(
        "RoleSessionName", min_len=2, max_len=64, pattern=ROLE_SESSION_NAME,
        pattern_text=ROLE_SESSION_NAME_TEXT,
    )  # fmt: skip
    duration = _duration(p, 900, 43200)
    external_id = p.string(
        "ExternalId", min_len=2, max_len=1224, pattern=EXTERNAL_ID, pattern_text=EXTERNAL_ID_TEXT
    )
    policy = _policy(p)
    policy_arns = _policy_arns(p)
    tags = _tags(p)
    transitive = tuple(p.members("TransitiveTagKeys") or ())
    for i, key in enumerate(transitive, start=1):
        p.string(f"TransitiveTagKeys.member.{i}", min_len=1, max_len=128, value=key)
    source_identity = p.string(
        "SourceIdentity", min_len=2, max_len=64, pattern=ROLE_SESSION_NAME,
        pattern_text=ROLE_SESSION_NAME_TEXT,
    )  # fmt: skip
    serial, code = _mfa(p)
    p.check()
    issued = await _service(services).assume_role(
        caller,
        AssumeRoleInput(
            role_arn=role_arn, session_name=session_name, duration=duration,
            external_id=external_id, policy=policy, policy_arns=policy_arns, tags=tags,
            transitive_tag_keys=transitive, source_identity=source_identity,
            serial_number=serial, token_code=code,
        ),
    )  # fmt: skip
    out: dict[str, Node] = {
        "Credentials": _credentials(issued),
        "AssumedRoleUser": {
            "AssumedRoleId": issued.claims.principal_id,
            "Arn": issued.claims.principal_arn,
        },
        "PackedPolicySize": issued.packed_percent,
        "SourceIdentity": issued.claims.source_identity,
    }
    return out


@sts_action("GetSessionToken")
async def get_session_token(services: StsServices, caller: Principal, p: Params) -> Node:
    """GetSessionToken."""
    duration = _duration(p, 900, 129600)
    serial, code = _mfa(p)
    p.check()
    issued = await _service(services).get_session_token(caller, duration, serial, code)
    return {"Credentials": _credentials(issued)}


@sts_action("GetFederationToken")
async def get_federation_token(services: StsServices, caller: Principal, p: Params) -> Node:
    """GetFederationToken."""
    name = p.req("Name", min_len=2, max_len=32, pattern=FEDERATED_NAME, pattern_text=r"[\w+=,.@-]*")
    policy = _policy(p)
    policy_arns = _policy_arns(p)
    duration = _duration(p, 900, 129600)
    tags = _tags(p)
    p.check()
    issued = await _service(services).get_federation_token(
        caller, name, policy, policy_arns, duration, tags
    )
    return {
        "Credentials": _credentials(issued),
        "FederatedUser": {
            "FederatedUserId": issued.claims.principal_id,
            "Arn": issued.claims.principal_arn,
        },
        "PackedPolicySize": issued.packed_percent,
    }


@sts_action("GetAccessKeyInfo")
async def get_access_key_info(services: StsServices, caller: Principal, p: Params) -> Node:
    """GetAccessKeyInfo: the owning account, for any well-formed key id."""
    akid = p.req(
        "AccessKeyId", min_len=16, max_len=128, pattern=ACCESS_KEY_ID, pattern_text=r"[\w]*"
    )
    p.check()
    return {"Account": await _service(services).get_access_key_info(caller, akid)}


def _session_node(doc: Doc) -> dict[str, Node]:
    return {
        "SessionId": doc["sid"],
        "AccessKeyId": doc["akid"],
        "Arn": doc["arn"],
        "RoleArn": doc["issuer"] if doc["kind"] == "assumed-role" else None,
        "IssuerArn": doc["issuer"],
        "CallerArn": doc["caller"],
        "SourceIp": doc.get("source_ip"),
        "SourceIdentity": doc.get("source_identity"),
        "IssuedAt": iso8601_epoch(int(doc["issued_at"])),
        "Expiration": iso8601_epoch(int(doc["expires_at"])),
        "Revoked": bool(doc.get("revoked")),
    }


def _sessions(services: StsServices) -> SessionService:
    sessions = getattr(services, "sessions", None)
    if not isinstance(sessions, SessionService):  # pragma: no cover - wired by broker.app
        raise UnavailableError()
    return sessions


@sts_action("ListSessions")
async def list_sessions(services: StsServices, caller: Principal, p: Params) -> Node:
    """ListSessions (broker extension): live sessions of the caller's account.

    Needs ``sts:ListSessions`` on the role ARN given (``RoleArn``) or on ``*``.
    """
    role_arn = p.string("RoleArn", min_len=20, max_len=2048)
    p.check()
    await _authorizer(services).authorize(caller, "sts:ListSessions", role_arn or "*")
    docs = await _sessions(services).list_sessions(caller.account_id, role_arn)
    return {"Sessions": [_session_node(d) for d in docs]}


@sts_action("RevokeSessions")
async def revoke_sessions(services: StsServices, caller: Principal, p: Params) -> Node:
    """RevokeSessions (broker extension): revoke one session, or a role's older sessions.

    ``SessionId`` revokes that session; ``RoleArn`` (with optional ``IssuedBefore``, ISO 8601,
    default now) writes the role's ``AWSRevokeOlderSessions`` policy. Needs
    ``sts:RevokeSessions`` on the role ARN (or on ``*`` for a session id).
    """
    session_id = p.string("SessionId", min_len=32, max_len=32)
    role_arn = p.string("RoleArn", min_len=20, max_len=2048)
    before = p.string("IssuedBefore", min_len=1, max_len=64)
    p.check()
    if (session_id is None) == (role_arn is None):
        raise ValidationError("Specify exactly one of SessionId and RoleArn.")
    sessions = _sessions(services)
    if session_id is not None:
        await _authorizer(services).authorize(caller, "sts:RevokeSessions", "*")
        doc = await sessions.revoke_session(caller.account_id, session_id)
        return {"Revoked": [_session_node({**doc, "revoked": True})]}
    assert role_arn is not None
    await _authorizer(services).authorize(caller, "sts:RevokeSessions", role_arn)
    parsed = parse_arn(role_arn)
    if parsed is None or parsed.account != caller.account_id:
        raise AccessDeniedError(
            f"User: {caller.arn} is not authorized to perform: sts:RevokeSessions "
            f"on resource: {role_arn}"
        )
    cutoff = await sessions.revoke_role_sessions(
        role_arn, parse_time(before) if before is not None else None
    )
    return {"RoleArn": role_arn, "IssuedBefore": cutoff}


def _authorizer(services: StsServices) -> Authorizer:
    sts = _service(services)
    return sts.authorizer


@sts_action("DecodeAuthorizationMessage")
async def decode_authorization_message(services: StsServices, caller: Principal, p: Params) -> Node:
    """DecodeAuthorizationMessage: open an encoded AccessDenied detail of the caller's account."""
    encoded = p.req("EncodedMessage", min_len=1, max_len=10240)
    p.check()
    authz = _authorizer(services)
    await authz.authorize(caller, "sts:DecodeAuthorizationMessage", "*")
    return {"DecodedMessage": authz.decode_message(caller.account_id, encoded)}
