"""API: outbound identity federation: GetWebIdentityToken, the IAM switch, OIDC discovery.

Importing this module registers ``GetWebIdentityToken`` into ``broker.api.sts.STS_ACTIONS`` and
``EnableOutboundWebIdentityFederation``, ``DisableOutboundWebIdentityFederation`` and
``GetOutboundWebIdentityFederationInfo`` into ``broker.api.iam.IAM_ACTIONS``.
:func:`add_wellknown_routes` adds the issuer's public endpoints to the API listener:

* ``GET /.well-known/openid-configuration``: OpenID Connect discovery metadata;
* ``GET /.well-known/jwks.json``: the JWKS of every signing key that still verifies.

The issuer URL is the broker's own base URL as the request reached it: the request's scheme
and ``Host`` (lower-cased, default port dropped), with no path. Discovery answers with the
issuer of the URL it was fetched from, and a JWT's ``iss`` is the issuer of the signed request
that asked for it, so a relying party that reaches the broker by the URL its clients use sees
the same issuer in both. (A SigV4 signature covers ``Host``, so the issuer in a JWT is what
the caller signed.) Behind a proxy, the proxy must pass the original ``Host`` through.

The handlers need the request's issuer, which the query pipeline does not hand them: a small
middleware puts it, with the identity-token service, in a context variable for the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from broker.api.iam import action
from broker.api.query import Node, Params
from broker.api.sts import STS_ACTIONS, StsServices
from broker.core.keyring import SIGNING_ALGORITHMS
from broker.core.model import Principal
from broker.errors import BrokerError, InternalFailureError, ValidationError
from broker.service.authz import REQUEST_FACTS
from broker.service.iam import IamService
from broker.service.identity_tokens import (
    CLAIMS_NAMESPACE,
    MAX_AUDIENCE_LENGTH,
    MAX_AUDIENCES,
    MAX_DURATION_SECONDS,
    MAX_REQUEST_TAGS,
    MIN_DURATION_SECONDS,
    IdentityTokenService,
    WebIdentityTokenInput,
)
from broker.service.keys import KeyService
from broker.store.base import StoreError

if TYPE_CHECKING:
    from broker.api.server import ApiDeps

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"

JWKS_MAX_AGE_SECONDS = 60
"""How long relying parties may cache the JWKS and discovery documents (``Cache-Control``).
Short, so a retired key stops being trusted soon after it leaves the JWKS."""

SCOPE = re.compile(r"[\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+( [\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+)*")
SCOPE_TEXT = r"[\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+( [\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+)*"
SUBJECT_MODES = ("AWSIdentity", "OriginIdentity")

# host, or host:port; a DNS name or IPv4 address, or a bracketed IPv6 address.
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9.-]{0,252})|\[[0-9a-f:.]{2,45}\])(?::[0-9]{1,5})?")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


@dataclass(frozen=True, slots=True)
class OutboundContext:
    """What the outbound handlers need from the request being served."""

    service: IdentityTokenService
    issuer: str | None
    """The issuer URL of this request, ``None`` when its ``Host`` cannot form one."""


OUTBOUND: ContextVar[OutboundContext | None] = ContextVar("outbound", default=None)
"""Set by the listener's middleware for every request (see :func:`add_wellknown_routes`)."""


def issuer_of(request: web.BaseRequest) -> str | None:
    """Return the issuer URL for ``request`` (``scheme://host[:port]``), or ``None``.

    ``None`` when the ``Host`` is not a plain host name, IPv4 or bracketed IPv6 address with
    an optional port (anything else could smuggle a path or user info into the issuer).
    """
    scheme = request.scheme.lower()
    host = (request.host or "").strip().lower()
    if scheme not in _DEFAULT_PORTS or not _HOST.fullmatch(host):
        return None
    default = _DEFAULT_PORTS[scheme]
    if host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def _context() -> OutboundContext:
    ctx = OUTBOUND.get()
    if ctx is None:  # pragma: no cover - broker.app always wires the service
        raise InternalFailureError("Outbound identity federation is not set up on this listener.")
    return ctx


def _issuer(ctx: OutboundContext) -> str:
    if ctx.issuer is None:
        raise ValidationError("The request's Host header cannot form an issuer URL.")
    return ctx.issuer


# -- GetWebIdentityToken ------------------------------------------------------------------------


def _list_shown(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"


def _audiences(p: Params) -> tuple[str, ...]:
    values = p.members("Audience")
    if values is None:
        p.fail("Audience", None, "Member must not be null")
        return ()
    if len(values) < 1:
        p.fail(
            "Audience", _list_shown(values), "Member must have length greater than or equal to 1"
        )
    elif len(values) > MAX_AUDIENCES:
        p.fail(
            "Audience",
            _list_shown(values),
            f"Member must have length less than or equal to {MAX_AUDIENCES}",
        )
    for i, value in enumerate(values, start=1):
        p.string(f"Audience.member.{i}", min_len=1, max_len=MAX_AUDIENCE_LENGTH, value=value)
    return tuple(values)


def _request_tags(p: Params) -> tuple[tuple[str, str], ...]:
    return tuple(p.tags(limit=MAX_REQUEST_TAGS))


async def get_web_identity_token(services: StsServices, caller: Principal, p: Params) -> Node:
    """GetWebIdentityToken: a signed JWT naming the caller, for the requested audiences."""
    audiences = _audiences(p)
    duration = p.integer(
        "DurationSeconds", min_value=MIN_DURATION_SECONDS, max_value=MAX_DURATION_SECONDS
    )
    algorithm = p.req("SigningAlgorithm", min_len=5, max_len=5, enum=SIGNING_ALGORITHMS)
    scope = p.string("Scope", min_len=1, max_len=256, pattern=SCOPE, pattern_text=SCOPE_TEXT)
    mode = p.string("SubjectMode", enum=SUBJECT_MODES)
    tags = _request_tags(p)
    p.check()
    if mode == "OriginIdentity":
        # Sessions issued by this broker carry no trusted identity propagation context.
        raise ValidationError(
            "SubjectMode OriginIdentity requires a trusted identity propagation context "
            "with aws:OriginIdentity/Subject, which the calling session does not have."
        )
    if scope is not None:
        raise ValidationError(
            "Scope can be specified only when SubjectMode is OriginIdentity "
            "and exactly one audience is requested."
        )
    ctx = _context()
    facts = REQUEST_FACTS.get()
    issued = await ctx.service.get_web_identity_token(
        caller,
        WebIdentityTokenInput(
            audiences=audiences,
            signing_algorithm=algorithm,
            issuer=_issuer(ctx),
            duration_seconds=duration if duration is not None else 300,
            tags=tags,
            region=facts.region if facts is not None else "",
        ),
    )
    return {"WebIdentityToken": issued.token, "Expiration": issued.expiration}


STS_ACTIONS["GetWebIdentityToken"] = get_web_identity_token


# -- the IAM switch -------------------------------------------------------------------------------


@action("EnableOutboundWebIdentityFederation")
async def enable_outbound(svc: IamService, caller: Principal, p: Params) -> Node:
    """EnableOutboundWebIdentityFederation: returns the issuer URL."""
    p.check()
    ctx = _context()
    info = await ctx.service.enable(caller, _issuer(ctx))
    return {"IssuerIdentifier": info.issuer}


@action("DisableOutboundWebIdentityFederation")
async def disable_outbound(svc: IamService, caller: Principal, p: Params) -> Node:
    """DisableOutboundWebIdentityFederation: no output shape."""
    p.check()
    await _context().service.disable(caller)
    return None


@action("GetOutboundWebIdentityFederationInfo")
async def outbound_info(svc: IamService, caller: Principal, p: Params) -> Node:
    """GetOutboundWebIdentityFederationInfo: the issuer URL while enabled."""
    p.check()
    ctx = _context()
    info = await ctx.service.info(caller, _issuer(ctx))
    return {"IssuerIdentifier": info.issuer, "JwtVendingEnabled": info.enabled}


# -- discovery ----------------------------------------------------------------------------------


def discovery_document(issuer: str) -> dict[str, object]:
    """Return the OpenID Connect discovery metadata of ``issuer``."""
    return {
        "issuer": issuer,
        "jwks_uri": issuer + JWKS_PATH,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "claims_supported": ["iss", "sub", "aud", "iat", "exp", "jti", CLAIMS_NAMESPACE],
    }


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        content_type="application/json",
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"}
        if status == 200
        else {"Cache-Control": "no-store"},
    )


def _bad_host() -> web.Response:
    return _json(
        {"error": "invalid_request", "error_description": "the Host header is not usable"}, 400
    )


def _unavailable() -> web.Response:
    return _json({"error": "temporarily_unavailable"}, 503)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_wellknown_routes(app: web.Application, deps: ApiDeps) -> None:
    """Add the OIDC discovery and JWKS routes, and the outbound handlers' middleware.

    Nothing is added when ``deps`` carries no keyring; the middleware only when it carries the
    identity-token service. Call before the application starts (routes freeze on start).
    """
    keys: KeyService | None = getattr(deps, "token_keys", None)
    service: IdentityTokenService | None = getattr(deps, "identity_tokens", None)
    if keys is None:
        return

    async def discovery(request: web.Request) -> web.Response:
        issuer = issuer_of(request)
        if issuer is None:
            return _bad_host()
        return _json(discovery_document(issuer))

    async def jwks(request: web.Request) -> web.Response:
        try:
            document = await keys.jwks()
        except (BrokerError, StoreError):
            return _unavailable()
        return _json(document)

    app.router.add_get(DISCOVERY_PATH, discovery)
    app.router.add_get(JWKS_PATH, jwks)
    if service is None:
        return

    @web.middleware
    async def outbound_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = OUTBOUND.set(OutboundContext(service, issuer_of(request)))
        try:
            return await handler(request)
        finally:
            OUTBOUND.reset(token)

    app.middlewares.append(outbound_context)
