"""Unit tests: OIDC provider URLs (``broker.core.oidc``): checks, canonical form, id and ARN."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.core.oidc import (
    INVALID_URL,
    MAX_URL_LENGTH,
    NO_SCHEME,
    NOT_HTTPS,
    OidcUrlError,
    is_thumbprint,
    normalize_issuer_url,
    provider_arn,
    provider_id,
    split_provider_arn,
)

ACCOUNT = "123456789012"


# -- accepted URLs and their canonical form ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://server.example.com", "https://server.example.com"),
        ("https://token.actions.githubusercontent.com", "https://token.actions.githubusercontent.com"),
        (
            "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
            "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
        ),
        # Scheme and host are case-insensitive in a URL: folded. The path is kept as given.
        ("HTTPS://Server.Example.COM/Tenant/ABC", "https://server.example.com/Tenant/ABC"),
        # A trailing slash is part of the identity (Auth0 issuers end with one).
        ("https://acme.eu.auth0.com/", "https://acme.eu.auth0.com/"),
        ("https://example.com/a/b/", "https://example.com/a/b/"),
        ("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
         "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"),
        ("https://example.com/a%2Fb/~user", "https://example.com/a%2Fb/~user"),
        ("https://198.51.100.7", "https://198.51.100.7"),
        ("https://[2001:DB8::1]/x", "https://[2001:db8::1]/x"),
        ("https://intranet-issuer", "https://intranet-issuer"),
        ("https://10.1.2.3/realms/corp", "https://10.1.2.3/realms/corp"),
    ],
)  # fmt: skip
def test_accepted_urls_are_canonicalised(url: str, canonical: str) -> None:
    assert normalize_issuer_url(url, allow_http=False) == canonical
    assert normalize_issuer_url(url, allow_http=True) == canonical


def test_trailing_slash_variants_stay_distinct() -> None:
    bare = normalize_issuer_url("https://example.com/tenant", allow_http=False)
    slash = normalize_issuer_url("https://example.com/tenant/", allow_http=False)
    assert bare != slash
    assert provider_id(bare) == "example.com/tenant"
    assert provider_id(slash) == "example.com/tenant/"


def test_path_case_is_kept_host_case_is_folded() -> None:
    upper = normalize_issuer_url("https://EXAMPLE.com/ID/Abc", allow_http=False)
    lower = normalize_issuer_url("https://example.com/id/abc", allow_http=False)
    assert upper == "https://example.com/ID/Abc"
    assert upper != lower


# -- refused URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "example.com",  # no scheme
        "example",
        "",
        "https://",  # no host
        "https:///path",
        "://example.com",
        "https://" + "a" * 240 + ".com/" + "b" * 20,  # longer than the model's 255
    ],
)
@pytest.mark.parametrize("allow_http", [False, True])
def test_malformed_urls(url: str, allow_http: bool) -> None:
    with pytest.raises(OidcUrlError) as err:
        normalize_issuer_url(url, allow_http=allow_http)
    assert err.value.malformed
    assert err.value.message == NO_SCHEME


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "HTTP://example.com",
        "ftp://example.com",
        "wss://example.com",
    ],
)
def test_only_https_without_allow_http(url: str) -> None:
    with pytest.raises(OidcUrlError) as err:
        normalize_issuer_url(url, allow_http=False)
    assert not err.value.malformed
    assert err.value.message == NOT_HTTPS


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@example.com",
        "https://user@example.com",
        "https://example.com?x=1",
        "https://example.com/path?x=1",
        "https://example.com#frag",
        "https://exa_mple.com",
        "https://-example.com",
        "https://example-.com",
        "https://example..com",
        "https://example.com.",
        "https://" + "a" * 64 + ".com",
        "https://example.com//double",
        "https://example.com/a//b",
        "https://example.com/./a",
        "https://example.com/a/..",
        "https://example.com/a b",
        "https://example.com/\u00e9",
        "https://ex\u00e4mple.com",
        "https://example.com/a\\b",
        "https://example.com/%zz",
        "https://example.com/a%2",
        "https://example.com/<script>",
        "https://example.com/a\tb",
        "https://[::1",
        "https://[not-v6]",
        "https://[fe80::1%25eth0]",
        "https://[2001:db8::1]x",
        # Numeric host names resolvers read as IPv4: only canonical dotted quads are addresses.
        "https://127.1",
        "https://0x7f.0.0.1",
        "https://0x7f000001",
        "https://2130706433",
        "https://127.000.000.001",
        "https://example.123",
        "https://256.1.1.1",
        # Addresses no issuer can have.
        "https://0.0.0.0",
        "https://0.1.2.3",
        "https://224.0.0.1",
        "https://[::]",
        "https://[ff02::1]",
    ],
)
@pytest.mark.parametrize("allow_http", [False, True])
def test_invalid_urls(url: str, allow_http: bool) -> None:
    with pytest.raises(OidcUrlError) as err:
        normalize_issuer_url(url, allow_http=allow_http)
    assert not err.value.malformed
    assert err.value.message.startswith(INVALID_URL.rstrip("."))


# -- allow_http_issuers ---------------------------------------------------------------------------


LOCAL_URLS = [
    ("https://localhost/realms/x", "https://localhost/realms/x"),
    ("https://issuer.localhost", "https://issuer.localhost"),
    ("https://127.0.0.1/x", "https://127.0.0.1/x"),
    ("https://127.8.9.10", "https://127.8.9.10"),
    ("https://169.254.169.254/latest", "https://169.254.169.254/latest"),
    ("https://[::1]/x", "https://[::1]/x"),
    ("https://[FE80::1]", "https://[fe80::1]"),
    ("https://[::ffff:127.0.0.1]", "https://[::ffff:7f00:1]"),
]


@pytest.mark.parametrize(("url", "canonical"), LOCAL_URLS)
def test_loopback_and_link_local_need_allow_http(url: str, canonical: str) -> None:
    with pytest.raises(OidcUrlError) as err:
        normalize_issuer_url(url, allow_http=False)
    assert not err.value.malformed
    assert err.value.message.startswith(INVALID_URL)
    assert normalize_issuer_url(url, allow_http=True) == canonical


@pytest.mark.parametrize(
    ("url", "canonical", "pid"),
    [
        ("http://127.0.0.1:8080/realms/x", "http://127.0.0.1:8080/realms/x",
         "127.0.0.1:8080/realms/x"),
        ("HTTP://LocalHost:9000", "http://localhost:9000", "localhost:9000"),
        ("http://[::1]:8443/", "http://[::1]:8443/", "[::1]:8443/"),
        ("https://issuer.example.com:8443/t", "https://issuer.example.com:8443/t",
         "issuer.example.com:8443/t"),
        ("https://issuer.example.com:443", "https://issuer.example.com:443",
         "issuer.example.com:443"),
        ("http://keycloak:8080/realms/dev", "http://keycloak:8080/realms/dev",
         "keycloak:8080/realms/dev"),
    ],
)  # fmt: skip
def test_allow_http_accepts_http_and_ports(url: str, canonical: str, pid: str) -> None:
    with pytest.raises(OidcUrlError):
        normalize_issuer_url(url, allow_http=False)
    assert normalize_issuer_url(url, allow_http=True) == canonical
    assert provider_id(canonical) == pid
    assert provider_arn(ACCOUNT, canonical) == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{pid}"


def test_port_without_allow_http_is_named() -> None:
    with pytest.raises(OidcUrlError) as err:
        normalize_issuer_url("https://example.com:8443", allow_http=False)
    assert err.value.message == f"{INVALID_URL} The URL must not contain a port number."


@pytest.mark.parametrize("port", ["0", "65536", "99999", "08080", "", "80a", "-1", "1:2"])
def test_bad_ports(port: str) -> None:
    with pytest.raises(OidcUrlError):
        normalize_issuer_url(f"http://127.0.0.1:{port}/x", allow_http=True)


def test_largest_and_smallest_port() -> None:
    assert normalize_issuer_url("http://h:1", allow_http=True) == "http://h:1"
    assert normalize_issuer_url("http://h:65535", allow_http=True) == "http://h:65535"


def test_url_length_limit() -> None:
    base = "https://example.com/"
    fits = base + "a" * (MAX_URL_LENGTH - len(base))
    assert normalize_issuer_url(fits, allow_http=False) == fits
    with pytest.raises(OidcUrlError):
        normalize_issuer_url(fits + "a", allow_http=False)


# -- provider id, ARN ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "pid"),
    [
        ("https://server.example.com", "server.example.com"),
        ("https://oidc.eks.us-east-1.amazonaws.com/id/ABC",
         "oidc.eks.us-east-1.amazonaws.com/id/ABC"),
        ("https://acme.eu.auth0.com/", "acme.eu.auth0.com/"),
        ("HTTPS://Example.COM/Path", "example.com/Path"),
    ],
)  # fmt: skip
def test_provider_id_and_arn(url: str, pid: str) -> None:
    assert provider_id(url) == pid
    arn = provider_arn(ACCOUNT, url)
    assert arn == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{pid}"
    assert split_provider_arn(arn) == (ACCOUNT, pid)


def test_provider_id_rejects_non_urls() -> None:
    with pytest.raises(OidcUrlError):
        provider_id("server.example.com")


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "server.example.com",
        f"arn:aws:iam::{ACCOUNT}:role/r",
        f"arn:aws:iam::{ACCOUNT}:oidc-provider/",
        f"arn:aws:iam::{ACCOUNT}:oidc-provider",
        f"arn:aws:iam::{ACCOUNT}:saml-provider/x",
        f"arn:aws:iam:us-east-1:{ACCOUNT}:oidc-provider/x",
        f"arn:aws-cn:iam::{ACCOUNT}:oidc-provider/x",
        f"arn:aws:sts::{ACCOUNT}:oidc-provider/x",
        "arn:aws:iam:::oidc-provider/x",
    ],
)
def test_split_provider_arn_rejects(arn: str) -> None:
    assert split_provider_arn(arn) is None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("3768084dfb3d2b68b7897bf5f565da8efEXAMPLE", False),
        ("3768084dfb3d2b68b7897bf5f565da8ef0aaaaaa", True),
        ("3768084DFB3D2B68B7897BF5F565DA8EF0AAAAAA", True),
        ("a" * 39, False),
        ("a" * 41, False),
        ("", False),
        ("g" * 40, False),
    ],
)
def test_thumbprints(text: str, ok: bool) -> None:
    assert is_thumbprint(text) is ok


# -- properties ---------------------------------------------------------------------------------

# Labels resolvers could read as numbers are not names (see test_invalid_urls).
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: re.fullmatch(r"[0-9]+|0x[0-9a-f]*", s) is None
)
_host = st.lists(_label, min_size=1, max_size=4).map(".".join)
_segment = st.text(alphabet=string.ascii_letters + string.digits + "-._~:@!$&'()*+,;=", min_size=1,
                   max_size=8).filter(lambda s: s not in (".", ".."))  # fmt: skip
_path = st.lists(_segment, max_size=4).map(lambda xs: "".join("/" + x for x in xs))
_slash = st.sampled_from(["", "/"])


@given(host=_host, path=_path, slash=_slash, upper=st.booleans())
def test_canonical_form_is_a_fixed_point(host: str, path: str, slash: str, upper: bool) -> None:
    url = f"https://{host.upper() if upper else host}{path}{slash if path or slash else ''}"
    canonical = normalize_issuer_url(url, allow_http=False)
    assert normalize_issuer_url(canonical, allow_http=False) == canonical
    assert canonical == f"https://{host}{path}{slash if path or slash else ''}"
    assert provider_id(canonical) == canonical[len("https://") :]
    assert provider_id(url) == provider_id(canonical)


@given(st.text(max_size=80))
def test_anything_is_refused_or_safe(text: str) -> None:
    for allow_http in (False, True):
        try:
            canonical = normalize_issuer_url(text, allow_http=allow_http)
        except OidcUrlError:
            continue
        assert canonical.startswith("https://") or (allow_http and canonical.startswith("http://"))
        rest = canonical.split("://", 1)[1]
        assert not any(ch in rest for ch in "?#@ \\")
        assert all("\x21" <= ch <= "\x7e" for ch in canonical)
        assert normalize_issuer_url(canonical, allow_http=allow_http) == canonical


@given(st.from_regex(r"https?://[a-zA-Z0-9.:\[\]@/?#%_-]{0,40}", fullmatch=True))
def test_url_like_text_is_refused_or_canonical(text: str) -> None:
    try:
        canonical = normalize_issuer_url(text, allow_http=True)
    except OidcUrlError:
        return
    assert normalize_issuer_url(canonical, allow_http=True) == canonical
    assert split_provider_arn(provider_arn(ACCOUNT, canonical)) == (ACCOUNT, provider_id(canonical))
