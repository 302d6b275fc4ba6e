"""API: password sign-in for people (``POST /signin`` and ``POST /signin/change-password``).

A JSON request ``{"account": id or alias, "user": name, "password": ..., "mfa_code": ...}``
answers 200 with the temporary credentials of that IAM user (a GetSessionToken-style session,
``aws:MultiFactorAuthPresent`` true when an MFA code was given) and a session cookie. The
cookie (``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Secure`` over HTTPS, ``Max-Age`` the
session's length) holds an opaque value sealed with the master key: the account, session id
and expiry, never a secret.

Failures are JSON ``{"code": ..., "message": ...}``:

* 401 with one fixed body for an unknown account, an unknown user, a user without a password,
  a wrong password and a missing, wrong or replayed MFA code (the same work is done in each
  case: unknown users are verified against a dummy hash);
* 429 with ``Retry-After`` once a user had ``[signin] max_failures`` consecutive failures,
  for ``[signin] lockout_seconds``, even for the right password;
* 403 ``PasswordResetRequired`` when the right password must be changed first (reset asked
  for, or older than the policy's ``MaxPasswordAge``): ``POST /signin/change-password`` with
  ``new_password`` sets it (policy enforced) and signs in; 403 ``PasswordExpired`` when
  ``HardExpiry`` forbids that (an administrator must reset it);
* 400 for malformed requests (JSON body of at most :data:`MAX_BODY_BYTES`, Content-Type
  ``application/json``), 400 ``PasswordPolicyViolation`` for a refused new password.

Every attempt emits one ``ConsoleLogin`` audit event (CloudTrail's ``AwsConsoleSignIn`` shape,
``responseElements`` ``{"ConsoleLogin": "Success"|"Failure"}``); passwords and codes are never
recorded, and a user name that names no user is recorded as hidden (it may be a password typed
into the wrong field).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from broker.api.mfa import mfa_for
from broker.api.passwords import configure_passwords
from broker.audit import HIDDEN, AuditEvent, JsonValue
from broker.clock import iso8601
from broker.config import SigninConfig
from broker.core import ids
from broker.core.keyring import Keyring
from broker.core.passwords import PASSWORD_MAX_LENGTH, HashParams
from broker.errors import AccessDeniedError, BrokerError, PasswordPolicyViolationError
from broker.service.authz import REQUEST_FACTS, RequestFacts
from broker.service.passwords import (
    PasswordHardExpiredError,
    PasswordResetRequiredError,
    SigninDeniedError,
    SigninLockedError,
    SigninResult,
    SigninService,
    SigninSettings,
    SigninTrace,
    keyring_cookie,
)
from broker.store.base import StoreError

if TYPE_CHECKING:
    from broker.api.server import ApiDeps

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024
"""Largest sign-in request body (anything larger: 413)."""

COOKIE_NAME = "broker-session"
EVENT_SOURCE = "signin.amazonaws.com"
EVENT_TYPE = "AwsConsoleSignIn"
ACCOUNT_MAX_LENGTH = 63
USER_MAX_LENGTH = 64
MFA_CODE_MAX_LENGTH = 16

DENIED_BODY = json.dumps(
    {
        "code": "SigninFailed",
        "message": "Your authentication information is incorrect. Please try again.",
    },
    separators=(",", ":"),
).encode("utf-8")
"""The one body of every 401 answer (whatever was wrong)."""


class BadRequestError(Exception):
    """The request is not a well-formed sign-in request (400)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class SigninRequest:
    """A parsed sign-in request (``new_password`` only for a password change)."""

    account: str
    user: str
    password: str
    mfa_code: str | None
    new_password: str | None = None

    def __repr__(self) -> str:
        return f"SigninRequest(account={self.account!r}, user={self.user!r}, password='***')"


def _json_reply(
    status: int, body: dict[str, JsonValue] | bytes, request_id: str, **headers: str
) -> web.Response:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    hdrs = {"x-amzn-RequestId": request_id, "Cache-Control": "no-store", **headers}
    return web.Response(status=status, body=payload, content_type="application/json", headers=hdrs)


def _error(code: str, message: str) -> dict[str, JsonValue]:
    return {"code": code, "message": message}


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes (413)."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequestError("Request body is too large.", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BadRequestError("Request body is too large.", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _field(doc: dict[str, object], name: str, max_len: int, *, required: bool) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise BadRequestError(f"Missing field: {name}.")
        return None
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"Field {name} must be a non-empty string.")
    if len(value) > max_len:
        raise BadRequestError(f"Field {name} is longer than {max_len} characters.")
    return value


def parse_signin(body: bytes, content_type: str, *, change: bool) -> SigninRequest:
    """Parse a sign-in request body (raise :class:`BadRequestError`; never echo a value)."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise BadRequestError("Content-Type must be application/json.")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequestError("The request body is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise BadRequestError("The request body must be a JSON object.")
    account = _field(doc, "account", ACCOUNT_MAX_LENGTH, required=True)
    user = _field(doc, "user", USER_MAX_LENGTH, required=True)
    password = _field(doc, "password", PASSWORD_MAX_LENGTH, required=True)
    code = _field(doc, "mfa_code", MFA_CODE_MAX_LENGTH, required=False)
    new = _field(doc, "new_password", PASSWORD_MAX_LENGTH, required=change)
    assert account is not None and user is not None and password is not None
    return SigninRequest(account, user, password, code, new if change else None)


class SigninApi:
    """The aiohttp handlers of the sign-in endpoints."""

    def __init__(self, svc: SigninService, keyring: Keyring, deps: ApiDeps) -> None:
        self.svc = svc
        self.keyring = keyring
        self.deps = deps

    async def signin(self, request: web.Request) -> web.StreamResponse:
        """``POST /signin``."""

        async def run(inp: SigninRequest, trace: SigninTrace) -> SigninResult:
            return await self.svc.sign_in(inp.account, inp.user, inp.password, inp.mfa_code, trace)

        return await self._serve(request, run, change=False)

    async def change_password(self, request: web.Request) -> web.StreamResponse:
        """``POST /signin/change-password``."""

        async def run(inp: SigninRequest, trace: SigninTrace) -> SigninResult:
            assert inp.new_password is not None
            return await self.svc.change_and_sign_in(
                inp.account, inp.user, inp.password, inp.new_password, inp.mfa_code, trace
            )

        return await self._serve(request, run, change=True)

    async def _serve(
        self,
        request: web.Request,
        run: Callable[[SigninRequest, SigninTrace], Awaitable[SigninResult]],
        *,
        change: bool,
    ) -> web.StreamResponse:
        request_id = ids.request_id()
        trace = SigninTrace()
        failure: str | None = "InternalFailure"
        try:
            body = await read_body(request)
            inp = parse_signin(body, request.headers.get("Content-Type", ""), change=change)
            REQUEST_FACTS.set(
                RequestFacts(
                    source_ip=request.remote or "",
                    secure_transport=request.secure,
                    current_time=self.deps.clock.now(),
                    user_agent=request.headers.get("User-Agent", ""),
                )
            )
            result = await run(inp, trace)
            failure = None
            return self._success(request, result, request_id)
        except BadRequestError as exc:
            failure = "MalformedRequest"
            code = "RequestEntityTooLarge" if exc.status == 413 else "MalformedRequest"
            return _json_reply(exc.status, _error(code, exc.message), request_id)
        except SigninDeniedError:
            failure = "SigninFailed"
            return _json_reply(401, DENIED_BODY, request_id)
        except SigninLockedError as exc:
            failure = "TooManyFailures"
            return _json_reply(
                429,
                _error(
                    "TooManyFailures",
                    "Too many failed sign-in attempts for this user. Try again later.",
                ),
                request_id,
                **{"Retry-After": str(exc.retry_after)},
            )
        except PasswordResetRequiredError:
            failure = "PasswordResetRequired"
            return _json_reply(
                403,
                _error(
                    "PasswordResetRequired",
                    "The password must be changed: POST /signin/change-password with new_password.",
                ),
                request_id,
            )
        except PasswordHardExpiredError:
            failure = "PasswordExpired"
            return _json_reply(
                403,
                _error(
                    "PasswordExpired",
                    "The password has expired and can only be reset by an administrator.",
                ),
                request_id,
            )
        except PasswordPolicyViolationError as exc:
            failure = exc.code
            return _json_reply(400, _error(exc.code, exc.message), request_id)
        except AccessDeniedError as exc:
            failure = exc.code
            message = "You are not allowed to change your own password."
            return _json_reply(403, _error(exc.code, message), request_id)
        except BrokerError as exc:
            failure = exc.code
            level = logging.ERROR if exc.status >= 500 else logging.INFO
            log.log(level, "request_id=%s sign-in code=%s", request_id, exc.code)
            headers = {"Retry-After": "1"} if exc.status == 503 else {}
            return _json_reply(exc.status, _error(exc.code, exc.message), request_id, **headers)
        except StoreError as exc:
            failure = "ServiceUnavailable"
            log.error("request_id=%s sign-in store failure: %s", request_id, type(exc).__name__)
            return _json_reply(
                503,
                _error("ServiceUnavailable", "Service is unavailable. Please retry later."),
                request_id,
                **{"Retry-After": "1"},
            )
        except Exception:
            log.error("request_id=%s sign-in failed unexpectedly", request_id, exc_info=True)
            return _json_reply(
                500, _error("InternalFailure", "An internal error occurred."), request_id
            )
        finally:
            self._audit(request, request_id, trace, failure, change=change)

    def _success(self, request: web.Request, result: SigninResult, request_id: str) -> web.Response:
        claims = result.session.claims
        body: dict[str, JsonValue] = {
            "AccessKeyId": claims.access_key_id,
            "SecretAccessKey": claims.secret_access_key,
            "SessionToken": result.session.token,
            "Expiration": iso8601(datetime.fromtimestamp(claims.expires_at, UTC)),
        }
        response = _json_reply(200, body, request_id)
        response.set_cookie(
            COOKIE_NAME,
            keyring_cookie(self.keyring, result),
            max_age=max(claims.expires_at - claims.issued_at, 0),
            path="/",
            secure=request.secure,
            httponly=True,
            samesite="Strict",
        )
        return response

    def _audit(
        self,
        request: web.Request,
        request_id: str,
        trace: SigninTrace,
        failure: str | None,
        *,
        change: bool,
    ) -> None:
        """Queue the attempt's one ``ConsoleLogin`` event (never raises, never waits)."""
        sink = self.deps.audit
        if sink is None:
            return
        try:
            identity: dict[str, JsonValue] = {"type": "IAMUser", "accountId": trace.account_id}
            if trace.user_arn:
                identity.update(
                    principalId=trace.user_id, arn=trace.user_arn, userName=trace.user_name
                )
            else:
                identity["userName"] = HIDDEN
            extra: dict[str, JsonValue] = {
                "LoginTo": str(request.url.with_path("/").with_query(None)),
                "MobileVersion": "No",
                "MFAUsed": "Yes" if trace.mfa_used else "No",
            }
            if change:
                extra["PasswordChange"] = "Yes"
            event = AuditEvent(
                event_time=self.deps.clock.now(),
                event_source=EVENT_SOURCE,
                event_name="ConsoleLogin",
                aws_region="",
                source_ip=request.remote or "",
                user_agent=request.headers.get("User-Agent", ""),
                user_identity=identity,
                request_id=request_id,
                event_id=ids.request_id(),
                read_only=False,
                recipient_account_id=trace.account_id,
                event_type=EVENT_TYPE,
                request_parameters=None,
                response_elements={"ConsoleLogin": "Failure" if failure else "Success"},
                error_code=failure,
                error_message="Failed authentication" if failure else None,
                additional_data=extra,
            )
        except Exception:
            log.error("request_id=%s sign-in audit event not built", request_id, exc_info=True)
            return
        sink.emit(event)


def add_signin_routes(app: web.Application, deps: ApiDeps) -> None:
    """Add ``POST /signin`` and ``POST /signin/change-password`` to the API listener.

    Also sets the hashing cost of the IAM password actions from ``[signin]``.
    """
    cfg = deps.signin if deps.signin is not None else SigninConfig()
    params = HashParams(cfg.hash_time_cost, cfg.hash_memory_kib, cfg.hash_parallelism)
    passwords = configure_passwords(deps.iam, params)
    if deps.sts is None:
        return
    settings = SigninSettings(
        max_failures=cfg.max_failures,
        lockout_seconds=cfg.lockout_seconds,
        session_seconds=cfg.session_seconds,
        hash=params,
    )
    svc = SigninService(deps.store, passwords, mfa_for(deps.iam), deps.sts, deps.clock, settings)
    api = SigninApi(svc, deps.iam._keyring, deps)
    app.router.add_post("/signin", api.signin)
    app.router.add_post("/signin/change-password", api.change_password)
