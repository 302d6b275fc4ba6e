"""Unit tests: broker.core.sigv4 parsing and verification.

A differential part has botocore's own signers (``SigV4Auth`` for header auth,
``SigV4QueryAuth`` for presigned URLs) sign randomized query-protocol requests: every one must
verify, and any single-byte change of the body or signature, or another Host, must not. Table
tests then walk every error path of ``parse_auth`` and ``verify_request``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import SigV4Auth as BotoSigV4Auth  # type: ignore[import-untyped, unused-ignore]
from botocore.auth import (  # type: ignore[import-untyped, unused-ignore]
    SigV4QueryAuth as BotoSigV4QueryAuth,
)
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped, unused-ignore]
from botocore.credentials import Credentials  # type: ignore[import-untyped, unused-ignore]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.core import sigv4
from broker.core.sigv4 import SignedRequest, SigV4Auth
from broker.errors import (
    ContentSha256MismatchError,
    IncompleteSignatureError,
    RequestExpiredError,
    SignatureDoesNotMatchError,
    ValidationError,
)

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "sts.example.test:8080"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
BODY = b"Action=GetCallerIdentity&Version=2011-06-15"
STAMP = "20220127T001427Z"
STAMP_TIME = datetime(2022, 1, 27, 0, 14, 27, tzinfo=UTC)

# -- helpers -----------------------------------------------------------------------------


def _header(req: SignedRequest, name: str) -> str:
    return next(v for n, v in req.headers if n.lower() == name)


def _with_header(req: SignedRequest, name: str, value: str) -> SignedRequest:
    kept = tuple((n, v) for n, v in req.headers if n.lower() != name.lower())
    return replace(req, headers=(*kept, (name, value)))


def _without_header(req: SignedRequest, name: str) -> SignedRequest:
    return replace(req, headers=tuple((n, v) for n, v in req.headers if n.lower() != name))


def sign_header_auth(
    *,
    amz_date: str = STAMP,
    body: bytes = BODY,
    method: str = "POST",
    extra_headers: tuple[tuple[str, str], ...] = (),
    signed: tuple[str, ...] = ("content-type", "host", "x-amz-date"),
    scope_date: str | None = None,
    region: str = "us-east-1",
    service: str = "sts",
    secret: str = SECRET,
    separator: str = ", ",
    date_header: str | None = None,
) -> SignedRequest:
    """Sign a request with this module (its correctness is the vector and botocore tests')."""
    headers: list[tuple[str, str]] = [("Host", HOST), ("Content-Type", FORM)]
    if date_header is None:
        headers.append(("X-Amz-Date", amz_date))
        when = datetime.strptime(amz_date, sigv4.AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    else:
        headers.append(("Date", date_header))
        when = datetime.strptime(date_header, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    headers.extend(extra_headers)
    unsigned = SignedRequest(method, "/", (), tuple(headers), body)
    date = scope_date or when.strftime("%Y%m%d")
    draft = SigV4Auth(AKID, date, region, service, signed, "", when, False, None, None)
    signature = sigv4.compute_signature(unsigned, draft, secret)
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={AKID}/{date}/{region}/{service}/aws4_request"
        f"{separator}SignedHeaders={';'.join(signed)}{separator}Signature={signature}"
    )
    return replace(unsigned, headers=(*unsigned.headers, ("Authorization", authorization)))


def sign_presigned(
    *,
    amz_date: str = STAMP,
    expires: str = "900",
    method: str = "POST",
    token: str | None = None,
) -> SignedRequest:
    """Presign a GetCallerIdentity URL with this module, as botocore lays it out."""
    when = datetime.strptime(amz_date, sigv4.AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    query = [
        ("Action", "GetCallerIdentity"),
        ("Version", "2011-06-15"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", f"{AKID}/{amz_date[:8]}/us-east-1/sts/aws4_request"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", expires),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if token is not None:
        query.append(("X-Amz-Security-Token", token))
    unsigned = SignedRequest(method, "/", tuple(query), (("Host", HOST),), b"")
    draft = SigV4Auth(AKID, amz_date[:8], "us-east-1", "sts", ("host",), "", when, True, 900, None)
    signature = sigv4.compute_signature(unsigned, draft, SECRET)
    return replace(unsigned, query=(*unsigned.query, ("X-Amz-Signature", signature)))


def parsed(req: SignedRequest) -> SigV4Auth:
    auth = sigv4.parse_auth(req)
    assert auth is not None
    return auth


def verify(
    req: SignedRequest,
    now: datetime = STAMP_TIME,
    *,
    skew_seconds: int = sigv4.DEFAULT_CLOCK_SKEW_SECONDS,
    services: frozenset[str] = sigv4.DEFAULT_SERVICES,
) -> None:
    sigv4.verify_request(
        req, parsed(req), SECRET, now=now, skew_seconds=skew_seconds, services=services
    )


Change = Callable[[SignedRequest], SignedRequest]


# -- differential against botocore ---------------------------------------------------------

_HOSTS = [
    "sts.amazonaws.com",
    "iam.amazonaws.com",
    "127.0.0.1:8080",
    "localhost:4566",
    "[::1]:9000",
    "broker.internal:18080",
]
_PARAM_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" +/=&%?#~*'\"!$,;:@-_.")),
        st.characters(codec="utf-8"),
    ),
    max_size=12,
)
_PARAM_NAME = _PARAM_TEXT.filter(lambda s: bool(s) and not s.startswith("X-Amz-"))
_HEADER_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=20
)
_HEADER_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
_REGION = st.one_of(
    st.sampled_from(["us-east-1", "eu-west-2", "ap-southeast-1", "local"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=14),
)
_TOKEN = st.one_of(
    st.none(),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
        min_size=1,
        max_size=300,
    ),
)
_SECRET = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    min_size=40,
    max_size=40,
)


@dataclass(frozen=True)
class BotoCase:
    """One randomized query-protocol request for botocore to sign."""

    params: dict[str, str]
    headers: dict[str, str]
    host: str
    scheme: str
    region: str
    service: str
    token: str | None
    secret: str


@st.composite
def boto_requests(draw: st.DrawFn) -> BotoCase:
    params: dict[str, str] = {"Action": draw(st.sampled_from(["GetCallerIdentity", "ListUsers"]))}
    params["Version"] = "2011-06-15"
    params.update(draw(st.dictionaries(_PARAM_NAME, _PARAM_TEXT, max_size=6)))
    headers = draw(st.dictionaries(_HEADER_NAME, _HEADER_VALUE, max_size=3))
    return BotoCase(
        params=params,
        headers={f"X-Test-{name}": value for name, value in headers.items()},
        host=draw(st.sampled_from(_HOSTS)),
        scheme=draw(st.sampled_from(["http", "https"])),
        region=draw(_REGION),
        service=draw(st.sampled_from(["sts", "iam"])),
        token=draw(_TOKEN),
        secret=draw(_SECRET),
    )


def _received(request: AWSRequest, host: str) -> SignedRequest:
    """What the broker's HTTP layer would hand over for the request botocore sends."""
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = [(str(name), str(value)) for name, value in prepared.headers.items()]
    # Sent by the HTTP client after signing, never signed.
    headers += [("Host", host), ("User-Agent", "Boto3/1.0 test"), ("Accept-Encoding", "identity")]
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return SignedRequest(
        method=prepared.method,
        path=parts.path or "/",
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        headers=tuple(headers),
        body=body,
    )


def _boto_request(case: BotoCase, method: str = "POST") -> AWSRequest:
    headers = {"Content-Type": FORM, **case.headers}
    return AWSRequest(
        method=method,
        url=f"{case.scheme}://{case.host}/",
        data=case.params,
        headers=headers,
    )


def _credentials(case: BotoCase) -> Credentials:
    return Credentials(AKID, case.secret, case.token)


def _flip(data: str, index: int) -> str:
    alphabet = "0123456789abcdef"
    old = data[index]
    new = alphabet[(alphabet.index(old) + 1) % 16]
    return data[:index] + new + data[index + 1 :]


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(
    case=boto_requests(),
    index=st.integers(min_value=0),
    delta=st.integers(1, 255),
    offset=st.integers(-900, 900),
)
def test_botocore_header_auth_verifies_and_any_change_breaks_it(
    case: BotoCase, index: int, delta: int, offset: int
) -> None:
    request = _boto_request(case)
    signer = BotoSigV4Auth(_credentials(case), case.service, case.region)
    signer.add_auth(request)
    received = _received(request, case.host)
    auth = parsed(received)
    assert not auth.presigned
    assert auth.access_key_id == AKID
    assert auth.security_token == case.token
    secret = case.secret
    now = auth.amz_date + timedelta(seconds=offset)

    sigv4.verify_request(received, auth, secret, now=now)

    body = bytearray(received.body)
    position = index % len(body)
    body[position] ^= delta
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(replace(received, body=bytes(body)), auth, secret, now=now)

    bad_signature = replace(auth, signature=_flip(auth.signature, index % 64))
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(received, bad_signature, secret, now=now)

    other_host = _with_header(received, "Host", "evil.example:8080")
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(other_host, auth, secret, now=now)


@_SETTINGS
@given(
    case=boto_requests(),
    index=st.integers(min_value=0),
    method=st.sampled_from(["POST", "GET"]),
    expires=st.integers(1, sigv4.MAX_PRESIGNED_EXPIRES_SECONDS),
    fraction=st.floats(0, 1),
)
def test_botocore_presigned_url_verifies_and_any_change_breaks_it(
    case: BotoCase, index: int, method: str, expires: int, fraction: float
) -> None:
    request = _boto_request(case, method)
    signer = BotoSigV4QueryAuth(_credentials(case), case.service, case.region, expires=expires)
    signer.add_auth(request)
    received = _received(request, case.host)
    assert received.body == b""
    auth = parsed(received)
    assert auth.presigned
    assert auth.expires == expires
    assert auth.security_token == case.token
    secret = case.secret
    now = auth.amz_date + timedelta(seconds=int(expires * fraction))

    sigv4.verify_request(received, auth, secret, now=now)

    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(replace(received, body=b"A"), auth, secret, now=now)

    bad_signature = replace(auth, signature=_flip(auth.signature, index % 64))
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(received, bad_signature, secret, now=now)

    other_host = _with_header(received, "Host", "evil.example:8080")
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(other_host, auth, secret, now=now)

    operation = [i for i, (k, _) in enumerate(received.query) if not k.startswith("X-Amz-")]
    position = operation[index % len(operation)]
    key, value = received.query[position]
    changed = list(received.query)
    changed[position] = (key, value + "x")
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(replace(received, query=tuple(changed)), auth, secret, now=now)

    other_method = "GET" if method == "POST" else "POST"
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(replace(received, method=other_method), auth, secret, now=now)


# -- parse_auth: what is accepted --------------------------------------------------------


def test_no_auth_at_all_is_none() -> None:
    req = SignedRequest("POST", "/", (("Action", "GetCallerIdentity"),), (("Host", HOST),), BODY)
    assert sigv4.parse_auth(req) is None


@pytest.mark.parametrize("separator", [", ", ",", " , "])
def test_component_separators_are_accepted(separator: str) -> None:
    req = sign_header_auth(separator=separator)
    auth = parsed(req)
    assert auth == SigV4Auth(
        access_key_id=AKID,
        date="20220127",
        region="us-east-1",
        service="sts",
        signed_headers=("content-type", "host", "x-amz-date"),
        signature=auth.signature,
        amz_date=STAMP_TIME,
        presigned=False,
        expires=None,
        security_token=None,
    )
    verify(req)


def test_session_token_header_is_reported() -> None:
    req = sign_header_auth(
        extra_headers=(("X-Amz-Security-Token", "tok/en+=="),),
        signed=("content-type", "host", "x-amz-date", "x-amz-security-token"),
    )
    assert parsed(req).security_token == "tok/en+=="
    verify(req)


def test_session_token_may_be_added_after_signing() -> None:
    req = _with_header(sign_header_auth(), "X-Amz-Security-Token", "added-later")
    assert parsed(req).security_token == "added-later"
    verify(req)


def test_date_header_is_the_fallback_for_x_amz_date() -> None:
    req = sign_header_auth(
        date_header="Thu, 27 Jan 2022 00:14:27 GMT", signed=("content-type", "date", "host")
    )
    assert parsed(req).amz_date == STAMP_TIME
    verify(req)


def test_date_header_must_be_signed_when_it_is_the_date() -> None:
    req = sign_header_auth(
        date_header="Thu, 27 Jan 2022 00:14:27 GMT", signed=("content-type", "host")
    )
    with pytest.raises(SignatureDoesNotMatchError, match="'date' must be a signed header"):
        verify(req)


def test_presigned_parse() -> None:
    auth = parsed(sign_presigned(token="tok"))
    assert auth.presigned
    assert auth.expires == 900
    assert auth.security_token == "tok"
    assert auth.signed_headers == ("host",)
    assert auth.amz_date == STAMP_TIME


# -- parse_auth: IncompleteSignature ---------------------------------------------------------

_GOOD_CREDENTIAL = f"Credential={AKID}/20220127/us-east-1/sts/aws4_request"
_GOOD_SIGNED = "SignedHeaders=content-type;host;x-amz-date"
_GOOD_SIGNATURE = "Signature=" + "a" * 64


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(
            f"AWS4-ECDSA-P256-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="other-algorithm",
        ),
        pytest.param("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", id="sigv2"),
        pytest.param("AWS4-HMAC-SHA256", id="no-components"),
        pytest.param("", id="empty"),
        pytest.param(f"AWS4-HMAC-SHA256 {_GOOD_SIGNED}, {_GOOD_SIGNATURE}", id="no-credential"),
        pytest.param(f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNATURE}", id="no-signed"),
        pytest.param(f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNED}", id="no-signature"),
        pytest.param(
            f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNED}, Signature=", id="empty-signature"
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_CREDENTIAL}, {_GOOD_SIGNED}, "
            f"{_GOOD_SIGNATURE}",
            id="duplicate-credential",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNED}, {_GOOD_SIGNATURE}, "
            f"{_GOOD_SIGNATURE}",
            id="duplicate-signature",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNED}, {_GOOD_SIGNATURE}, Foo=bar",
            id="unknown-component",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNED}, {_GOOD_SIGNATURE},",
            id="trailing-comma",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL} {_GOOD_SIGNED} {_GOOD_SIGNATURE}", id="no-commas"
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential={AKID}/20220127/us-east-1/sts, {_GOOD_SIGNED}, "
            f"{_GOOD_SIGNATURE}",
            id="scope-too-short",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential={AKID}/20220127/us-east-1/sts/x/aws4_request, "
            f"{_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="scope-too-long",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential={AKID}/20220127//sts/aws4_request, "
            f"{_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="empty-region",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential=/20220127/us-east-1/sts/aws4_request, "
            f"{_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="empty-key-id",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential={AKID}/2022127/us-east-1/sts/aws4_request, "
            f"{_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="short-date",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential={AKID}/2022-1-27/us-east-1/sts/aws4_request, "
            f"{_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="dashed-date",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential={AKID}/20220127/us-east-1/sts/aws4_requestx, "
            f"{_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="bad-terminator",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 Credential={AKID}/20220127/us-east-1/sts/aws5_request, "
            f"{_GOOD_SIGNED}, {_GOOD_SIGNATURE}",
            id="other-terminator",
        ),
        pytest.param(
            f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, SignedHeaders=host;;x-amz-date, "
            f"{_GOOD_SIGNATURE}",
            id="empty-signed-header-name",
        ),
    ],
)
def test_malformed_authorization_header_is_incomplete(authorization: str) -> None:
    req = SignedRequest(
        "POST",
        "/",
        (),
        (
            ("Host", HOST),
            ("Content-Type", FORM),
            ("X-Amz-Date", STAMP),
            ("Authorization", authorization),
        ),
        BODY,
    )
    with pytest.raises(IncompleteSignatureError):
        sigv4.parse_auth(req)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: _without_header(r, "x-amz-date"), id="no-date"),
        pytest.param(
            lambda r: _with_header(r, "X-Amz-Date", "2022-01-27T00:14:27Z"),
            id="extended-date-format",
        ),
        pytest.param(
            lambda r: _with_header(r, "X-Amz-Date", "20221327T001427Z"), id="impossible-month"
        ),
        pytest.param(lambda r: _with_header(r, "X-Amz-Date", ""), id="empty-date"),
        pytest.param(
            lambda r: replace(r, headers=(*r.headers, ("x-amz-date", STAMP))), id="two-dates"
        ),
        pytest.param(
            lambda r: replace(r, headers=(*r.headers, ("authorization", "x"))),
            id="two-authorization-headers",
        ),
        pytest.param(
            lambda r: replace(r, query=(("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),)),
            id="header-and-query-auth",
        ),
        pytest.param(
            lambda r: _with_header(_without_header(r, "x-amz-date"), "Date", "garbage"),
            id="garbled-date-header",
        ),
        pytest.param(
            lambda r: replace(
                r,
                headers=(*r.headers, ("X-Amz-Security-Token", "a"), ("X-Amz-Security-Token", "b")),
            ),
            id="two-tokens",
        ),
    ],
)
def test_malformed_header_request_is_incomplete(change: Change) -> None:
    req = change(sign_header_auth())
    with pytest.raises(IncompleteSignatureError):
        sigv4.parse_auth(req)


def _drop_param(req: SignedRequest, key: str) -> SignedRequest:
    return replace(req, query=tuple((k, v) for k, v in req.query if k != key))


def _set_param(req: SignedRequest, key: str, value: str) -> SignedRequest:
    return replace(req, query=tuple((k, value if k == key else v) for k, v in req.query))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: _drop_param(r, "X-Amz-Credential"), id="no-credential"),
        pytest.param(lambda r: _drop_param(r, "X-Amz-SignedHeaders"), id="no-signed-headers"),
        pytest.param(lambda r: _drop_param(r, "X-Amz-Signature"), id="no-signature"),
        pytest.param(lambda r: _drop_param(r, "X-Amz-Date"), id="no-date"),
        pytest.param(lambda r: _drop_param(r, "X-Amz-Expires"), id="no-expires"),
        pytest.param(lambda r: _drop_param(r, "X-Amz-Algorithm"), id="no-algorithm"),
        pytest.param(
            lambda r: _set_param(r, "X-Amz-Algorithm", "AWS4-ECDSA-P256-SHA256"),
            id="other-algorithm",
        ),
        pytest.param(lambda r: _set_param(r, "X-Amz-Date", "20220127"), id="bad-date"),
        pytest.param(
            lambda r: _set_param(r, "X-Amz-Credential", f"{AKID}/20220127/us-east-1"),
            id="short-scope",
        ),
        pytest.param(
            lambda r: _set_param(r, "X-Amz-Credential", f"{AKID}/20220127/us-east-1/sts/aws4"),
            id="bad-terminator",
        ),
        pytest.param(
            lambda r: replace(r, query=(*r.query, ("X-Amz-Signature", "b" * 64))),
            id="duplicate-signature",
        ),
        pytest.param(
            lambda r: replace(r, query=(*r.query, ("X-Amz-Credential", "x"))),
            id="duplicate-credential",
        ),
    ],
)
def test_malformed_presigned_query_is_incomplete(change: Change) -> None:
    req = change(sign_presigned())
    with pytest.raises(IncompleteSignatureError):
        sigv4.parse_auth(req)


# -- verify_request: error paths, in order ------------------------------------------------


def test_well_signed_request_verifies() -> None:
    verify(sign_header_auth())


def test_service_outside_the_allowed_set_does_not_match() -> None:
    req = sign_header_auth(service="s3")
    with pytest.raises(SignatureDoesNotMatchError, match="service"):
        verify(req)
    verify(req, services=frozenset({"s3"}))


def test_scope_date_must_equal_request_date() -> None:
    req = sign_header_auth(scope_date="20220126")
    with pytest.raises(SignatureDoesNotMatchError, match="'20220126' != '20220127'"):
        verify(req)


@pytest.mark.parametrize(
    ("signed", "missing"),
    [
        (("content-type", "x-amz-date"), "host"),
        (("content-type", "host"), "x-amz-date"),
        (("host", "x-amz-date"), "content-type"),
    ],
)
def test_required_headers_must_be_signed(signed: tuple[str, ...], missing: str) -> None:
    req = sign_header_auth(signed=signed)
    with pytest.raises(SignatureDoesNotMatchError, match=f"'{missing}' must be a signed header"):
        verify(req)


def test_content_type_need_not_be_signed_without_a_body() -> None:
    verify(sign_header_auth(method="GET", body=b"", signed=("host", "x-amz-date")))


def test_signed_header_missing_from_request_does_not_match() -> None:
    req = sign_header_auth(
        extra_headers=(("X-Custom", "1"),),
        signed=("content-type", "host", "x-amz-date", "x-custom"),
    )
    verify(req)
    with pytest.raises(SignatureDoesNotMatchError, match="missing"):
        verify(_without_header(req, "x-custom"))


def test_unsigned_extra_headers_are_ignored() -> None:
    req = sign_header_auth()
    verify(replace(req, headers=(*req.headers, ("User-Agent", "x"), ("amz-sdk-request", "1"))))


def test_content_sha256_matching_the_body_verifies() -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    verify(sign_header_auth(extra_headers=(("X-Amz-Content-SHA256", digest),)))


@pytest.mark.parametrize(
    "declared",
    [
        hashlib.sha256(b"something else").hexdigest(),
        hashlib.sha256(BODY).hexdigest().upper(),
        "not-a-hash",
        "UNSIGNED-PAYLOAD",
    ],
)
def test_content_sha256_mismatch(declared: str) -> None:
    req = sign_header_auth(extra_headers=(("X-Amz-Content-SHA256", declared),))
    with pytest.raises(ContentSha256MismatchError):
        verify(req)


def test_unsigned_payload_is_accepted_without_a_body() -> None:
    req = sign_header_auth(
        method="GET",
        body=b"",
        signed=("host", "x-amz-date", "x-amz-content-sha256"),
        extra_headers=(("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),),
    )
    assert sigv4.canonical_request(req, parsed(req)).endswith("\nUNSIGNED-PAYLOAD")
    verify(req)


def test_content_sha256_is_checked_before_the_clock() -> None:
    req = sign_header_auth(extra_headers=(("X-Amz-Content-SHA256", "0" * 64),))
    with pytest.raises(ContentSha256MismatchError):
        verify(req, now=STAMP_TIME + timedelta(days=1))


def test_expired_signature_message() -> None:
    req = sign_header_auth(amz_date="20220127T001427Z")
    now = datetime(2022, 1, 27, 1, 59, 28, tzinfo=UTC)
    with pytest.raises(SignatureDoesNotMatchError) as caught:
        verify(req, now=now)
    assert caught.value.message == (
        "Signature expired: 20220127T001427Z is now earlier than 20220127T014428Z "
        "(20220127T015928Z - 15 min.)"
    )


def test_not_yet_current_signature_message() -> None:
    req = sign_header_auth(amz_date="20220127T031500Z")
    now = datetime(2022, 1, 27, 1, 45, 0, tzinfo=UTC)
    with pytest.raises(SignatureDoesNotMatchError) as caught:
        verify(req, now=now)
    assert caught.value.message == (
        "Signature not yet current: 20220127T031500Z is still later than 20220127T020000Z "
        "(20220127T014500Z + 15 min.)"
    )


@pytest.mark.parametrize("offset", [-900, 900, 0])
def test_clock_window_edges_are_inclusive(offset: int) -> None:
    verify(sign_header_auth(), now=STAMP_TIME + timedelta(seconds=offset))


@pytest.mark.parametrize("offset", [-901, 901])
def test_clock_window_is_enforced(offset: int) -> None:
    with pytest.raises(SignatureDoesNotMatchError, match="^Signature (expired|not yet current)"):
        verify(sign_header_auth(), now=STAMP_TIME - timedelta(seconds=offset))


def test_clock_window_is_a_parameter() -> None:
    req = sign_header_auth()
    with pytest.raises(SignatureDoesNotMatchError, match=r"- 1 min\.\)$"):
        verify(req, now=STAMP_TIME + timedelta(seconds=61), skew_seconds=60)


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        verify(sign_header_auth(), now=STAMP_TIME.replace(tzinfo=None))


def test_presigned_url_verifies_until_it_expires() -> None:
    req = sign_presigned(expires="900")
    verify(req, now=STAMP_TIME)
    verify(req, now=STAMP_TIME + timedelta(seconds=900))
    with pytest.raises(RequestExpiredError):
        verify(req, now=STAMP_TIME + timedelta(seconds=901))


def test_presigned_url_with_longest_expiry_verifies() -> None:
    req = sign_presigned(expires=str(sigv4.MAX_PRESIGNED_EXPIRES_SECONDS))
    verify(req, now=STAMP_TIME + timedelta(days=7))


@pytest.mark.parametrize("expires", ["0", "604801", "abc", "-5", "1.5", "99999999999999"])
def test_presigned_expires_out_of_range_is_a_validation_error(expires: str) -> None:
    req = sign_presigned(expires=expires)
    with pytest.raises(ValidationError):
        verify(req)


def test_presigned_url_from_the_future_does_not_match() -> None:
    req = sign_presigned()
    verify(req, now=STAMP_TIME - timedelta(seconds=900))
    with pytest.raises(SignatureDoesNotMatchError, match="^Signature not yet current"):
        verify(req, now=STAMP_TIME - timedelta(seconds=901))


def test_presigned_url_needs_host_signed() -> None:
    req = _set_param(sign_presigned(), "X-Amz-SignedHeaders", "x-amz-date")
    with pytest.raises(SignatureDoesNotMatchError, match="'host' must be a signed header"):
        verify(req)


def test_presigned_canonical_query_leaves_out_the_signature() -> None:
    req = sign_presigned()
    canonical = sigv4.canonical_request(req, parsed(req))
    assert "X-Amz-Signature" not in canonical
    assert "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20220127%2Fus-east-1%2Fsts%2Faws4_request" in (
        canonical
    )


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda s: s.upper(), id="uppercase"),
        pytest.param(lambda s: s[:-1], id="too-short"),
        pytest.param(lambda s: s + "0", id="too-long"),
        pytest.param(lambda s: s[:-1] + "g", id="not-hex"),
        pytest.param(lambda s: " " + s[1:], id="space"),
    ],
)
def test_signature_must_be_64_lowercase_hex(signature: Callable[[str], str]) -> None:
    req = sign_header_auth()
    auth = parsed(req)
    verify(req)
    bad = replace(auth, signature=signature(auth.signature))
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(req, bad, SECRET, now=STAMP_TIME)


def test_wrong_secret_does_not_match() -> None:
    req = sign_header_auth()
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(req, parsed(req), SECRET.replace("w", "W", 1), now=STAMP_TIME)


def test_body_change_does_not_match() -> None:
    req = sign_header_auth()
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(replace(req, body=BODY + b"&x=1"), parsed(req), SECRET, now=STAMP_TIME)


# -- canonical pieces ----------------------------------------------------------------------


def test_signing_key_matches_the_aws_documentation_example() -> None:
    key = sigv4.signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam"
    )
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        ("/a%20b", "/a%20b"),
        ("/a b/", "/a%20b/"),
        ("/a/./b/../c//d/", "/a/c/d/"),
        ("/%7Euser", "/~user"),
        ("/..", "/"),
    ],
)
def test_canonical_path(path: str, expected: str) -> None:
    req = SignedRequest("GET", path, (), (("Host", HOST),), b"")
    auth = replace(parsed(sign_header_auth()), signed_headers=("host",))
    assert sigv4.canonical_request(req, auth).split("\n")[1] == expected


def test_canonical_query_encodes_after_decoding_and_sorts_encoded() -> None:
    query = (("b", "x y+z"), ("a", "2"), ("a", "1"), ("\u1234", "v"), ("k", ""), ("s/t", "~"))
    req = SignedRequest("GET", "/", query, (("Host", HOST),), b"")
    auth = replace(parsed(sign_header_auth()), signed_headers=("host",))
    assert sigv4.canonical_request(req, auth).split("\n")[2] == (
        "%E1%88%B4=v&a=1&a=2&b=x%20y%2Bz&k=&s%2Ft=~"
    )


def test_canonical_headers_trim_collapse_and_join() -> None:
    headers = (("Host", HOST), ("My-H", "  a   b  "), ("my-h", "c\t d"))
    req = SignedRequest("GET", "/", (), headers, b"")
    auth = replace(parsed(sign_header_auth()), signed_headers=("host", "my-h"))
    lines = sigv4.canonical_request(req, auth).split("\n")
    assert lines[3:7] == [f"host:{HOST}", "my-h:a b,c d", "", "host;my-h"]


def test_undecodable_text_never_raises() -> None:
    req = sign_header_auth(
        extra_headers=(("X-Odd", "\udcff"),), signed=("content-type", "host", "x-amz-date", "x-odd")
    )
    verify(req)
    odd_region = replace(parsed(req), region="\udcff")
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(req, odd_region, SECRET, now=STAMP_TIME)


def test_burn_dummy_signature_never_raises() -> None:
    req = sign_header_auth()
    auth = parsed(req)
    sigv4.burn_dummy_signature(req, auth)
    # Even for a request that verify_request would reject.
    sigv4.burn_dummy_signature(_without_header(req, "host"), auth)
    sigv4.burn_dummy_signature(req, replace(auth, signature="\u00e9" * 64))
