"""I/O adapter (beside app.py, injected into service/federation): OIDC providers' keys.

Fetches and caches each provider's discovery document and JWKS.

Federation (``broker.service.federation``) asks :class:`JwksCache` for a provider's keys; the
cache answers from memory or has :class:`JwksFetcher` fetch them over HTTP(S). The rules are
spec/security.md A6-A9:

* Keys are cached per provider (its URL *and* its trusted thumbprints, so accounts that trust a
  URL differently never share keys) for ``jwks_cache_seconds``, or for the JWKS response's
  ``Cache-Control: max-age`` when that lies between 60 s and 24 h.
* A token with an unknown ``kid`` triggers a refetch at most once per provider per
  ``jwks_min_refresh_seconds``; concurrent misses wait for the one fetch in flight.
* When a refresh fails, the last good key set keeps serving for up to
  ``jwks_stale_max_seconds`` after it was fetched; a failed fetch is not retried for
  :data:`FAILED_FETCH_RETRY_SECONDS`.
* Fetches time out (:data:`CONNECT_TIMEOUT_SECONDS`, :data:`TOTAL_TIMEOUT_SECONDS`), read at
  most :data:`MAX_RESPONSE_BYTES`, follow at most :data:`MAX_REDIRECTS` redirects and only to
  the same host, and never reach loopback, link-local or cloud metadata addresses unless
  ``[federation] allow_http_issuers`` is on (which also permits ``http://`` and explicit
  ports, for tests and labs). Metadata addresses stay off limits either way.
* TLS is verified against the system CAs plus ``[federation] ca_bundle``. A certificate those
  do not trust is accepted only when the SHA-1 thumbprint of the top certificate of the chain
  the server presents is in the provider's ThumbprintList (AWS's rule for IAM OIDC
  providers). Where the Python runtime cannot expose the presented chain (before 3.13), the
  server's own certificate stands for it, which is exact for self-signed certificates.
* The provider's discovery document must name exactly the registered issuer (A9).

Every failure is an ``IdpCommunicationError``; nothing here logs key material or tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import math
import re
import socket
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from cryptography import x509

from broker.clock import Clock
from broker.config import FederationConfig
from broker.errors import IdpCommunicationError
from broker.metrics import JWKS_CACHE

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 3.0
TOTAL_TIMEOUT_SECONDS = 5.0
"""Bound of one whole key fetch (discovery, JWKS, redirects and the TLS fallback) (A8)."""
MAX_RESPONSE_BYTES = 256 * 1024
MAX_REDIRECTS = 2
MAX_KEYS = 100
"""Keys beyond this many in one JWKS are ignored."""
MIN_HONOURED_MAX_AGE = 60
MAX_HONOURED_MAX_AGE = 86400
FAILED_FETCH_RETRY_SECONDS = 1.0
"""After a failed fetch, requests for that provider do not refetch for this long."""
MAX_CACHED_PROVIDERS = 4096
DISCOVERY_PATH = "/.well-known/openid-configuration"
USER_AGENT = "broker-oidc-fetcher/1"
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
    )
)
"""Cloud instance/container metadata endpoints: never fetched from, whatever the settings."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)

JsonObject = dict[str, object]


@dataclass(frozen=True, slots=True)
class FetchedKeys:
    """One successful fetch: the JWKS keys and the ``max-age`` the server asked for."""

    keys: tuple[JsonObject, ...] = field(repr=False)
    max_age: int | None = None


Fetch = Callable[[str, tuple[str, ...]], Awaitable[FetchedKeys]]
"""``fetch(issuer, thumbprints)``: discovery + JWKS of one provider."""


# -- address and URL guards ---------------------------------------------------------------


def address_allowed(address: str, allow_local: bool) -> bool:
    """Whether a fetch may connect to IP ``address``.

    Metadata addresses never; loopback, link-local, unspecified, multicast and reserved
    addresses only when ``allow_local`` (``[federation] allow_http_issuers``).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return False
    if allow_local:
        return True
    return not (
        ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved
    )


def check_url(url: str, allow_http: bool) -> SplitResult:
    """Return the split ``url`` if a fetch may go there; raise ``IdpCommunicationError``."""
    bad = IdpCommunicationError("The identity provider's URL is not allowed.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise bad from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed or not parts.hostname or parts.username or parts.password:
        raise bad
    if port is not None and not allow_http and port != 443:
        raise bad
    host = parts.hostname
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if host.rstrip(".").lower() == "localhost" and not allow_http:
            raise bad from None
    else:
        if not address_allowed(host, allow_http):
            raise bad
    return parts


class GuardedResolver(AbstractResolver):
    """A resolver that drops addresses :func:`address_allowed` refuses (DNS rebinding guard)."""

    def __init__(self, allow_local: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_local = allow_local
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and keep only permitted addresses (``OSError`` if none)."""
        found = await self._inner.resolve(host, port, family)
        kept = [r for r in found if address_allowed(r["host"], self._allow_local)]
        if not kept:
            raise OSError(f"no permitted address for {host}")
        return kept

    async def close(self) -> None:
        """Release the wrapped resolver."""
        await self._inner.close()


# -- TLS: thumbprint trust ------------------------------------------------------------------


def presented_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The DER certificates the server presented, leaf first (just the leaf before 3.13)."""
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is not None:
        chain = [c for c in (getter() or []) if isinstance(c, bytes)]
        if chain:
            return chain
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def thumbprint(der: bytes) -> str:
    """The IAM thumbprint of a certificate: lower-case hex SHA-1 of its DER bytes."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def certificate_names_host(der: bytes, host: str) -> bool:
    """Whether the certificate's subjectAltName covers ``host`` (a DNS name or an IP address).

    A ``*.`` wildcard covers exactly one leftmost label, as RFC 6125 says.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        wanted = host.rstrip(".").lower()
        for name in names.get_values_for_type(x509.DNSName):
            pattern = name.rstrip(".").lower()
            if pattern == wanted:
                return True
            if pattern.startswith("*.") and "." in wanted:
                if wanted.split(".", 1)[1] == pattern[2:]:
                    return True
        return False
    return address in names.get_values_for_type(x509.IPAddress)


class ThumbprintCheck(aiohttp.Fingerprint):
    """Accept a TLS server whose top presented certificate has an allowed SHA-1 thumbprint.

    Used only after verification against the CA store failed; aiohttp then connects without
    CA verification and calls :meth:`check` on the fresh connection before any request byte
    is sent, so a mismatch never reaches the HTTP layer. The server's own certificate must
    still name ``host``, so a thumbprint that pins a CA does not admit that CA's certificates
    for other hosts.
    """

    def __init__(self, thumbprints: Iterable[str], host: str) -> None:
        self._allowed = frozenset(t.lower() for t in thumbprints)
        self._host = host
        self._fingerprint = b""

    def check(self, transport: asyncio.Transport) -> None:
        """Raise ``ServerFingerprintMismatch`` unless the chain's top thumbprint is allowed."""
        ssl_object = transport.get_extra_info("ssl_object")
        chain = presented_chain(ssl_object) if ssl_object is not None else []
        got = thumbprint(chain[-1]) if chain else ""
        if got not in self._allowed or not certificate_names_host(chain[0], self._host):
            peer = transport.get_extra_info("peername") or ("", 0)
            raise aiohttp.ServerFingerprintMismatch(b"", bytes.fromhex(got), peer[0], peer[1])


# -- the fetcher ---------------------------------------------------------------------------


def _max_age(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Cache-Control")
    if not value:
        return None
    found = _MAX_AGE.search(value)
    if found is None:
        return None
    seconds = int(found.group(1)[:9])
    return seconds if MIN_HONOURED_MAX_AGE <= seconds <= MAX_HONOURED_MAX_AGE else None


def _json_object(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise IdpCommunicationError("The identity provider sent malformed JSON.") from None
    if not isinstance(value, dict):
        raise IdpCommunicationError("The identity provider sent malformed JSON.")
    return value


class _TooLargeError(Exception):
    """A response body went over :data:`MAX_RESPONSE_BYTES`."""


class JwksFetcher:
    """Fetches a provider's discovery document and JWKS with aiohttp (one client session).

    ``session`` is a seam for tests; by default one is created on first use, with the
    :class:`GuardedResolver` and the timeouts of this module.
    """

    def __init__(
        self,
        cfg: FederationConfig,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        total_timeout: float = TOTAL_TIMEOUT_SECONDS,
        max_bytes: int = MAX_RESPONSE_BYTES,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._allow_http = cfg.allow_http_issuers
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_bytes = max_bytes
        self._resolver = resolver
        self._tls = ssl.create_default_context()
        if cfg.ca_bundle:
            self._tls.load_verify_locations(cafile=cfg.ca_bundle)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver or GuardedResolver(self._allow_http),
                limit=64,
                ttl_dns_cache=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self._total_timeout,
                    connect=self._connect_timeout,
                    sock_connect=self._connect_timeout,
                ),
                trust_env=False,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
        return self._session

    async def close(self) -> None:
        """Close the client session (idempotent)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __call__(self, issuer: str, thumbprints: tuple[str, ...]) -> FetchedKeys:
        """Fetch ``issuer``'s discovery document, then its JWKS (A8, A9)."""
        try:
            async with asyncio.timeout(self._total_timeout):
                return await self._fetch(issuer, thumbprints)
        except TimeoutError:
            log.info("oidc fetch timed out issuer_host=%s", _host(issuer))
            raise IdpCommunicationError() from None

    async def _fetch(self, issuer: str, thumbprints: tuple[str, ...]) -> FetchedKeys:
        discovery_url = issuer.rstrip("/") + DISCOVERY_PATH
        body, _ = await self.get(discovery_url, thumbprints)
        discovery = _json_object(body)
        if discovery.get("issuer") != issuer:
            log.info("oidc discovery names another issuer issuer_host=%s", _host(issuer))
            raise IdpCommunicationError(
                "The identity provider's discovery document names a different issuer."
            )
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IdpCommunicationError("The identity provider's discovery document has no keys.")
        body, headers = await self.get(jwks_uri, thumbprints)
        jwks = _json_object(body)
        raw = jwks.get("keys")
        if not isinstance(raw, list):
            raise IdpCommunicationError("The identity provider's key set is malformed.")
        keys = tuple(k for k in raw[:MAX_KEYS] if isinstance(k, dict))
        return FetchedKeys(keys, _max_age(headers))

    async def get(self, url: str, thumbprints: tuple[str, ...]) -> tuple[bytes, Mapping[str, str]]:
        """GET ``url`` under every rule of A8; return the body and headers of the 200 answer."""
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            parts = check_url(current, self._allow_http)
            status, headers, body = await self._once(current, parts, thumbprints)
            if status in _REDIRECTS:
                location = headers.get("Location")
                if hop == MAX_REDIRECTS or not location:
                    break
                target = urljoin(current, location)
                moved = check_url(target, self._allow_http)
                same_place = (moved.hostname, moved.port) == (parts.hostname, parts.port)
                if not same_place or (moved.scheme != "https" and not self._allow_http):
                    break
                current = target
                continue
            if status != 200:
                log.info("oidc fetch answered status=%s host=%s", status, parts.hostname)
                raise IdpCommunicationError()
            return body, headers
        log.info("oidc fetch redirected too often or elsewhere host=%s", _host(url))
        raise IdpCommunicationError()

    async def _once(
        self, url: str, parts: SplitResult, thumbprints: tuple[str, ...]
    ) -> tuple[int, Mapping[str, str], bytes]:
        try:
            try:
                return await self._request(url, self._tls)
            except aiohttp.ClientConnectorCertificateError:
                if parts.scheme != "https" or not thumbprints:
                    raise
                # Not trusted by the CA store: trusted only by the provider's thumbprints.
                return await self._request(url, ThumbprintCheck(thumbprints, parts.hostname or ""))
        except _TooLargeError:
            log.info("oidc response too large host=%s", parts.hostname)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("oidc fetch failed host=%s error=%s", parts.hostname, type(exc).__name__)
        raise IdpCommunicationError()

    async def _request(
        self, url: str, tls: ssl.SSLContext | aiohttp.Fingerprint
    ) -> tuple[int, Mapping[str, str], bytes]:
        async with self._client().get(url, ssl=tls, allow_redirects=False) as resp:
            if resp.content_length is not None and resp.content_length > self._max_bytes:
                raise _TooLargeError()
            body = bytearray()
            if resp.status == 200:
                async for chunk in resp.content.iter_chunked(16384):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise _TooLargeError()
            headers = {k: v for k, v in resp.headers.items()}
            return resp.status, headers, bytes(body)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "-"
    except ValueError:
        return "-"


# -- the cache -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    keys: tuple[JsonObject, ...] | None = None
    fetched_at: float = 0.0
    expires_at: float = 0.0
    version: int = 0
    kid_refresh_at: float = -math.inf
    retry_at: float = -math.inf


class JwksCache:
    """Per-provider JWKS cache with TTL, rate-limited unknown-``kid`` refresh and stale serving.

    ``fetch`` is the network seam (a :class:`JwksFetcher` by default); times come from
    ``clock.monotonic()``. Implements ``broker.service.federation.KeySource``.
    """

    def __init__(self, cfg: FederationConfig, clock: Clock, fetch: Fetch | None = None) -> None:
        self._clock = clock
        self._ttl = float(max(cfg.jwks_cache_seconds, 1))
        self._min_refresh = float(max(cfg.jwks_min_refresh_seconds, 0))
        self._stale_max = float(max(cfg.jwks_stale_max_seconds, 0))
        self._owned: JwksFetcher | None = None
        if fetch is None:
            self._owned = JwksFetcher(cfg)
            fetch = self._owned
        self._fetch: Fetch = fetch
        self._entries: OrderedDict[tuple[str, tuple[str, ...]], _Entry] = OrderedDict()

    def _entry(self, ident: tuple[str, tuple[str, ...]]) -> _Entry:
        entry = self._entries.get(ident)
        if entry is None:
            entry = _Entry()
            self._entries[ident] = entry
            while len(self._entries) > MAX_CACHED_PROVIDERS:
                oldest = next(iter(self._entries))
                if self._entries[oldest].lock.locked():
                    break
                del self._entries[oldest]
        else:
            self._entries.move_to_end(ident)
        return entry

    async def keys(
        self, issuer: str, thumbprints: tuple[str, ...], *, refresh: bool = False
    ) -> Sequence[JsonObject]:
        """Return the provider's keys, fetching when the cache cannot answer.

        ``refresh`` (a token named an unknown ``kid``) refetches fresh keys only if no such
        refetch happened in the last ``jwks_min_refresh_seconds``. Raises
        ``IdpCommunicationError`` when there are no keys to serve.
        """
        ident = (issuer, tuple(sorted({t.lower() for t in thumbprints})))
        entry = self._entry(ident)
        JWKS_CACHE.lookups += 1
        now = self._clock.monotonic()
        if entry.keys is not None and now < entry.expires_at and not refresh:
            return entry.keys
        seen = entry.version
        async with entry.lock:
            now = self._clock.monotonic()
            held = entry.keys
            if held is not None and entry.version != seen:
                return held  # another request fetched while this one waited
            fresh = held is not None and now < entry.expires_at
            if held is not None and fresh:
                if not refresh or now - entry.kid_refresh_at < self._min_refresh:
                    return held
            if now < entry.retry_at:
                return self._stale_or_fail(entry, now, issuer)
            if fresh:
                entry.kid_refresh_at = now
            JWKS_CACHE.misses += 1
            try:
                fetched = await self._fetch(issuer, ident[1])
            except IdpCommunicationError:
                entry.retry_at = self._clock.monotonic() + FAILED_FETCH_RETRY_SECONDS
                return self._stale_or_fail(entry, self._clock.monotonic(), issuer)
            done = self._clock.monotonic()
            ttl = float(fetched.max_age) if fetched.max_age is not None else self._ttl
            entry.keys = fetched.keys
            entry.fetched_at = done
            entry.expires_at = done + ttl
            entry.version += 1
            entry.retry_at = -math.inf
            return entry.keys

    def _stale_or_fail(self, entry: _Entry, now: float, issuer: str) -> Sequence[JsonObject]:
        if entry.keys is not None and now < entry.fetched_at + max(
            entry.expires_at - entry.fetched_at, self._stale_max
        ):
            log.warning("oidc keys served stale issuer_host=%s", _host(issuer))
            return entry.keys
        raise IdpCommunicationError()

    async def close(self) -> None:
        """Close the fetcher this cache created (an injected one is the caller's)."""
        if self._owned is not None:
            await self._owned.close()
