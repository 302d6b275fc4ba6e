"""API: the listener's request pipeline for the ``iam`` and ``sts`` query protocol.

One request, start to finish (DESIGN section 3): read the size-capped body, merge query and
form parameters, find the action and its service, authenticate the SigV4 signature (long-term
keys through the cached ``Authenticator``), record the key's use (write-behind), run the
handler (which authorizes through the service) and render XML. Every failure becomes an AWS
error document; nothing unexpected ever escapes as anything but ``InternalFailure``.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

import broker.api.advisor  # noqa: F401  (registers the service last accessed actions)
import broker.api.federation  # noqa: F401  (registers AssumeRoleWithWebIdentity)
import broker.api.mfa  # noqa: F401  (registers the MFA device actions)
import broker.api.oidc  # noqa: F401  (registers the OIDC provider actions)
import broker.api.outbound  # noqa: F401  (registers GetWebIdentityToken and its IAM switch)
import broker.api.passwords  # noqa: F401  (registers login profiles, password policy, aliases)
import broker.api.reports  # noqa: F401  (registers the account summary and credential report)
import broker.api.simulate  # noqa: F401  (registers the simulator actions)
from broker import metrics
from broker.api.analyzer import add_analyzer_routes
from broker.api.iam import IAM_ACTIONS
from broker.api.query import (
    IAM_NS,
    STS_NS,
    Node,
    Params,
    parse_form,
    render_error,
    render_response,
)
from broker.api.signin import add_signin_routes
from broker.api.sts import STS_ACTIONS, UNSIGNED_STS_ACTIONS
from broker.audit import AuditSink, api_event
from broker.clock import Clock
from broker.config import SigninConfig
from broker.core import ids, sigv4
from broker.core.model import ANONYMOUS, Principal, key_hint, principal_from_claims
from broker.core.ratelimit import TokenBuckets
from broker.core.tokens import OpenedTokens, TokenExpiredError, TokenMalformedError
from broker.errors import (
    AuthError,
    BrokerError,
    ExpiredTokenError,
    InternalFailureError,
    InvalidActionError,
    InvalidClientTokenIdError,
    MalformedQueryStringError,
    MissingActionError,
    MissingAuthenticationTokenError,
    RequestTooLargeError,
    SignatureDoesNotMatchError,
    ThrottledError,
    UnavailableError,
)
from broker.service.access_tracking import AccessTracker
from broker.service.authz import REQUEST_FACTS, Authenticator, RequestFacts
from broker.service.federation import FederationService
from broker.service.iam import IamService
from broker.service.identity_tokens import IdentityTokenService
from broker.service.keys import KeyService
from broker.service.rootguard import enforce_root_restriction
from broker.service.sessions import SessionService
from broker.service.sts import StsService
from broker.service.tracking import KeyUsageTracker, KeyUse
from broker.store.base import Store, StoreError

log = logging.getLogger(__name__)

IAM_VERSION = "2010-05-08"
STS_VERSION = "2011-06-15"
SERVICE_OF_NS = {"iam": IAM_NS, "sts": STS_NS}
SIGNING_SERVICES = sigv4.DEFAULT_SERVICES | {"access-analyzer"}
"""Signing names accepted by :meth:`QueryApi.authenticate` (the caller names the one it wants)."""
FAILED_AUTH_BURST_SECONDS = 10
"""The failed-authentication bucket of an address holds this many seconds of its rate."""
RETRY_AFTER_SECONDS = "1"
"""``Retry-After`` of 503 answers: the store is retried on every request."""


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """What the API listener needs, built once by ``broker.app``."""

    store: Store
    iam: IamService
    authenticator: Authenticator
    tracker: KeyUsageTracker
    clock: Clock
    max_body_bytes: int
    clock_skew_seconds: int
    sts: StsService | None = None
    token_keys: KeyService | None = None
    sessions: SessionService | None = None
    identity_tokens: IdentityTokenService | None = None
    federation: FederationService | None = None
    audit: AuditSink | None = None
    restrict_root_access_keys: bool = False
    access_tracker: AccessTracker | None = None
    signin: SigninConfig | None = None
    failed_auth_rps_per_ip: float = 0.0


DEPS = web.AppKey("deps", ApiDeps)


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLargeError()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError()
        chunks.append(chunk)
    return b"".join(chunks)


def _route(params: dict[str, str]) -> tuple[str, str]:
    """Return (service, action) for the request, or raise InvalidAction/MissingAction."""
    action = params.get("Action")
    if not action:
        raise MissingActionError()
    version = params.get("Version")
    if action in IAM_ACTIONS and version in (None, IAM_VERSION):
        return "iam", action
    if action in STS_ACTIONS and version in (None, STS_VERSION):
        return "sts", action
    if version == STS_VERSION:
        raise InvalidActionError(f"Could not find operation {action} for version {version}")
    raise InvalidActionError(
        f"Could not find operation {action} for version {version or IAM_VERSION}"
    )


class QueryApi:
    """The aiohttp handler for ``POST /`` and ``GET /`` on the API listener."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps
        rate = deps.failed_auth_rps_per_ip
        self._failed_auth = TokenBuckets(rate, max(1.0, rate * FAILED_AUTH_BURST_SECONDS))
        self._opened = OpenedTokens()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one query-protocol request."""
        started = metrics.now()
        request_id = ids.request_id()
        namespace = IAM_NS
        # Filled in as the request goes; the finally clause audits every outcome (spec H1).
        params: dict[str, str] = {}
        service = ""
        principal: Principal | None = None
        region = ""
        result: Node = None
        failure: tuple[str, str] | None = None
        try:
            if request.method not in {"GET", "POST"}:
                raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
            body = await _read_body(request, self.deps.max_body_bytes)
            params = self._params(request, body)
            service, action = _route(params)
            namespace = SERVICE_OF_NS[service]
            now = self.deps.clock.now()
            if service == "sts" and action in UNSIGNED_STS_ACTIONS:
                # Authorized by the role's trust policy alone (DESIGN section 3).
                principal = ANONYMOUS
            else:
                principal, auth = await self._authenticate(request, body, service)
                region = auth.region
                if not principal.is_temporary:
                    self.deps.tracker.record(
                        KeyUse(
                            principal.account_id,
                            principal.access_key_id,
                            now,
                            service,
                            region,
                            action,
                            principal.is_root,
                        )
                    )
                if self.deps.restrict_root_access_keys:
                    enforce_root_restriction(principal, service, action)
            REQUEST_FACTS.set(
                RequestFacts(
                    source_ip=request.remote or "",
                    secure_transport=request.secure,
                    current_time=now,
                    user_agent=request.headers.get("User-Agent", ""),
                    region=region,
                )
            )
            p = Params(params)
            tracker = self.deps.access_tracker
            try:
                if service == "iam":
                    result = await IAM_ACTIONS[action](self.deps.iam, principal, p)
                else:
                    result = await STS_ACTIONS[action](self.deps, principal, p)
            except BrokerError:
                # Last accessed counts every authenticated attempt, denied ones too (as IAM
                # does); a failed AssumeRole is not a use of the role.
                if tracker is not None:
                    tracker.record(principal, service, action, region, now)
                raise
            if tracker is not None:
                tracker.record(principal, service, action, region, now, params.get("RoleArn"))
            payload = render_response(action, namespace, result, request_id)
            return self._reply(200, payload, request_id)
        except web.HTTPException as exc:
            failure = (exc.reason.replace(" ", ""), exc.reason)
            raise
        except BrokerError as err:
            failure = (err.code, err.message)
            level = logging.ERROR if err.status >= 500 else logging.INFO
            log.log(level, "request_id=%s code=%s status=%s", request_id, err.code, err.status)
            return self._reply(err.status, render_error(err, namespace, request_id), request_id)
        except StoreError as exc:
            log.error("request_id=%s store failure: %s", request_id, type(exc).__name__)
            metrics.store_error(self.deps.store.backend, service, params.get("Action", ""))
            err2 = UnavailableError()
            failure = (err2.code, err2.message)
            return self._reply(err2.status, render_error(err2, namespace, request_id), request_id)
        except Exception:
            log.error("request_id=%s unhandled error", request_id, exc_info=True)
            fail = InternalFailureError()
            failure = (fail.code, fail.message)
            return self._reply(fail.status, render_error(fail, namespace, request_id), request_id)
        finally:
            metrics.observe_request(service, params.get("Action", ""), failure, started)
            if self.deps.audit is not None:
                self._audit(
                    request, request_id, params, service, principal, region, result, failure
                )

    def _audit(
        self,
        request: web.Request,
        request_id: str,
        params: dict[str, str],
        service: str,
        principal: Principal | None,
        region: str,
        result: Node,
        failure: tuple[str, str] | None,
    ) -> None:
        """Queue the request's one audit event (never raises, never waits)."""
        assert self.deps.audit is not None
        try:
            event = api_event(
                now=self.deps.clock.now(),
                service=service,
                action=params.get("Action", ""),
                region=region,
                source_ip=request.remote or "",
                user_agent=request.headers.get("User-Agent", ""),
                principal=principal,
                params=params,
                result=result,
                request_id=request_id,
                error_code=failure[0] if failure is not None else None,
                error_message=failure[1] if failure is not None else None,
            )
        except Exception:
            log.error("request_id=%s audit event not built", request_id, exc_info=True)
            return
        self.deps.audit.emit(event)

    @staticmethod
    def _reply(status: int, payload: bytes, request_id: str) -> web.Response:
        headers = {"x-amzn-RequestId": request_id}
        if status == 503:
            headers["Retry-After"] = RETRY_AFTER_SECONDS
        return web.Response(status=status, body=payload, content_type="text/xml", headers=headers)

    @staticmethod
    def _params(request: web.Request, body: bytes) -> dict[str, str]:
        merged: dict[str, str] = {}
        query = request.rel_url.raw_query_string
        for k, v in parse_form(query):
            merged[k] = v
        if body:
            ctype = request.headers.get("Content-Type", "application/x-www-form-urlencoded")
            if not ctype.lower().startswith("application/x-www-form-urlencoded"):
                raise MalformedQueryStringError(
                    "The request body must be application/x-www-form-urlencoded."
                )
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedQueryStringError("The request body is not valid UTF-8.") from None
            for k, v in parse_form(text):
                merged[k] = v
        return merged

    async def authenticate(
        self, request: web.Request, body: bytes, service: str
    ) -> tuple[Principal, sigv4.SigV4Auth]:
        """Authenticate a SigV4-signed request for ``service`` (other protocols share this)."""
        return await self._authenticate(request, body, service)

    async def _authenticate(
        self, request: web.Request, body: bytes, service: str
    ) -> tuple[Principal, sigv4.SigV4Auth]:
        """Authenticate, refusing a source address over ``[limits] failed_auth_rps_per_ip``.

        Every failed authentication takes a token from the address's bucket; while the bucket
        is empty the address gets ``Throttling`` before any signature work is done.
        """
        if self._failed_auth.rate <= 0:
            return await self._verify(request, body, service)
        address = request.remote or ""
        if not self._failed_auth.has(address, self.deps.clock.monotonic()):
            raise ThrottledError()
        try:
            return await self._verify(request, body, service)
        except AuthError:
            self._failed_auth.allow(address, self.deps.clock.monotonic())
            raise

    async def _verify(
        self, request: web.Request, body: bytes, service: str
    ) -> tuple[Principal, sigv4.SigV4Auth]:
        query = tuple(parse_form(request.rel_url.raw_query_string))
        signed = sigv4.SignedRequest(
            method=request.method,
            path=request.rel_url.raw_path,
            query=query,
            headers=_headers(request),
            body=body,
        )
        auth = sigv4.parse_auth(signed)
        if auth is None:
            raise MissingAuthenticationTokenError()
        if not auth.access_key_id.startswith("AKIA") and not auth.access_key_id.startswith("ASIA"):
            sigv4.burn_dummy_signature(signed, auth)
            raise InvalidClientTokenIdError()
        if auth.access_key_id.startswith("ASIA"):
            principal, secret = await self._temporary(signed, auth)
        else:
            entry = await self.deps.authenticator.lookup(auth.access_key_id)
            if entry is None or not entry.active:
                sigv4.burn_dummy_signature(signed, auth)
                log.info("unknown or inactive access key %s", key_hint(auth.access_key_id))
                raise InvalidClientTokenIdError()
            principal, secret = entry.principal, entry.secret
        if auth.service != service:
            raise SignatureDoesNotMatchError(
                f"Credential should be scoped to correct service: '{service}'. "
            )
        sigv4.verify_request(
            signed,
            auth,
            secret,
            now=self.deps.clock.now(),
            skew_seconds=self.deps.clock_skew_seconds,
            services=SIGNING_SERVICES,
        )
        return principal, auth

    async def _temporary(
        self, signed: sigv4.SignedRequest, auth: sigv4.SigV4Auth
    ) -> tuple[Principal, str]:
        """Authenticate temporary credentials from their session token alone (no store read)."""
        keys = self.deps.token_keys
        token = auth.security_token
        if keys is None or not token:
            sigv4.burn_dummy_signature(signed, auth)
            raise InvalidClientTokenIdError()
        await keys.current()  # reloads only when the keyring changed
        now = int(self.deps.clock.now().timestamp())
        try:
            claims = self._opened.open(token, keys.token_key_now, now=now)
        except TokenExpiredError:
            sigv4.burn_dummy_signature(signed, auth)
            raise ExpiredTokenError() from None
        except TokenMalformedError:
            sigv4.burn_dummy_signature(signed, auth)
            raise InvalidClientTokenIdError() from None
        if not hmac.compare_digest(claims.access_key_id, auth.access_key_id):
            sigv4.burn_dummy_signature(signed, auth)
            raise InvalidClientTokenIdError()
        if self.deps.sessions is not None and await self.deps.sessions.check(claims):
            sigv4.burn_dummy_signature(signed, auth)
            raise InvalidClientTokenIdError()
        return principal_from_claims(claims), claims.secret_access_key


def _headers(request: web.Request) -> tuple[tuple[str, str], ...]:
    """The headers exactly as received (order, case and repeats kept) for SigV4."""
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the process serves."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 once the store answers, 503 with the reason otherwise."""
    deps = request.app[DEPS]
    try:
        await deps.store.ping()
    except StoreError as exc:
        return web.json_response(
            {"status": "unavailable", "store": deps.store.backend, "reason": type(exc).__name__},
            status=503,
        )
    return web.json_response({"status": "ready", "store": deps.store.backend})


def make_api_app(deps: ApiDeps, **kwargs: Any) -> web.Application:
    """Build the API listener's aiohttp application."""
    app = web.Application(client_max_size=deps.max_body_bytes + 1, **kwargs)
    app[DEPS] = deps
    api = QueryApi(deps)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/", api.handle)
    broker.api.outbound.add_wellknown_routes(app, deps)
    add_signin_routes(app, deps)
    add_analyzer_routes(app, deps)
    return app
