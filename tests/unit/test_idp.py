"""``broker.idp``: the JWKS cache (TTL, rate-limited refresh, singleflight, stale serving), the
address and URL guards, thumbprint trust, and the HTTP fetcher's limits (spec/security.md A6-A9).

The cache is driven through its ``fetch`` seam with a hand-moved clock, so its tests open no
socket. The fetcher tests talk to the loopback test issuer (``tests.support.oidc_issuer``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import socket
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.config import FederationConfig
from broker.errors import IdpCommunicationError
from broker.idp import (
    FAILED_FETCH_RETRY_SECONDS,
    MAX_REDIRECTS,
    MAX_RESPONSE_BYTES,
    MIN_HONOURED_MAX_AGE,
    FetchedKeys,
    GuardedResolver,
    JwksCache,
    JwksFetcher,
    ThumbprintCheck,
    _max_age,
    address_allowed,
    certificate_names_host,
    check_url,
)
from tests.support.oidc_issuer import JWKS_PATH, MOVED_PATH, OidcIssuer

CFG = FederationConfig()
ISSUER = "https://idp.example.com"
KEY_A: dict[str, object] = {"kty": "RSA", "kid": "a"}
KEY_B: dict[str, object] = {"kty": "RSA", "kid": "b"}


class HandClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0

    def now(self) -> Any:  # pragma: no cover - the cache reads monotonic time only
        raise AssertionError("the JWKS cache must not read the wall clock")

    def monotonic(self) -> float:
        return self.mono


class FakeFetch:
    """Counts fetches; answers with ``answer`` (or raises it), optionally after ``gate``."""

    def __init__(self, keys: tuple[dict[str, object], ...] = (KEY_A,)) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.answer: FetchedKeys | Exception = FetchedKeys(keys)
        self.gate: asyncio.Event | None = None

    async def __call__(self, issuer: str, thumbprints: tuple[str, ...]) -> FetchedKeys:
        self.calls.append((issuer, thumbprints))
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def cache(fetch: FakeFetch, clock: HandClock, **cfg: Any) -> JwksCache:
    return JwksCache(replace(CFG, **cfg), clock, fetch)


# -- cache: TTL --------------------------------------------------------------------------------


async def test_keys_are_fetched_once_and_served_from_cache_until_the_ttl() -> None:
    fetch, clock = FakeFetch(), HandClock()
    jwks = cache(fetch, clock, jwks_cache_seconds=300)
    assert list(await jwks.keys(ISSUER, ())) == [KEY_A]
    clock.mono += 299
    assert list(await jwks.keys(ISSUER, ())) == [KEY_A]
    assert len(fetch.calls) == 1
    fetch.answer = FetchedKeys((KEY_B,))
    clock.mono += 2
    assert list(await jwks.keys(ISSUER, ())) == [KEY_B]
    assert len(fetch.calls) == 2


async def test_a_max_age_in_range_replaces_the_configured_ttl() -> None:
    fetch, clock = FakeFetch(), HandClock()
    fetch.answer = FetchedKeys((KEY_A,), max_age=MIN_HONOURED_MAX_AGE)
    jwks = cache(fetch, clock, jwks_cache_seconds=3600)
    await jwks.keys(ISSUER, ())
    clock.mono += MIN_HONOURED_MAX_AGE + 1
    await jwks.keys(ISSUER, ())
    assert len(fetch.calls) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=600", 600),
        ("public, max-age=86400", 86400),
        ('max-age="120", must-revalidate', 120),
        ("max-age=59", None),
        ("max-age=86401", None),
        ("no-store", None),
        ("s-maxage=600", None),
        ("max-age=99999999999999999999", None),
    ],
)
def test_cache_control_max_age_is_honoured_between_one_minute_and_one_day(
    header: str, expected: int | None
) -> None:
    assert _max_age({"Cache-Control": header}) == expected


async def test_thumbprint_sets_have_their_own_entries_in_any_case_or_order() -> None:
    fetch, clock = FakeFetch(), HandClock()
    jwks = cache(fetch, clock)
    await jwks.keys(ISSUER, ("AA" * 20, "bb" * 20))
    await jwks.keys(ISSUER, ("BB" * 20, "aa" * 20))
    assert len(fetch.calls) == 1
    await jwks.keys(ISSUER, ("cc" * 20,))
    await jwks.keys(ISSUER, ())
    assert len(fetch.calls) == 3


# -- cache: unknown kid refresh ------------------------------------------------------------------


async def test_unknown_kid_refetches_at_most_once_per_min_refresh_interval() -> None:
    fetch, clock = FakeFetch(), HandClock()
    jwks = cache(fetch, clock, jwks_min_refresh_seconds=60)
    await jwks.keys(ISSUER, ())
    fetch.answer = FetchedKeys((KEY_A, KEY_B))
    assert list(await jwks.keys(ISSUER, (), refresh=True)) == [KEY_A, KEY_B]
    assert len(fetch.calls) == 2
    for _ in range(20):
        clock.mono += 2
        await jwks.keys(ISSUER, (), refresh=True)
    assert len(fetch.calls) == 2
    clock.mono += 60
    await jwks.keys(ISSUER, (), refresh=True)
    assert len(fetch.calls) == 3


async def test_concurrent_misses_share_one_fetch() -> None:
    fetch, clock = FakeFetch(), HandClock()
    jwks = cache(fetch, clock)
    fetch.gate = asyncio.Event()
    cold = [asyncio.create_task(jwks.keys(ISSUER, ())) for _ in range(25)]
    await asyncio.sleep(0)
    fetch.gate.set()
    assert all(list(r) == [KEY_A] for r in await asyncio.gather(*cold))
    assert len(fetch.calls) == 1
    fetch.gate = asyncio.Event()
    refreshes = [asyncio.create_task(jwks.keys(ISSUER, (), refresh=True)) for _ in range(100)]
    await asyncio.sleep(0)
    fetch.gate.set()
    await asyncio.gather(*refreshes)
    assert len(fetch.calls) == 2


# -- cache: failures -------------------------------------------------------------------------------


async def test_no_keys_and_a_failing_provider_is_idp_communication_error() -> None:
    fetch, clock = FakeFetch(), HandClock()
    fetch.answer = IdpCommunicationError()
    jwks = cache(fetch, clock)
    with pytest.raises(IdpCommunicationError):
        await jwks.keys(ISSUER, ())


async def test_a_failed_fetch_is_not_retried_at_once() -> None:
    fetch, clock = FakeFetch(), HandClock()
    fetch.answer = IdpCommunicationError()
    jwks = cache(fetch, clock)
    for _ in range(10):
        with pytest.raises(IdpCommunicationError):
            await jwks.keys(ISSUER, ())
    assert len(fetch.calls) == 1
    clock.mono += FAILED_FETCH_RETRY_SECONDS
    fetch.answer = FetchedKeys((KEY_A,))
    assert list(await jwks.keys(ISSUER, ())) == [KEY_A]
    assert len(fetch.calls) == 2


async def test_stale_keys_serve_while_the_provider_is_down_up_to_stale_max() -> None:
    fetch, clock = FakeFetch(), HandClock()
    jwks = cache(fetch, clock, jwks_cache_seconds=100, jwks_stale_max_seconds=1000)
    await jwks.keys(ISSUER, ())
    fetch.answer = IdpCommunicationError()
    clock.mono += 500
    assert list(await jwks.keys(ISSUER, ())) == [KEY_A]
    clock.mono += 499
    assert list(await jwks.keys(ISSUER, ())) == [KEY_A]
    clock.mono += 2
    with pytest.raises(IdpCommunicationError):
        await jwks.keys(ISSUER, ())
    fetch.answer = FetchedKeys((KEY_B,))
    clock.mono += FAILED_FETCH_RETRY_SECONDS
    assert list(await jwks.keys(ISSUER, ())) == [KEY_B]


async def test_a_failed_unknown_kid_refresh_keeps_the_fresh_keys() -> None:
    fetch, clock = FakeFetch(), HandClock()
    jwks = cache(fetch, clock)
    await jwks.keys(ISSUER, ())
    fetch.answer = IdpCommunicationError()
    assert list(await jwks.keys(ISSUER, (), refresh=True)) == [KEY_A]
    assert list(await jwks.keys(ISSUER, ())) == [KEY_A]
    assert len(fetch.calls) == 2


# -- guards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "local_ok", "public_ok"),
    [
        ("93.184.216.34", True, True),
        ("2606:2800:220:1::1", True, True),
        ("10.1.2.3", True, True),
        ("127.0.0.1", True, False),
        ("127.9.9.9", True, False),
        ("::1", True, False),
        ("::ffff:127.0.0.1", True, False),
        ("169.254.10.10", True, False),
        ("fe80::1%eth0", True, False),
        ("0.0.0.0", True, False),  # noqa: S104 - an address to refuse, not to bind
        ("224.0.0.1", True, False),
        ("169.254.169.254", False, False),
        ("::ffff:169.254.169.254", False, False),
        ("fd00:ec2::254", False, False),
        ("169.254.170.2", False, False),
        ("not-an-address", False, False),
    ],
)
def test_address_guard(address: str, local_ok: bool, public_ok: bool) -> None:
    assert address_allowed(address, allow_local=True) is local_ok
    assert address_allowed(address, allow_local=False) is public_ok


@pytest.mark.parametrize(
    ("url", "strict_ok", "lab_ok"),
    [
        ("https://idp.example.com/.well-known/jwks.json", True, True),
        ("https://idp.example.com:443/keys", True, True),
        ("https://idp.example.com:8443/keys", False, True),
        ("http://idp.example.com/keys", False, True),
        ("http://127.0.0.1:8080/keys", False, True),
        ("https://localhost/keys", False, True),
        ("https://[::1]/keys", False, True),
        ("https://169.254.169.254/latest/meta-data", False, False),
        ("http://169.254.169.254/latest/meta-data", False, False),
        ("https://user:pw@idp.example.com/keys", False, False),
        ("ftp://idp.example.com/keys", False, False),
        ("file:///etc/passwd", False, False),
        ("https://idp.example.com:99999/keys", False, False),
        ("https:///keys", False, False),
    ],
)
def test_url_guard(url: str, strict_ok: bool, lab_ok: bool) -> None:
    for allow, ok in ((False, strict_ok), (True, lab_ok)):
        if ok:
            check_url(url, allow)
        else:
            with pytest.raises(IdpCommunicationError):
                check_url(url, allow)


class FixedResolver(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_resolver_drops_loopback_and_metadata_answers() -> None:
    guarded = GuardedResolver(False, FixedResolver("127.0.0.1", "93.184.216.34", "169.254.169.254"))
    assert [r["host"] for r in await guarded.resolve("idp.example.com", 443)] == ["93.184.216.34"]
    rebinding = GuardedResolver(False, FixedResolver("127.0.0.1"))
    with pytest.raises(OSError):
        await rebinding.resolve("rebind.example.com", 443)
    lab = GuardedResolver(True, FixedResolver("127.0.0.1", "169.254.169.254"))
    assert [r["host"] for r in await lab.resolve("localhost", 80)] == ["127.0.0.1"]


class FakeSslObject:
    def __init__(self, der: bytes | None) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return self.der


class FakeTransport:
    def __init__(self, der: bytes | None) -> None:
        self.info: dict[str, Any] = {
            "ssl_object": FakeSslObject(der) if der is not None else None,
            "peername": ("127.0.0.1", 443),
        }

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.info.get(name, default)


def certificate(*names: str) -> bytes:
    """A self-signed DER certificate whose subjectAltName lists ``names`` (DNS or IP)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("host", "named"),
    [
        ("idp.example.org", True),
        ("IDP.example.org.", True),
        ("a.example.com", True),
        ("a.b.example.com", False),
        ("example.com", False),
        ("127.0.0.1", True),
        ("[::1]", False),
        ("evil.example.net", False),
    ],
)
def test_certificate_names_host(host: str, named: bool) -> None:
    der = certificate("idp.example.org", "*.example.com", "127.0.0.1")
    assert certificate_names_host(der, host) is named


def test_thumbprint_check_accepts_only_listed_certificates_for_their_host() -> None:
    cert = certificate("127.0.0.1")
    good = hashlib.sha1(cert, usedforsecurity=False).hexdigest()
    ThumbprintCheck([good.upper()], "127.0.0.1").check(FakeTransport(cert))  # type: ignore[arg-type]
    with pytest.raises(aiohttp.ServerFingerprintMismatch):
        ThumbprintCheck(["0" * 40], "127.0.0.1").check(FakeTransport(cert))  # type: ignore[arg-type]
    with pytest.raises(aiohttp.ServerFingerprintMismatch):
        ThumbprintCheck([good], "idp.example.org").check(FakeTransport(cert))  # type: ignore[arg-type]
    with pytest.raises(aiohttp.ServerFingerprintMismatch):
        ThumbprintCheck([good], "127.0.0.1").check(FakeTransport(None))  # type: ignore[arg-type]


# -- the fetcher over HTTP (loopback test issuer) -----------------------------------------------

LAB = replace(CFG, allow_http_issuers=True)


@pytest.fixture
def issuer() -> Any:
    with OidcIssuer(algorithms=("RS256", "ES256")) as server:
        yield server


async def fetch_with(
    cfg: FederationConfig, issuer: OidcIssuer, thumbprints: tuple[str, ...] = (), **kw: Any
) -> FetchedKeys:
    fetcher = JwksFetcher(cfg, **kw)
    try:
        return await fetcher(issuer.url, thumbprints)
    finally:
        await fetcher.close()


async def test_fetch_reads_discovery_then_the_jwks(issuer: OidcIssuer) -> None:
    fetched = await fetch_with(LAB, issuer)
    assert [k["kid"] for k in fetched.keys] == [k.kid for k in issuer.keys]
    assert issuer.jwks_hits == 1


async def test_discovery_naming_another_issuer_loads_no_keys(issuer: OidcIssuer) -> None:
    issuer.discovery_issuer = issuer.url + "/"
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)
    assert issuer.jwks_hits == 0


async def test_http_and_loopback_issuers_need_the_lab_switch(issuer: OidcIssuer) -> None:
    with pytest.raises(IdpCommunicationError):
        await fetch_with(CFG, issuer)
    assert sum(issuer.hits.values()) == 0


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_answers_are_refused(issuer: OidcIssuer, chunked: bool) -> None:
    issuer.jwks_body = b'{"keys": [' + b" " * MAX_RESPONSE_BYTES + b"]}"
    issuer.chunked = chunked
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)
    assert issuer.jwks_hits == 1


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_error_statuses_are_idp_communication_errors(issuer: OidcIssuer, status: int) -> None:
    issuer.status = status
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": {}}', b"\xff\xfe"])
async def test_malformed_key_sets_are_idp_communication_errors(
    issuer: OidcIssuer, body: bytes
) -> None:
    issuer.jwks_body = body
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)


async def test_a_slow_provider_times_out(issuer: OidcIssuer) -> None:
    issuer.delay = 30.0
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer, total_timeout=0.5)


async def test_an_unreachable_provider_is_idp_communication_error(issuer: OidcIssuer) -> None:
    issuer.stop()
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)


async def test_redirects_are_followed_on_the_same_host_only(issuer: OidcIssuer) -> None:
    issuer.jwks_uri = issuer.url + MOVED_PATH
    fetched = await fetch_with(LAB, issuer)
    assert fetched.keys
    issuer.moved_to = f"http://localhost:{issuer.port}{issuer.path}{JWKS_PATH}"
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)
    hits = issuer.jwks_hits
    issuer.moved_to = issuer.url + MOVED_PATH  # a loop
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)
    assert issuer.jwks_hits == hits
    assert issuer.hits[issuer.path + MOVED_PATH] >= 1 + 1 + MAX_REDIRECTS + 1


async def test_jwks_on_a_metadata_address_is_never_fetched(issuer: OidcIssuer) -> None:
    issuer.jwks_uri = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, issuer)


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture
def tls_issuer() -> Any:
    with OidcIssuer(tls=True) as server:
        yield server


async def test_untrusted_certificate_is_refused_without_a_thumbprint(
    tls_issuer: OidcIssuer,
) -> None:
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, tls_issuer)
    with pytest.raises(IdpCommunicationError):
        await fetch_with(LAB, tls_issuer, ("0123456789" * 4,))
    assert tls_issuer.jwks_hits == 0


async def test_untrusted_certificate_is_accepted_by_its_thumbprint(tls_issuer: OidcIssuer) -> None:
    fetched = await fetch_with(LAB, tls_issuer, ("0123456789" * 4, tls_issuer.thumbprint.upper()))
    assert [k["kid"] for k in fetched.keys] == [tls_issuer.key().kid]


async def test_ca_bundle_makes_the_certificate_trusted(tls_issuer: OidcIssuer) -> None:
    cfg = replace(LAB, ca_bundle=str(tls_issuer.cert_path))
    fetched = await fetch_with(cfg, tls_issuer)
    assert fetched.keys
