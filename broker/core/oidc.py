"""Core: OIDC provider URLs (pure): checks, the canonical form, the provider id and its ARN.

An IAM OIDC provider is named by its issuer URL. AWS drops the ``https://`` and uses the rest,
``host/path``, as the *provider id*: the ARN is ``arn:aws:iam::ACCT:oidc-provider/<id>`` and the
trust-policy condition keys of its tokens are ``<id>:aud``, ``<id>:sub``, ... (spec/aws-wire.md
section 3.1). A token is accepted only when its ``iss`` names a registered provider exactly, so
the canonical form changes nothing a client could tell apart by string comparison except what is
case-insensitive in a URL anyway (the scheme and the host):

* the scheme and the host are lower-cased, everything else is kept as given;
* a trailing ``/`` is part of the identity, as on AWS (an Auth0 tenant's issuer
  ``https://acme.eu.auth0.com/`` is the provider ``acme.eu.auth0.com/`` with condition keys
  ``acme.eu.auth0.com/:aud``); ``https://h`` and ``https://h/`` are two providers, and a token
  whose ``iss`` differs from the registered URL by a trailing slash matches neither way;
* no user info, query or fragment; no empty, ``.`` or ``..`` path segment (a single trailing
  slash excepted); only printable ASCII.

``[federation] allow_http_issuers`` (``allow_http`` here) relaxes three rules for tests and
labs (DESIGN section 10): ``http://`` URLs, loopback and link-local hosts (``localhost``,
``127.0.0.0/8``, ``::1``, ``169.254.0.0/16``, ``fe80::/10``) and an explicit port are then
accepted. The provider id keeps the port (``127.0.0.1:8443/realms/x``), and so does the
condition-key prefix. The scheme is not part of the id, so ``http://h/p`` and ``https://h/p``
cannot both be registered.

Host names that only look like names but are read as IPv4 addresses by resolvers (``127.1``,
``0x7f.0.0.1``, ``2130706433``) are refused: an IP address must be written as a canonical
dotted quad, so the loopback check cannot be walked around. What a DNS name resolves to is not
known here; the fetcher of discovery documents checks the address it connects to.
"""

from __future__ import annotations

import ipaddress
import re

from broker.core.arn import PARTITION

PROVIDER_ARN_TYPE = "oidc-provider"
"""Resource type of OIDC provider ARNs."""

MAX_URL_LENGTH = 255
"""Longest provider URL the IAM model allows (``OpenIDConnectProviderUrlType``)."""

MAX_CLIENT_ID_LENGTH = 255
"""Longest client id (audience) the IAM model allows (``clientIDType``)."""

THUMBPRINT_LENGTH = 40
"""A thumbprint is the hex SHA-1 of a certificate: exactly 40 characters."""

OIDC_PROVIDERS_PER_ACCOUNT = 100
"""IAM quota: OIDC providers per account (IAM User Guide, "IAM and AWS STS quotas")."""

CLIENT_IDS_PER_PROVIDER = 100
"""IAM quota: client ids (audiences) per OIDC provider."""

THUMBPRINTS_PER_PROVIDER = 5
"""IAM quota: certificate thumbprints per OIDC provider."""

INVALID_URL = "Invalid Open ID Connect Provider URL."
NOT_HTTPS = "Invalid Open ID Connect Provider URL. The URL must begin with https://."
NO_SCHEME = "Invalid Open ID Connect Provider URL"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# RFC 3986 ``pchar`` without ``%`` (percent-escapes are checked on their own).
_SEGMENT = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@]*")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}")
_MAX_HOST_LENGTH = 253


class OidcUrlError(ValueError):
    """Raised when a provider URL (or a token's issuer) is not acceptable.

    ``malformed`` is true when the text is not shaped like a URL at all (no ``scheme://``, no
    host): IAM answers those with ``ValidationError`` and every other refusal with
    ``InvalidInput``.
    """

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.malformed = malformed


def _local_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for the addresses ``allow_http`` unlocks: loopback and link-local."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return _local_address(addr.ipv4_mapped)
    return addr.is_loopback or addr.is_link_local


def _never_an_issuer(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for addresses no issuer can have (unspecified, multicast, ``0.0.0.0/8``)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return _never_an_issuer(addr.ipv4_mapped)
    if isinstance(addr, ipaddress.IPv4Address) and addr.packed[0] == 0:
        return True
    return addr.is_unspecified or addr.is_multicast


def _host(text: str, *, allow_http: bool) -> str:
    """Check a host (name, dotted quad or bracketed IPv6) and return its canonical form."""
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    if text.startswith("["):
        if not text.endswith("]") or "%" in text:
            raise OidcUrlError(INVALID_URL)
        try:
            addr = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise OidcUrlError(INVALID_URL) from None
        host = f"[{addr.compressed}]"
    else:
        host = text.lower()
        labels = host.split(".")
        if len(host) > _MAX_HOST_LENGTH or not all(_LABEL.fullmatch(x) for x in labels):
            raise OidcUrlError(INVALID_URL)
        if not _NUMERIC_LABEL.fullmatch(labels[-1]):
            if not allow_http and (host == "localhost" or host.endswith(".localhost")):
                raise OidcUrlError(f"{INVALID_URL} The host is a loopback address.")
            return host
        # Resolvers read a numeric last label as (part of) an IPv4 address: demand the
        # canonical dotted quad, so that 127.1 or 0x7f.1 cannot pass for a public name.
        try:
            addr = ipaddress.IPv4Address(host)
        except ValueError:
            raise OidcUrlError(INVALID_URL) from None
        if str(addr) != host:  # pragma: no cover - IPv4Address accepts only canonical quads
            raise OidcUrlError(INVALID_URL)
    if _never_an_issuer(addr):
        raise OidcUrlError(INVALID_URL)
    if not allow_http and _local_address(addr):
        raise OidcUrlError(f"{INVALID_URL} The host is a loopback or link-local address.")
    return host


def _path(text: str) -> str:
    """Check the path (``""`` or ``/...``); returned unchanged."""
    if not text:
        return text
    segments = text[1:].split("/")
    for i, segment in enumerate(segments):
        if segment in (".", ".."):
            raise OidcUrlError(INVALID_URL)
        if not segment and i != len(segments) - 1:
            raise OidcUrlError(INVALID_URL)
        if not _SEGMENT.fullmatch(_ESCAPE.sub("", segment)):
            raise OidcUrlError(INVALID_URL)
    return text


def normalize_issuer_url(url: str, *, allow_http: bool) -> str:
    """Return the canonical form of a provider URL or token issuer, or raise ``OidcUrlError``.

    The result is ``https://host[:port][/path]`` (``http`` only with ``allow_http``) with the
    scheme and host lower-cased and the path exactly as given, trailing slash included. See the
    module docstring for every rule.

    .. warning::
       ``allow_http`` admits loopback and link-local issuers (a server could then be made to
       fetch keys from itself); it exists for tests and labs only.
    """
    if not url or len(url) > MAX_URL_LENGTH:
        raise OidcUrlError(NO_SCHEME, malformed=True)
    if any(not ("\x21" <= ch <= "\x7e") for ch in url):
        raise OidcUrlError(INVALID_URL)
    match = _SCHEME.match(url)
    if match is None:
        raise OidcUrlError(NO_SCHEME, malformed=True)
    scheme = match.group(1).lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise OidcUrlError(NOT_HTTPS)
    rest = url[match.end() :]
    if "?" in rest or "#" in rest:
        raise OidcUrlError(INVALID_URL)
    cut = rest.find("/")
    authority, path = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    if not authority:
        raise OidcUrlError(NO_SCHEME, malformed=True)
    if "@" in authority:
        raise OidcUrlError(INVALID_URL)
    port: str | None = None
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise OidcUrlError(INVALID_URL)
        host_text, after = authority[: close + 1], authority[close + 1 :]
        if after:
            if not after.startswith(":"):
                raise OidcUrlError(INVALID_URL)
            port = after[1:]
    elif ":" in authority:
        host_text, port = authority.split(":", 1)
    else:
        host_text = authority
    if port is not None:
        if not allow_http:
            raise OidcUrlError(f"{INVALID_URL} The URL must not contain a port number.")
        if not _PORT.fullmatch(port) or int(port) > 65535:
            raise OidcUrlError(INVALID_URL)
    if not host_text:
        raise OidcUrlError(NO_SCHEME, malformed=True)
    host = _host(host_text, allow_http=allow_http)
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{_path(path)}"


def provider_id(url: str) -> str:
    """Return ``host[:port][/path]`` of a provider URL: the ARN suffix and condition-key prefix.

    ``url`` is normally what :func:`normalize_issuer_url` returned; any acceptable URL gives the
    same id as its canonical form (``OidcUrlError`` for anything else).
    """
    canonical = normalize_issuer_url(url, allow_http=True)
    return canonical.split("://", 1)[1]


def provider_arn(account_id: str, url: str) -> str:
    """Return the ARN of the OIDC provider of ``url`` in ``account_id``."""
    return f"arn:{PARTITION}:iam::{account_id}:{PROVIDER_ARN_TYPE}/{provider_id(url)}"


def split_provider_arn(arn: str) -> tuple[str, str] | None:
    """Return ``(account id, provider id)`` of an OIDC provider ARN, or ``None``."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[:4] != ["arn", PARTITION, "iam", ""]:
        return None
    account, resource = parts[4], parts[5]
    prefix = f"{PROVIDER_ARN_TYPE}/"
    if not account or not resource.startswith(prefix) or len(resource) == len(prefix):
        return None
    return account, resource[len(prefix) :]


def is_thumbprint(text: str) -> bool:
    """True when ``text`` is a certificate thumbprint: 40 hexadecimal digits (any case)."""
    return _THUMBPRINT.fullmatch(text) is not None
