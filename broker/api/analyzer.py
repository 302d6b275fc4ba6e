"""API: the IAM Access Analyzer ``ValidatePolicy`` operation (restJson1), on the API listener.

``POST /policy/validation`` takes the JSON body ``{policyDocument, policyType, locale?,
validatePolicyResourceType?}`` and the query parameters ``maxResults``/``nextToken``, signed
with SigV4 for the service ``access-analyzer``, exactly as botocore's ``accessanalyzer`` client
sends it. The caller is authenticated by the query API's own SigV4 path
(:meth:`broker.api.server.QueryApi.authenticate`) and authorized for
``access-analyzer:ValidatePolicy`` on ``*`` through its IAM policies. The findings come from
:func:`broker.core.policy.findings.validate_policy`.

Errors are restJson1 documents: the ``x-amzn-ErrorType`` header names the error and the body is
``{"message": ...}`` (plus ``reason``/``fieldList`` for ``ValidationException``), the way
botocore's rest-json parser reads them. Authentication failures take the names AWS's JSON
services use (``UnrecognizedClientException``, ``InvalidSignatureException`` ...).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from broker.audit import api_event
from broker.core import ids
from broker.core.model import Principal
from broker.core.policy.findings import RESOURCE_TYPES, PolicyType, validate_policy
from broker.errors import (
    AccessDeniedError,
    BrokerError,
    ContentSha256MismatchError,
    ExpiredTokenError,
    IncompleteSignatureError,
    InternalFailureError,
    InvalidClientTokenIdError,
    MissingAuthenticationTokenError,
    RequestExpiredError,
    RequestTooLargeError,
    SignatureDoesNotMatchError,
    ThrottledError,
    UnavailableError,
    ValidationError,
)
from broker.service.authz import REQUEST_FACTS, RequestFacts
from broker.service.tracking import KeyUse
from broker.store.base import StoreError

if TYPE_CHECKING:
    from broker.api.server import ApiDeps, QueryApi

log = logging.getLogger(__name__)

SERVICE = "access-analyzer"
ACTION = "access-analyzer:ValidatePolicy"
EVENT_SOURCE = "access-analyzer.amazonaws.com"
VALIDATE_PATH = "/policy/validation"
INLINE_DOCUMENT_CHARS = 32 * 1024
"""Documents up to this size are checked on the event loop; larger ones in a thread."""
LOCALES = frozenset({"DE", "EN", "ES", "FR", "IT", "JA", "KO", "PT_BR", "ZH_CN", "ZH_TW"})
"""``Locale`` values of the model (findings are always written in English)."""

# Broker error -> (restJson1 error name, HTTP status), by class; the first match wins.
_WIRE_ERRORS: tuple[tuple[type[BrokerError], str, int], ...] = (
    (MissingAuthenticationTokenError, "MissingAuthenticationTokenException", 403),
    (InvalidClientTokenIdError, "UnrecognizedClientException", 403),
    (SignatureDoesNotMatchError, "InvalidSignatureException", 403),
    (RequestExpiredError, "InvalidSignatureException", 403),
    (ContentSha256MismatchError, "InvalidSignatureException", 400),
    (IncompleteSignatureError, "IncompleteSignatureException", 403),
    (ExpiredTokenError, "ExpiredTokenException", 403),
    (AccessDeniedError, "AccessDeniedException", 403),
    (ThrottledError, "ThrottlingException", 429),
    (RequestTooLargeError, "RequestEntityTooLargeException", 413),
    (ValidationError, "ValidationException", 400),
    (UnavailableError, "ServiceUnavailableException", 503),
)


class FieldValidationError(ValidationError):
    """Raised when the request breaks the ``ValidatePolicy`` model (``ValidationException``)."""

    def __init__(
        self, message: str, reason: str = "fieldValidationFailed", field: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.fields = [{"name": field, "message": message}] if field else []


@dataclasses.dataclass(frozen=True, slots=True)
class ValidateInput:
    """A parsed ``ValidatePolicy`` request."""

    document: str
    policy_type: PolicyType
    resource_type: str | None
    locale: str | None
    max_results: int | None
    next_token: str | None


def parse_validate(body: bytes, query: dict[str, str]) -> ValidateInput:
    """Parse the JSON body and query of a ``ValidatePolicy`` request (raise on a bad field)."""
    try:
        doc = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError):
        raise FieldValidationError(
            "Could not parse the request body as JSON.", "cannotParse"
        ) from None
    if not isinstance(doc, dict):
        raise FieldValidationError("The request body must be a JSON object.", "cannotParse")
    document = doc.get("policyDocument")
    if document is None:
        raise FieldValidationError("policyDocument is required.", field="policyDocument")
    if not isinstance(document, str):
        raise FieldValidationError("policyDocument must be a string.", field="policyDocument")
    raw_type = doc.get("policyType")
    if raw_type is None:
        raise FieldValidationError("policyType is required.", field="policyType")
    try:
        policy_type = PolicyType(raw_type)
    except ValueError:
        names = ", ".join(t.value for t in PolicyType)
        raise FieldValidationError(
            f"Invalid value for policyType. Valid values: {names}", field="policyType"
        ) from None
    resource_type = doc.get("validatePolicyResourceType")
    if resource_type is not None:
        if resource_type not in RESOURCE_TYPES:
            raise FieldValidationError(
                "Invalid value for validatePolicyResourceType. Valid values: "
                + ", ".join(RESOURCE_TYPES),
                field="validatePolicyResourceType",
            )
        if policy_type is not PolicyType.RESOURCE_POLICY:
            raise FieldValidationError(
                "validatePolicyResourceType is supported only with the policy type "
                "RESOURCE_POLICY.",
                "notSupported",
                "validatePolicyResourceType",
            )
    locale = doc.get("locale")
    if locale is not None and locale not in LOCALES:
        raise FieldValidationError(
            "Invalid value for locale. Valid values: " + ", ".join(sorted(LOCALES)),
            field="locale",
        )
    max_results: int | None = None
    if "maxResults" in query:
        text = query["maxResults"]
        if not text.lstrip("-").isdigit() or int(text) < 1:
            raise FieldValidationError("maxResults must be a positive integer.", field="maxResults")
        max_results = int(text)
    return ValidateInput(
        document,
        policy_type,
        resource_type,
        locale,
        max_results,
        query.get("nextToken") or None,
    )


def _digest(inp: ValidateInput) -> str:
    seed = "\n".join((inp.policy_type.value, inp.resource_type or "", inp.document))
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def make_token(inp: ValidateInput, offset: int) -> str:
    """The ``nextToken`` that resumes this request at finding ``offset``."""
    raw = json.dumps({"o": offset, "d": _digest(inp)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_token(inp: ValidateInput) -> int:
    """The offset a ``nextToken`` resumes at (0 without one); it must belong to this request."""
    token = inp.next_token
    if token is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        offset = data["o"]
        ok = isinstance(offset, int) and offset >= 0 and data["d"] == _digest(inp)
    except (binascii.Error, ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise FieldValidationError("Invalid nextToken.", field="nextToken")
    return int(offset)


def render_validate(inp: ValidateInput) -> dict[str, object]:
    """Run the checks and render one page of the ``ValidatePolicy`` answer."""
    findings = validate_policy(inp.document, inp.policy_type, inp.resource_type)
    start = read_token(inp)
    end = len(findings) if inp.max_results is None else start + inp.max_results
    out: dict[str, object] = {"findings": [f.to_json() for f in findings[start:end]]}
    if end < len(findings):
        out["nextToken"] = make_token(inp, end)
    return out


def wire_error(err: BrokerError) -> tuple[str, int]:
    """The restJson1 error name and HTTP status of ``err``."""
    for cls, wire, status in _WIRE_ERRORS:
        if isinstance(err, cls):
            return wire, status
    return "InternalServerException", 500


def render_error(err: BrokerError, request_id: str) -> web.Response:
    """The restJson1 error answer for ``err``."""
    name, status = wire_error(err)
    body: dict[str, object] = {"message": err.message}
    if name == "ValidationException":
        body["reason"] = getattr(err, "reason", "other")
        fields = getattr(err, "fields", [])
        if fields:
            body["fieldList"] = fields
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": name}
    if status == 503:
        headers["Retry-After"] = "1"
    return web.json_response(body, status=status, headers=headers)


class AnalyzerApi:
    """The handler of ``POST /policy/validation``."""

    def __init__(self, deps: ApiDeps, query_api: QueryApi) -> None:
        self.deps = deps
        self.query_api = query_api

    async def validate(self, request: web.Request) -> web.StreamResponse:
        """Serve one ``ValidatePolicy`` request."""
        from broker.api.server import _read_body

        request_id = ids.request_id()
        principal: Principal | None = None
        region = ""
        params: dict[str, str] = {}
        failure: tuple[str, str] | None = None
        try:
            body = await _read_body(request, self.deps.max_body_bytes)
            principal, auth = await self.query_api.authenticate(request, body, SERVICE)
            region = auth.region
            now = self.deps.clock.now()
            if not principal.is_temporary:
                self.deps.tracker.record(
                    KeyUse(
                        principal.account_id,
                        principal.access_key_id,
                        now,
                        SERVICE,
                        region,
                        "ValidatePolicy",
                        principal.is_root,
                    )
                )
            REQUEST_FACTS.set(
                RequestFacts(
                    source_ip=request.remote or "",
                    secure_transport=request.secure,
                    current_time=now,
                    user_agent=request.headers.get("User-Agent", ""),
                    region=region,
                )
            )
            if self.deps.access_tracker is not None:  # every authenticated attempt counts
                self.deps.access_tracker.record(principal, SERVICE, "ValidatePolicy", region, now)
            await self.deps.iam._authz.authorize(principal, ACTION, "*")
            inp = parse_validate(body, dict(request.rel_url.query))
            params = {"policyType": inp.policy_type.value}
            if inp.resource_type:
                params["validatePolicyResourceType"] = inp.resource_type
            if len(inp.document) > INLINE_DOCUMENT_CHARS:
                # A big document takes a while to check: keep the event loop serving.
                result = await asyncio.to_thread(render_validate, inp)
            else:
                result = render_validate(inp)
            return web.json_response(result, headers={"x-amzn-RequestId": request_id})
        except BrokerError as err:
            failure = (wire_error(err)[0], err.message)
            level = logging.ERROR if err.status >= 500 else logging.INFO
            log.log(level, "request_id=%s code=%s status=%s", request_id, err.code, err.status)
            return render_error(err, request_id)
        except StoreError as exc:
            log.error("request_id=%s store failure: %s", request_id, type(exc).__name__)
            unavailable = UnavailableError()
            failure = (wire_error(unavailable)[0], unavailable.message)
            return render_error(unavailable, request_id)
        except Exception:
            log.error("request_id=%s unhandled error", request_id, exc_info=True)
            internal = InternalFailureError()
            failure = (wire_error(internal)[0], internal.message)
            return render_error(internal, request_id)
        finally:
            self._audit(request, request_id, principal, region, params, failure)

    def _audit(
        self,
        request: web.Request,
        request_id: str,
        principal: Principal | None,
        region: str,
        params: dict[str, str],
        failure: tuple[str, str] | None,
    ) -> None:
        """Queue the request's one audit event (never raises, never waits)."""
        sink = self.deps.audit
        if sink is None:
            return
        try:
            event = api_event(
                now=self.deps.clock.now(),
                service=SERVICE,
                action="ValidatePolicy",
                region=region,
                source_ip=request.remote or "",
                user_agent=request.headers.get("User-Agent", ""),
                principal=principal,
                params=params,
                result=None,
                request_id=request_id,
                error_code=failure[0] if failure is not None else None,
                error_message=failure[1] if failure is not None else None,
            )
            event = dataclasses.replace(event, event_source=EVENT_SOURCE, read_only=True)
        except Exception:
            log.error("request_id=%s audit event not built", request_id, exc_info=True)
            return
        sink.emit(event)


def add_analyzer_routes(app: web.Application, deps: ApiDeps) -> None:
    """Register ``POST /policy/validation`` on the API listener's application."""
    from broker.api.server import QueryApi

    api = AnalyzerApi(deps, QueryApi(deps))
    app.router.add_post(VALIDATE_PATH, api.validate)


__all__ = [
    "FieldValidationError",
    "ValidateInput",
    "add_analyzer_routes",
    "parse_validate",
    "render_error",
    "render_validate",
    "wire_error",
]
