"""Core layer: AWS Signature Version 4 parsing and verification for the query API.

The HTTP layer hands over a :class:`SignedRequest` (plain values, never a framework object);
:func:`parse_auth` extracts the signature parameters from the ``Authorization`` header or from
presigned query parameters, and :func:`verify_request` checks scope, signed headers, payload
hash, clock and finally the signature itself against the caller's secret. The canonicalization
follows ``spec/aws-wire.md`` section 5 and reproduces the AWS SigV4 test-suite vectors.

Pure and synchronous: no I/O, and the current time is an argument. This runs on every signed
request, so it avoids repeated work (one header map, one body hash, cached signing keys).

.. warning::
   :func:`verify_request` must be given the exact body bytes received, and the ``Host`` header
   as received; anything the HTTP layer rewrites before this check weakens the signature.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from broker.errors import (
    ContentSha256MismatchError,
    IncompleteSignatureError,
    RequestExpiredError,
    SignatureDoesNotMatchError,
    ValidationError,
)

ALGORITHM = "AWS4-HMAC-SHA256"
"""The only signing algorithm accepted."""

SCOPE_TERMINATOR = "aws4_request"
"""Last element of every credential scope."""

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
"""``x-amz-content-sha256`` value opting out of payload signing (accepted only without a body)."""

DEFAULT_CLOCK_SKEW_SECONDS = 900
"""Allowed distance between ``X-Amz-Date`` and server time (spec B6, AWS: 15 minutes)."""

DEFAULT_SERVICES: frozenset[str] = frozenset({"sts", "iam"})
"""Services accepted in the credential scope (spec B8)."""

MAX_PRESIGNED_EXPIRES_SECONDS = 604800
"""Largest ``X-Amz-Expires`` accepted on a presigned URL: 7 days (spec B7)."""

SIGNING_KEY_CACHE_SIZE = 1024
"""Number of derived signing keys kept in memory."""

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
"""ISO 8601 basic format of ``X-Amz-Date``."""

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_DUMMY_SECRET = "broker-dummy-secret-for-unknown-access-keys"
_AUTH_FIELDS = ("Credential", "SignedHeaders", "Signature")
_QUERY_ALGORITHM = "X-Amz-Algorithm"
_QUERY_CREDENTIAL = "X-Amz-Credential"
_QUERY_DATE = "X-Amz-Date"
_QUERY_EXPIRES = "X-Amz-Expires"
_QUERY_SIGNED_HEADERS = "X-Amz-SignedHeaders"
_QUERY_SIGNATURE = "X-Amz-Signature"
_QUERY_TOKEN = "X-Amz-Security-Token"
_QUERY_AUTH_KEYS = frozenset(
    {
        _QUERY_ALGORITHM,
        _QUERY_CREDENTIAL,
        _QUERY_DATE,
        _QUERY_EXPIRES,
        _QUERY_SIGNED_HEADERS,
        _QUERY_SIGNATURE,
        _QUERY_TOKEN,
    }
)
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SCOPE_DATE_RE = re.compile(r"[0-9]{8}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_UNRESERVED_EXTRA = "-_.~"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the HTTP layer hands over: never an aiohttp object."""

    method: str
    """As received, e.g. ``"POST"``."""
    path: str
    """Raw, undecoded path, e.g. ``"/"``."""
    query: tuple[tuple[str, str], ...]
    """Decoded query parameters in received order (presigned auth parameters included)."""
    headers: tuple[tuple[str, str], ...]
    """``(name, value)`` as received, in order, any case; repeated names allowed."""
    body: bytes
    """The exact body bytes received."""


@dataclass(frozen=True, slots=True)
class SigV4Auth:
    """The signature parameters of one request, as parsed by :func:`parse_auth`."""

    access_key_id: str
    date: str
    """``YYYYMMDD`` from the credential scope."""
    region: str
    service: str
    signed_headers: tuple[str, ...]
    """Lowercase header names, as given by the client."""
    signature: str
    amz_date: datetime
    """Timezone-aware UTC, from ``X-Amz-Date`` (header or presigned parameter) or ``Date``."""
    presigned: bool
    expires: int | None
    """``X-Amz-Expires`` when presigned; ``None`` when absent or not a plain integer."""
    security_token: str | None
    """``X-Amz-Security-Token`` header or query parameter."""
    amz_date_text: str = field(default="", compare=False)
    """``amz_date`` in the ``YYYYMMDDTHHMMSSZ`` form when it came in that form (saves
    formatting it again for the string to sign); empty otherwise."""

    def date_text(self) -> str:
        """``amz_date`` as ``YYYYMMDDTHHMMSSZ``."""
        return self.amz_date_text or self.amz_date.strftime(AMZ_DATE_FORMAT)


# -- parsing -----------------------------------------------------------------------------


def parse_auth(req: SignedRequest) -> SigV4Auth | None:
    """Extract the SigV4 parameters from ``req``.

    Returns ``None`` when the request carries no authentication at all (the caller answers
    ``MissingAuthenticationToken``). Raises :class:`IncompleteSignatureError` when the
    ``Authorization`` header or the presigned parameters are malformed: another algorithm, a
    missing or repeated ``Credential``/``SignedHeaders``/``Signature``, a badly shaped scope,
    a scope not ending in ``aws4_request``, a missing or unreadable date, or both header and
    query authentication at once.
    """
    authorization = _values(req.headers, "authorization")
    query_auth_present = any(key in _QUERY_AUTH_KEYS for key, _ in req.query)
    if authorization:
        if len(authorization) > 1:
            raise IncompleteSignatureError("Only one Authorization header is allowed.")
        if any(key in (_QUERY_ALGORITHM, _QUERY_SIGNATURE) for key, _ in req.query):
            raise IncompleteSignatureError(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
                "or the Authorization header should be specified."
            )
        return _parse_header_auth(req, authorization[0])
    if query_auth_present:
        return _parse_query_auth(req)
    return None


def _parse_header_auth(req: SignedRequest, value: str) -> SigV4Auth:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureError(f"Unsupported authorization algorithm; use {ALGORITHM}.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep or name not in _AUTH_FIELDS:
            raise IncompleteSignatureError(
                "Authorization header components must be Credential=, SignedHeaders= "
                "and Signature=, separated by commas."
            )
        if name in fields:
            raise IncompleteSignatureError(f"Authorization header repeats '{name}'.")
        fields[name] = field_value
    for name in _AUTH_FIELDS:
        if not fields.get(name):
            raise IncompleteSignatureError(f"Authorization header requires '{name}' parameter.")
    access_key_id, date, region, service = _parse_credential(fields["Credential"])
    signed_headers = _parse_signed_headers(fields["SignedHeaders"])

    amz_dates = _values(req.headers, "x-amz-date")
    if len(amz_dates) > 1:
        raise IncompleteSignatureError("Only one X-Amz-Date header is allowed.")
    amz_date_text = ""
    if amz_dates:
        amz_date_text = amz_dates[0].strip()
        amz_date = _parse_amz_date(amz_date_text)
    else:
        http_dates = _values(req.headers, "date")
        if len(http_dates) != 1:
            raise IncompleteSignatureError(
                "Authorization header requires existence of either a 'X-Amz-Date' "
                "or a 'Date' header."
            )
        amz_date = _parse_http_date(http_dates[0])

    tokens = _values(req.headers, "x-amz-security-token")
    if len(tokens) > 1:
        raise IncompleteSignatureError("Only one X-Amz-Security-Token header is allowed.")
    return SigV4Auth(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=signed_headers,
        signature=fields["Signature"],
        amz_date=amz_date,
        presigned=False,
        expires=None,
        security_token=tokens[0].strip() if tokens else None,
        amz_date_text=amz_date_text,
    )


def _parse_query_auth(req: SignedRequest) -> SigV4Auth:
    params: dict[str, str] = {}
    for key, value in req.query:
        if key in _QUERY_AUTH_KEYS:
            if key in params:
                raise IncompleteSignatureError(f"Query parameter '{key}' is repeated.")
            params[key] = value
    if params.get(_QUERY_ALGORITHM) != ALGORITHM:
        raise IncompleteSignatureError(
            f"Presigned requests require {_QUERY_ALGORITHM}={ALGORITHM}."
        )
    for key in (
        _QUERY_CREDENTIAL,
        _QUERY_SIGNED_HEADERS,
        _QUERY_SIGNATURE,
        _QUERY_DATE,
        _QUERY_EXPIRES,
    ):
        if not params.get(key):
            raise IncompleteSignatureError(f"Presigned requests require the '{key}' parameter.")
    access_key_id, date, region, service = _parse_credential(params[_QUERY_CREDENTIAL])
    expires_text = params[_QUERY_EXPIRES]
    # Out-of-range and non-integer values are reported by verify_request (ValidationError),
    # after the credential checks, as the error precedence of aws-wire.md section 5.6 asks.
    expires = (
        int(expires_text)
        if expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12
        else None
    )
    token = params.get(_QUERY_TOKEN)
    if token is None:
        header_tokens = _values(req.headers, "x-amz-security-token")
        if len(header_tokens) > 1:
            raise IncompleteSignatureError("Only one X-Amz-Security-Token header is allowed.")
        token = header_tokens[0].strip() if header_tokens else None
    return SigV4Auth(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=_parse_signed_headers(params[_QUERY_SIGNED_HEADERS]),
        signature=params[_QUERY_SIGNATURE],
        amz_date=_parse_amz_date(params[_QUERY_DATE]),
        presigned=True,
        expires=expires,
        security_token=token,
        amz_date_text=params[_QUERY_DATE],
    )


def _parse_credential(text: str) -> tuple[str, str, str, str]:
    parts = text.split("/")
    if len(parts) != 5 or not all(parts[:4]):
        raise IncompleteSignatureError(
            "Credential must have the form <access key id>/<YYYYMMDD>/<region>/<service>/"
            f"{SCOPE_TERMINATOR}."
        )
    access_key_id, date, region, service, terminator = parts
    if terminator != SCOPE_TERMINATOR:
        raise IncompleteSignatureError(
            f"Credential should be scoped with a valid terminator: '{SCOPE_TERMINATOR}'."
        )
    if _SCOPE_DATE_RE.fullmatch(date) is None:
        raise IncompleteSignatureError("Credential scope date must have the form YYYYMMDD.")
    return access_key_id, date, region, service


def _parse_signed_headers(text: str) -> tuple[str, ...]:
    names = tuple(text.split(";"))
    if not all(names):
        raise IncompleteSignatureError("SignedHeaders must not contain empty names.")
    return names


def _parse_amz_date(text: str) -> datetime:
    if _AMZ_DATE_RE.fullmatch(text) is None:
        raise IncompleteSignatureError("X-Amz-Date must be in the ISO 8601 basic format.")
    try:
        # The pattern fixed every position; int() of digit slices beats strptime tenfold.
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise IncompleteSignatureError("X-Amz-Date is not a valid date.") from None


def _parse_http_date(text: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        raise IncompleteSignatureError("The Date header is not a valid HTTP date.") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# -- canonical form ----------------------------------------------------------------------


def canonical_request(req: SignedRequest, auth: SigV4Auth) -> str:
    """Return the SigV4 canonical request of ``req`` for the headers ``auth`` signs.

    The path is decoded, stripped of dot segments and repeated slashes, and encoded once;
    query parameters are re-encoded and sorted after encoding (``X-Amz-Signature`` left out
    when presigned); signed header values are trimmed, whitespace-collapsed and joined with
    ``,``; the payload hash is ``x-amz-content-sha256`` when sent, else SHA-256 of the body.
    """
    header_map = _header_map(req.headers)
    return _canonical(req, auth, header_map, _payload_hash(req, header_map))


def _canonical(
    req: SignedRequest,
    auth: SigV4Auth,
    header_map: dict[str, list[str]],
    payload_hash: str,
) -> str:
    lines = [
        req.method.upper(),
        _canonical_path(req.path),
        _canonical_query(req.query, auth.presigned),
    ]
    for name in auth.signed_headers:
        values = header_map.get(name.lower(), ())
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
    lines.append("")
    lines.append(";".join(auth.signed_headers))
    lines.append(payload_hash)
    return "\n".join(lines)


@functools.lru_cache(maxsize=256)
def _canonical_path(path: str) -> str:
    if path == "/":
        return path
    decoded = unquote(path)
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normalized = "/".join(segments)
    if decoded.startswith("/"):
        normalized = "/" + normalized
    if segments and decoded.endswith("/"):
        normalized += "/"
    if not normalized:
        return "/"
    return quote(normalized, safe="/~", errors="surrogatepass")


def _canonical_query(query: Iterable[tuple[str, str]], presigned: bool) -> str:
    pairs = sorted(
        (_quote_component(key), _quote_component(value))
        for key, value in query
        if not (presigned and key == _QUERY_SIGNATURE)
    )
    return "&".join(f"{key}={value}" for key, value in pairs)


def _quote_component(text: str) -> str:
    return quote(text, safe=_UNRESERVED_EXTRA, errors="surrogatepass")


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in headers:
        result.setdefault(name.lower(), []).append(value)
    return result


def _values(headers: Iterable[tuple[str, str]], lower_name: str) -> list[str]:
    return [value for name, value in headers if name.lower() == lower_name]


def _payload_hash(req: SignedRequest, header_map: dict[str, list[str]]) -> str:
    declared = header_map.get("x-amz-content-sha256")
    if declared:
        return declared[0].strip()
    return hashlib.sha256(req.body).hexdigest() if req.body else _EMPTY_SHA256


def _utf8(text: str) -> bytes:
    # Header text may hold surrogate escapes of undecodable bytes; they only ever lead to a
    # signature mismatch, never to an exception.
    return text.encode("utf-8", "surrogatepass")


def string_to_sign(auth: SigV4Auth, canonical: str) -> str:
    """Return the SigV4 string to sign: algorithm, timestamp, scope, hash of ``canonical``."""
    return "\n".join(
        (
            ALGORITHM,
            auth.date_text(),
            f"{auth.date}/{auth.region}/{auth.service}/{SCOPE_TERMINATOR}",
            hashlib.sha256(_utf8(canonical)).hexdigest(),
        )
    )


@functools.lru_cache(maxsize=SIGNING_KEY_CACHE_SIZE)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Derive the SigV4 signing key (``kSigning``) for one secret and credential scope.

    Results are cached (bounded LRU): a client signs many requests with the same scope.
    """
    key = hmac.digest(_utf8("AWS4" + secret), _utf8(date), "sha256")
    key = hmac.digest(key, _utf8(region), "sha256")
    key = hmac.digest(key, _utf8(service), "sha256")
    return hmac.digest(key, SCOPE_TERMINATOR.encode(), "sha256")


def compute_signature(req: SignedRequest, auth: SigV4Auth, secret: str) -> str:
    """Return the lowercase hex signature ``req`` should carry when signed with ``secret``."""
    return _signature_for(auth, canonical_request(req, auth), secret)


def _signature_for(auth: SigV4Auth, canonical: str, secret: str) -> str:
    key = signing_key(secret, auth.date, auth.region, auth.service)
    return hmac.new(key, _utf8(string_to_sign(auth, canonical)), hashlib.sha256).hexdigest()


# -- verification ------------------------------------------------------------------------


def verify_request(
    req: SignedRequest,
    auth: SigV4Auth,
    secret: str,
    *,
    now: datetime,
    skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS,
    services: frozenset[str] = DEFAULT_SERVICES,
) -> None:
    """Check that ``req`` is correctly signed with ``secret``; return ``None`` or raise.

    Checks, in this order: the scope's service is in ``services``
    (:class:`SignatureDoesNotMatchError`); the scope date equals the request date
    (:class:`SignatureDoesNotMatchError`); ``host`` is signed, and for header auth the date
    header, and ``content-type`` when there is a body, and every signed header is present
    (:class:`SignatureDoesNotMatchError`); ``x-amz-content-sha256`` matches the body
    (:class:`ContentSha256MismatchError`); the clock window, or for presigned requests
    ``X-Amz-Expires`` (:class:`ValidationError` when outside 1..604800,
    :class:`RequestExpiredError` when past); finally the signature, which must be 64
    lowercase hex characters and equal the expected one (:class:`SignatureDoesNotMatchError`).

    ``now`` must be timezone-aware. The access key and session token are the caller's
    business: look them up before calling this.
    """
    if auth.service not in services:
        raise SignatureDoesNotMatchError(
            "Credential should be scoped to a valid service for this endpoint."
        )
    request_date = auth.date_text()[:8]
    if auth.date != request_date:
        raise SignatureDoesNotMatchError(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{request_date}', "
            f"from '{auth.amz_date.strftime(AMZ_DATE_FORMAT)}'."
        )

    header_map = _header_map(req.headers)
    signed = auth.signed_headers
    required = ["host"]
    if not auth.presigned:
        required.append("x-amz-date" if "x-amz-date" in header_map else "date")
        if req.body:
            required.append("content-type")
    for name in required:
        if name not in signed:
            raise SignatureDoesNotMatchError(f"'{name}' must be a signed header.")
    for name in signed:
        if name.lower() not in header_map:
            raise SignatureDoesNotMatchError("A header named in SignedHeaders is missing.")

    payload_hash = _verify_payload_hash(req, header_map)

    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    if auth.presigned:
        _check_presigned_window(auth, now, skew_seconds)
    else:
        _check_clock(auth.amz_date, now, skew_seconds)

    expected = _signature_for(auth, _canonical(req, auth, header_map, payload_hash), secret)
    if _SIGNATURE_RE.fullmatch(auth.signature) is None or not hmac.compare_digest(
        expected, auth.signature
    ):
        raise SignatureDoesNotMatchError()


def _verify_payload_hash(req: SignedRequest, header_map: dict[str, list[str]]) -> str:
    actual = hashlib.sha256(req.body).hexdigest() if req.body else _EMPTY_SHA256
    declared = header_map.get("x-amz-content-sha256")
    if not declared:
        return actual
    if len(declared) > 1:
        raise ContentSha256MismatchError("Only one x-amz-content-sha256 header is allowed.")
    value = declared[0].strip()
    if value == UNSIGNED_PAYLOAD:
        # Query-protocol parameters travel in the body, so the body must be signed.
        if req.body:
            raise ContentSha256MismatchError(
                f"{UNSIGNED_PAYLOAD} is not accepted for a request with a body."
            )
        return value
    if not hmac.compare_digest(_utf8(value), actual.encode()):
        raise ContentSha256MismatchError()
    return value


def _window_text(skew_seconds: int) -> str:
    if skew_seconds % 60 == 0:
        return f"{skew_seconds // 60} min."
    return f"{skew_seconds} sec."


def _check_clock(amz_date: datetime, now: datetime, skew_seconds: int) -> None:
    skew = timedelta(seconds=skew_seconds)
    if amz_date < now - skew:
        raise SignatureDoesNotMatchError(
            f"Signature expired: {amz_date.strftime(AMZ_DATE_FORMAT)} is now earlier than "
            f"{(now - skew).strftime(AMZ_DATE_FORMAT)} "
            f"({now.strftime(AMZ_DATE_FORMAT)} - {_window_text(skew_seconds)})"
        )
    if amz_date > now + skew:
        _raise_not_yet_current(amz_date, now, skew_seconds)


def _raise_not_yet_current(amz_date: datetime, now: datetime, skew_seconds: int) -> None:
    skew = timedelta(seconds=skew_seconds)
    raise SignatureDoesNotMatchError(
        f"Signature not yet current: {amz_date.strftime(AMZ_DATE_FORMAT)} is still later than "
        f"{(now + skew).strftime(AMZ_DATE_FORMAT)} "
        f"({now.strftime(AMZ_DATE_FORMAT)} + {_window_text(skew_seconds)})"
    )


def _check_presigned_window(auth: SigV4Auth, now: datetime, skew_seconds: int) -> None:
    expires = auth.expires
    if expires is None or not 1 <= expires <= MAX_PRESIGNED_EXPIRES_SECONDS:
        raise ValidationError(
            f"X-Amz-Expires must be an integer between 1 and {MAX_PRESIGNED_EXPIRES_SECONDS}."
        )
    if now > auth.amz_date + timedelta(seconds=expires):
        raise RequestExpiredError(
            f"Request has expired: X-Amz-Date {auth.amz_date.strftime(AMZ_DATE_FORMAT)} "
            f"plus {expires} seconds is earlier than {now.strftime(AMZ_DATE_FORMAT)}."
        )
    if auth.amz_date > now + timedelta(seconds=skew_seconds):
        _raise_not_yet_current(auth.amz_date, now, skew_seconds)


def burn_dummy_signature(req: SignedRequest, auth: SigV4Auth) -> None:
    """Do the work of a signature check with a fixed dummy secret, and discard the result.

    Called for unknown, deleted or inactive access keys so that they cost as much time as
    known ones (spec B9).
    """
    expected = compute_signature(req, auth, _DUMMY_SECRET)
    hmac.compare_digest(_utf8(expected), _utf8(auth.signature))
