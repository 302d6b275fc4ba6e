"""Service: AssumeRoleWithWebIdentity: verify an OIDC token, decide the trust policy, mint.

A web identity token is accepted only when every rule of spec/security.md section A holds:

1. Shape first, before any key or network work: three base64url segments (a five-segment
   JWE is refused), a JOSE header of at most :data:`MAX_HEADER_CHARS` characters, header and
   claims that are JSON objects without duplicate member names or deep nesting, an ``alg``
   from the configured allow-list (asymmetric algorithms only: never ``none`` nor ``HS*``), no
   ``crit``, no nested token (``cty: JWT``), an opaque ``kid`` of sane length, and the
   required claims ``iss``, ``sub``, ``aud``, ``exp``, ``iat`` with their JSON types.
2. ``iss`` names an OIDC provider registered in the **role's** account, compared as the exact
   registered string (no trailing-slash or prefix tolerance).
3. The signing key comes from that provider's JWKS alone, chosen by ``kid`` and checked
   against the token's ``alg`` (``kty``/``crv``, the JWK's own ``alg``, ``use``, RSA size).
   ``jku``, ``x5u``, ``jwk`` and ``x5c`` header parameters are never looked at. An unknown
   ``kid`` asks the key source for one rate-limited refetch.
4. The signature is checked by pyjwt with the explicit allow-list; ``aud`` must contain a
   registered client id (and ``azp`` must be one when ``aud`` lists several); ``exp``,
   ``nbf`` and ``iat`` pass with the configured leeway, measured on the broker's clock.
5. The role's trust policy alone decides, with the caller matched as the ``Federated``
   principal ``arn:aws:iam::ACCT:oidc-provider/<host/path>`` and the token's claims as the
   condition keys ``<host/path>:sub``, ``:aud``, ``:oaud``, ``:azp``, ``:amr``, ``:email``
   (spec/iam-policy.md section 9.2). Session tags from the
   ``https://aws.amazon.com/tags`` claim also need ``sts:TagSession``, and a
   ``https://aws.amazon.com/source_identity`` claim needs ``sts:SetSourceIdentity``.
6. The session is minted by :meth:`StsService.mint_role_session`.

Error messages never contain the token, its claims or the provider's keys (A21). pyjwt's
exceptions are translated to the STS codes here, in :func:`map_jwt_error`, and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    InvalidSubjectError,
    MissingRequiredClaimError,
    PyJWKClientError,
    PyJWKError,
    PyJWTError,
)

from broker.clock import Clock
from broker.config import FederationConfig
from broker.core.arn import parse_arn
from broker.core.policy import (
    CallerKind,
    CompiledPolicy,
    ContextValue,
    Decision,
    PolicyKind,
    RequestContext,
    compile_policy,
    evaluate_trust,
    normalize_keys,
    parse_policy,
)
from broker.errors import (
    AccessDeniedError,
    ExpiredIdentityTokenError,
    IdpCommunicationError,
    IdpRejectedClaimError,
    InvalidIdentityTokenError,
    InvalidParameterValueError,
    ValidationError,
    WebIdentityError,
)
from broker.service.authz import REQUEST_FACTS
from broker.service.sts import ROLE_SESSION_DEFAULT_SECONDS, IssuedSession, StsService
from broker.store.base import Store

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 4
MAX_TOKEN_CHARS = 20000
"""``WebIdentityToken`` length bounds of the STS model (A17)."""
MAX_HEADER_CHARS = 8192
"""Longest encoded JOSE header accepted (A17)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of objects/arrays accepted in the header or the claims (A17)."""
MAX_KID_CHARS = 256
"""Longest ``kid`` accepted (A5)."""
MAX_LEEWAY_SECONDS = 300
"""Upper bound of ``[federation] leeway_seconds`` (A13)."""
MAX_TOKEN_LIFETIME_SECONDS = 86400
"""A token whose ``exp - iat`` exceeds this is refused (A13)."""
MAX_EPOCH_SECONDS = 253402300799
"""9999-12-31T23:59:59Z: time claims beyond it are refused as malformed (A10)."""
MIN_RSA_BITS = 2048
"""RSA keys shorter than this are ignored (A3)."""
MAX_SUBJECT_CHARS = 255
"""Longest ``sub`` STS reports as ``SubjectFromWebIdentityToken``."""
MAX_SESSION_TAGS = 50
TRUST_CACHE_SIZE = 1024

SAFE_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The only algorithms ever accepted, whatever the configuration says (A1, A2)."""
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat")
TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
GOOGLE_PROVIDER = "accounts.google.com"
ACTION = "sts:AssumeRoleWithWebIdentity"
NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"

_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
_TAG_KEY = re.compile(r"[\w\s_.:/=+\-@]+")
_TAG_VALUE = re.compile(r"[\w\s_.:/=+\-@]*")

JsonObject = Mapping[str, object]
"""A decoded JSON object (a JWK, a JOSE header, a claims set)."""


# -- collaborators -------------------------------------------------------------------------


class OidcProviderView(Protocol):
    """What federation needs to know about a registered OIDC provider."""

    @property
    def arn(self) -> str:
        """``arn:aws:iam::ACCT:oidc-provider/<host[:port]/path>``."""
        ...

    @property
    def url(self) -> str:
        """The provider URL as registered (the exact ``iss`` its tokens carry)."""
        ...

    @property
    def client_ids(self) -> tuple[str, ...]:
        """Registered audiences."""
        ...

    @property
    def thumbprints(self) -> tuple[str, ...]:
        """SHA-1 thumbprints trusted for the provider's TLS certificate chain."""
        ...


class ProviderDirectory(Protocol):
    """Finds the OIDC provider an account registered for an issuer (no authorization)."""

    async def find(self, account_id: str, issuer: str) -> OidcProviderView | None:
        """Return the provider of ``account_id`` for ``issuer``, or ``None``."""
        ...


class KeySource(Protocol):
    """Serves a provider's JSON Web Keys (``broker.idp.JwksCache`` over HTTPS).

    Raises ``IdpCommunicationError`` when no usable key set can be had. ``refresh`` asks for a
    refetch because a token named an unknown ``kid``; the source may refuse to refetch that
    often and answer with the keys it has.
    """

    async def keys(
        self, issuer: str, thumbprints: tuple[str, ...], *, refresh: bool = False
    ) -> Sequence[JsonObject]:
        """Return the provider's current keys (each a JWK object)."""
        ...

    async def close(self) -> None:
        """Release network resources."""
        ...


# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebIdentityInput:
    """AssumeRoleWithWebIdentity parameters (already checked against the model)."""

    role_arn: str
    session_name: str
    token: str = field(repr=False)
    duration: int | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token whose shape passed every check but whose signature is not yet verified."""

    text: str = field(repr=False)
    header: JsonObject = field(repr=False)
    claims: JsonObject = field(repr=False)
    alg: str
    kid: str | None
    issuer: str


@dataclass(frozen=True, slots=True)
class WebIdentity:
    """The verified identity of a token's bearer, as the trust policy sees it."""

    provider_arn: str
    provider_id: str
    issuer: str
    subject: str
    audience: str
    context: Mapping[str, ContextValue]
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    source_identity: str | None = None


@dataclass(frozen=True, slots=True)
class WebIdentitySession:
    """What AssumeRoleWithWebIdentity answers with."""

    issued: IssuedSession
    identity: WebIdentity


# -- pure checks ---------------------------------------------------------------------------


def _invalid(message: str) -> InvalidIdentityTokenError:
    return InvalidIdentityTokenError(message)


def _b64decode(segment: str) -> bytes:
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise _invalid("The web identity token is not a well-formed JWT.")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("The web identity token is not a well-formed JWT.") from None


class _DuplicateMemberError(ValueError):
    """A JSON object names the same member twice."""


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in pairs:
        if name in out:
            raise _DuplicateMemberError(name)
        out[name] = value
    return out


def _no_constants(name: str) -> object:
    raise ValueError(name)  # NaN / Infinity are not JSON


def json_depth(value: object) -> int:
    """Return the nesting depth of a decoded JSON value (a scalar is 0, ``{}`` is 1)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def parse_json_object(data: bytes) -> dict[str, object]:
    """Decode a strict JSON object: UTF-8, no duplicate members, no NaN, bounded depth."""
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_unique_members, parse_constant=_no_constants
        )
    except _DuplicateMemberError:
        raise _invalid("The web identity token repeats a member name.") from None
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise _invalid("The web identity token is not a well-formed JWT.") from None
    if not isinstance(value, dict):
        raise _invalid("The web identity token is not a well-formed JWT.")
    if json_depth(value) > MAX_JSON_DEPTH:
        raise _invalid("The web identity token nests JSON too deeply.")
    return value


def allowed_algorithms(configured: Sequence[str]) -> frozenset[str]:
    """Return the configured algorithms that are safe for web identity (A1, A2).

    .. warning::
       The result is what every signature check uses; it never comes from a token. HMAC
       algorithms and ``none`` are dropped even if configured.
    """
    return frozenset(a for a in configured if a in SAFE_ALGORITHMS)


def _is_time(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and 0 <= value <= MAX_EPOCH_SECONDS


def _check_claim_types(claims: JsonObject) -> None:
    for name in REQUIRED_CLAIMS:
        if name not in claims:
            raise _invalid(f"The web identity token has no '{name}' claim.")
    iss, sub, aud = claims["iss"], claims["sub"], claims["aud"]
    if not isinstance(iss, str) or not iss:
        raise _invalid("The 'iss' claim must be a non-empty string.")
    if not isinstance(sub, str) or not sub:
        raise _invalid("The 'sub' claim must be a non-empty string.")
    if isinstance(aud, list):
        if not aud or not all(isinstance(a, str) for a in aud):
            raise _invalid("The 'aud' claim must be a string or a non-empty array of strings.")
    elif not isinstance(aud, str):
        raise _invalid("The 'aud' claim must be a string or a non-empty array of strings.")
    for name in ("exp", "iat", "nbf"):
        if name in claims and not _is_time(claims[name]):
            raise _invalid(f"The '{name}' claim must be a number of seconds since the epoch.")
    if "azp" in claims and not isinstance(claims["azp"], str):
        raise _invalid("The 'azp' claim must be a string.")


def parse_token(token: str, algorithms: frozenset[str]) -> UnverifiedToken:
    """Check a token's shape, header and claim types; no key or network work (A1, A4-A17).

    Raises ``InvalidIdentityTokenError`` for anything that is not a compact JWS with an
    allowed asymmetric ``alg`` and the required claims.
    """
    text = token.strip()
    if not MIN_TOKEN_CHARS <= len(text) <= MAX_TOKEN_CHARS:
        raise _invalid("The web identity token has an invalid length.")
    parts = text.split(".")
    if len(parts) == 5:
        raise _invalid("Encrypted (JWE) web identity tokens are not supported.")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise _invalid("The web identity token is not a well-formed JWT.")
    if len(parts[0]) > MAX_HEADER_CHARS:
        raise _invalid("The web identity token's header is too large.")
    header = parse_json_object(_b64decode(parts[0]))
    claims = parse_json_object(_b64decode(parts[1]))
    _b64decode(parts[2])
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise _invalid("The web identity token's signing algorithm is not accepted.")
    if "crit" in header:
        raise _invalid("The web identity token has critical header parameters.")
    if "b64" in header and header["b64"] is not True:
        raise _invalid("The web identity token has an unsupported payload encoding.")
    cty = header.get("cty")
    if (isinstance(cty, str) and cty.upper() == "JWT") or "enc" in header or "zip" in header:
        raise _invalid("Nested or encrypted web identity tokens are not supported.")
    kid = header.get("kid")
    if kid is not None and (
        not isinstance(kid, str) or len(kid) > MAX_KID_CHARS or _CONTROL.search(kid)
    ):
        raise _invalid("The web identity token's key id is malformed.")
    _check_claim_types(claims)
    issuer = claims["iss"]
    assert isinstance(issuer, str)
    return UnverifiedToken(text, header, claims, alg, kid, issuer)


def _rsa_bits(jwk: JsonObject) -> int:
    n = jwk.get("n")
    if not isinstance(n, str) or not _B64URL.fullmatch(n) or len(n) % 4 == 1:
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def key_fits(jwk: JsonObject, alg: str) -> bool:
    """Whether ``jwk`` may verify a signature made with ``alg`` (A3)."""
    use = jwk.get("use")
    if use is not None and use != "sig":
        return False
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return False
    own = jwk.get("alg")
    if own is not None and own != alg:
        return False
    kty = jwk.get("kty")
    if alg.startswith(("RS", "PS")):
        return kty == "RSA" and _rsa_bits(jwk) >= MIN_RSA_BITS
    if alg in _EC_CURVES:
        return kty == "EC" and jwk.get("crv") == _EC_CURVES[alg]
    if alg == "EdDSA":
        return kty == "OKP" and jwk.get("crv") in _OKP_CURVES
    return False


class UnknownKidError(Exception):
    """The provider's key set has no key with the token's ``kid`` (a refetch may help)."""


def select_key(keys: Sequence[JsonObject], alg: str, kid: str | None) -> JsonObject:
    """Return the JWK that must verify a token with ``alg`` and ``kid`` (A3).

    Raises :class:`UnknownKidError` when no key carries ``kid``, and
    ``InvalidIdentityTokenError`` when the key found does not fit ``alg``, or when the token
    names no ``kid`` and the set does not hold exactly one fitting key.
    """
    if kid is None:
        fitting = [k for k in keys if key_fits(k, alg)]
        if len(keys) == 1 and len(fitting) == 1:
            return fitting[0]
        raise _invalid("The web identity token names no key id and the provider has several keys.")
    named = [k for k in keys if k.get("kid") == kid]
    if not named:
        raise UnknownKidError()
    for key in named:
        if key_fits(key, alg):
            return key
    raise _invalid("The provider's key does not fit the web identity token's algorithm.")


def map_jwt_error(exc: PyJWTError) -> WebIdentityError:
    """Translate a pyjwt exception into the STS error a client sees (never a 5xx)."""
    match exc:
        case ExpiredSignatureError():
            return ExpiredIdentityTokenError()
        case PyJWKClientError():
            return IdpCommunicationError()
        case InvalidSubjectError():
            return IdpRejectedClaimError("The 'sub' claim was rejected.")
        case InvalidAudienceError():
            return _invalid("Incorrect token audience.")
        case InvalidIssuerError():
            return _invalid("The web identity token's issuer does not match the provider.")
        case ImmatureSignatureError() | InvalidIssuedAtError():
            return _invalid("The web identity token is not valid yet.")
        case MissingRequiredClaimError():
            return _invalid("The web identity token lacks a required claim.")
        case InvalidSignatureError():
            return _invalid("The web identity token's signature is not valid.")
        case InvalidAlgorithmError():
            return _invalid("The web identity token's signing algorithm is not accepted.")
        case InvalidKeyError() | PyJWKError():
            return _invalid("The provider's key cannot verify the web identity token.")
        case DecodeError():
            return _invalid("The web identity token is not a well-formed JWT.")
        case _:
            return _invalid("The web identity token could not be validated.")


def verify_signature(
    token: UnverifiedToken,
    jwk: JsonObject,
    algorithms: frozenset[str],
    issuer: str,
    audiences: Sequence[str],
) -> None:
    """Verify the signature with pyjwt (explicit allow-list; the key bound to one ``alg``).

    Issuer, audience and required claims are checked by pyjwt too; time claims are checked
    by :func:`check_times` on the broker's clock.
    """
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=token.alg)
        jwt.PyJWT().decode_complete(
            token.text,
            key=key,
            algorithms=sorted(algorithms),
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": True,
                "verify_iss": True,
                "verify_sub": True,
                "verify_jti": True,
                "require": list(REQUIRED_CLAIMS),
                "enforce_minimum_key_length": True,
            },
            audience=list(audiences),
            issuer=issuer,
        )
    except PyJWTError as exc:
        raise map_jwt_error(exc) from None


def check_times(claims: JsonObject, now: float, leeway: float) -> None:
    """Apply A13: ``exp``/``nbf``/``iat`` with ``leeway`` seconds, and a 24 h lifetime cap."""
    exp, iat = claims["exp"], claims["iat"]
    assert isinstance(exp, int | float) and isinstance(iat, int | float)
    if exp <= now - leeway:
        raise ExpiredIdentityTokenError()
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + leeway:
        raise _invalid("The web identity token is not valid yet.")
    if iat > now + leeway:
        raise _invalid("The web identity token was issued in the future.")
    if exp - iat > MAX_TOKEN_LIFETIME_SECONDS:
        raise _invalid("The web identity token's lifetime is too long.")


def audiences(claims: JsonObject) -> list[str]:
    """The token's ``aud`` as a list of strings (a single string is one value)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def check_audience(claims: JsonObject, client_ids: Sequence[str]) -> str:
    """Return the client id the token is for (A12), or raise ``InvalidIdentityTokenError``."""
    values = audiences(claims)
    registered = set(client_ids)
    matched = [a for a in values if a in registered]
    if not matched:
        raise _invalid("Incorrect token audience.")
    azp = claims.get("azp")
    if len(values) > 1 and isinstance(azp, str) and azp not in registered:
        raise _invalid("Incorrect token authorized party.")
    return matched[0]


def issuer_url(provider_url: str) -> str:
    """The exact ``iss`` a provider's tokens carry (an ``https://`` URL when none is given)."""
    return provider_url if "://" in provider_url else f"https://{provider_url}"


def provider_id_of(provider_arn: str) -> str:
    """``host[:port]/path`` of a provider ARN: the prefix of its condition keys."""
    return provider_arn.split(":oidc-provider/", 1)[1] if ":oidc-provider/" in provider_arn else ""


def _session_tags(claims: JsonObject) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    raw = claims.get(TAGS_CLAIM)
    if raw is None:
        return (), ()
    bad = IdpRejectedClaimError(f"The '{TAGS_CLAIM}' claim is malformed.")
    if not isinstance(raw, dict):
        raise bad
    principal_tags = raw.get("principal_tags", {})
    transitive_raw = raw.get("transitive_tag_keys", [])
    if not isinstance(principal_tags, dict) or not isinstance(transitive_raw, list):
        raise bad
    tags: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in principal_tags.items():
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str) or not 1 <= len(key) <= 128 or len(value) > 256:
            raise bad
        if not _TAG_KEY.fullmatch(key) or not _TAG_VALUE.fullmatch(value):
            raise bad
        if key.lower() in seen:
            raise bad
        seen.add(key.lower())
        tags.append((key, value))
    if len(tags) > MAX_SESSION_TAGS:
        raise bad
    transitive: list[str] = []
    for key in transitive_raw:
        if not isinstance(key, str) or key.lower() not in seen:
            raise bad
        transitive.append(key)
    return tuple(tags), tuple(dict.fromkeys(transitive))


def _source_identity(claims: JsonObject) -> str | None:
    raw = claims.get(SOURCE_IDENTITY_CLAIM)
    if raw is None:
        return None
    if not isinstance(raw, str) or not 2 <= len(raw) <= 64 or not _SESSION_NAME.fullmatch(raw):
        raise IdpRejectedClaimError(f"The '{SOURCE_IDENTITY_CLAIM}' claim is malformed.")
    return raw


def build_identity(
    token: UnverifiedToken, provider: OidcProviderView, audience: str
) -> WebIdentity:
    """Turn verified claims into the identity and trust-policy keys (iam-policy.md section 9.2)."""
    claims = token.claims
    subject = claims["sub"]
    assert isinstance(subject, str)
    if len(subject) > MAX_SUBJECT_CHARS or _CONTROL.search(subject):
        raise IdpRejectedClaimError("The 'sub' claim was rejected.")
    pid = provider_id_of(provider.arn)
    azp = claims.get("azp")
    aud = claims["aud"]
    # Google's convention, which AWS follows: ``:aud`` is the authorized party when set.
    aud_key = azp if isinstance(azp, str) and pid == GOOGLE_PROVIDER else audience
    keys: dict[str, ContextValue] = {
        f"{pid}:sub": subject,
        f"{pid}:aud": aud_key,
        f"{pid}:oaud": aud if isinstance(aud, str) else tuple(audiences(claims)),
    }
    if isinstance(azp, str):
        keys[f"{pid}:azp"] = azp
    amr = claims.get("amr")
    if isinstance(amr, str):
        keys[f"{pid}:amr"] = [amr]
    elif isinstance(amr, list) and all(isinstance(a, str) for a in amr):
        keys[f"{pid}:amr"] = [a for a in amr if isinstance(a, str)]
    email = claims.get("email")
    if isinstance(email, str):
        keys[f"{pid}:email"] = email
    tags, transitive = _session_tags(claims)
    return WebIdentity(
        provider_arn=provider.arn,
        provider_id=pid,
        issuer=token.issuer,
        subject=subject,
        audience=aud_key,
        context=keys,
        tags=tags,
        transitive_tag_keys=transitive,
        source_identity=_source_identity(claims),
    )


# -- the use case --------------------------------------------------------------------------


class FederationService:
    """AssumeRoleWithWebIdentity: token verification, trust decision, minting."""

    def __init__(
        self,
        store: Store,
        sts: StsService,
        providers: ProviderDirectory,
        keys: KeySource,
        clock: Clock,
        cfg: FederationConfig,
    ) -> None:
        self._store = store
        self._sts = sts
        self._providers = providers
        self._keys = keys
        self._clock = clock
        self._algorithms = allowed_algorithms(cfg.algorithms)
        self._leeway = float(min(max(cfg.leeway_seconds, 0), MAX_LEEWAY_SECONDS))
        self._trust_cache: OrderedDict[str, CompiledPolicy] = OrderedDict()

    @property
    def algorithms(self) -> frozenset[str]:
        """The signing algorithms accepted (configured, minus anything unsafe)."""
        return self._algorithms

    async def close(self) -> None:
        """Release the key source's network resources."""
        await self._keys.close()

    async def verify_token(self, account_id: str, token: str) -> WebIdentity:
        """Verify ``token`` for a role of ``account_id``; return the bearer's identity.

        Raises ``InvalidIdentityTokenError``, ``ExpiredIdentityTokenError``,
        ``IdpRejectedClaimError`` or ``IdpCommunicationError`` (spec/security.md section A).
        """
        parsed = parse_token(token, self._algorithms)
        provider = await self._providers.find(account_id, parsed.issuer)
        issuer = issuer_url(provider.url) if provider is not None else ""
        if provider is None or parsed.issuer != issuer:
            # The issuer is the token's own text: it is not echoed (A21).
            raise _invalid("No OpenIDConnect provider found in your account for the token issuer.")
        thumbprints = tuple(provider.thumbprints)
        keys = await self._keys.keys(issuer, thumbprints)
        try:
            jwk = select_key(keys, parsed.alg, parsed.kid)
        except UnknownKidError:
            keys = await self._keys.keys(issuer, thumbprints, refresh=True)
            try:
                jwk = select_key(keys, parsed.alg, parsed.kid)
            except UnknownKidError:
                raise _invalid("The web identity token was signed by an unknown key.") from None
        verify_signature(parsed, jwk, self._algorithms, issuer, provider.client_ids)
        check_times(parsed.claims, self._clock.now().timestamp(), self._leeway)
        audience = check_audience(parsed.claims, provider.client_ids)
        return build_identity(parsed, provider, audience)

    def _trust_policy(self, text: str) -> CompiledPolicy:
        hit = self._trust_cache.get(text)
        if hit is not None:
            self._trust_cache.move_to_end(text)
            return hit
        compiled = compile_policy(parse_policy(text, PolicyKind.TRUST))
        self._trust_cache[text] = compiled
        if len(self._trust_cache) > TRUST_CACHE_SIZE:
            self._trust_cache.popitem(last=False)
        return compiled

    def trust_context(
        self, action: str, role_arn: str, identity: WebIdentity, extra: Mapping[str, ContextValue]
    ) -> RequestContext:
        """The request context one trust decision sees (the caller is the federated bearer)."""
        keys: dict[str, ContextValue] = {
            "aws:FederatedProvider": identity.provider_arn,
            "aws:PrincipalType": "WebIdentityUser",
        }
        facts = REQUEST_FACTS.get()
        if facts is not None:
            keys["aws:SourceIp"] = facts.source_ip
            keys["aws:SecureTransport"] = "true" if facts.secure_transport else "false"
            keys["aws:CurrentTime"] = facts.current_time.strftime("%Y-%m-%dT%H:%M:%SZ")
            keys["aws:EpochTime"] = str(int(facts.current_time.timestamp()))
            if facts.user_agent:
                keys["aws:UserAgent"] = facts.user_agent
        keys.update(identity.context)
        keys.update(extra)
        return RequestContext(
            action=action,
            resource=role_arn,
            principal_arn="",
            principal_account="",
            keys=normalize_keys(keys),
            caller=CallerKind.FEDERATED,
            federated_provider=identity.provider_arn,
        )

    async def assume_role_with_web_identity(self, inp: WebIdentityInput) -> WebIdentitySession:
        """Verify the token, decide the role's trust policy, then mint the session."""
        if inp.provider_id is not None:
            raise InvalidParameterValueError(
                "ProviderId is only for OAuth 2.0 access tokens of www.amazon.com and "
                "graph.facebook.com; omit it for OpenID Connect ID tokens."
            )
        arn = parse_arn(inp.role_arn)
        if arn is None or arn.service != "iam" or not arn.resource.startswith("role/"):
            raise ValidationError(f"{inp.role_arn} is invalid")
        account = arn.account
        identity = await self.verify_token(account, inp.token)
        role = await self._sts.read_role(account, arn.resource.rsplit("/", 1)[1])
        if role is None or role["arn"] != inp.role_arn:
            raise AccessDeniedError(NOT_AUTHORIZED)
        extra: dict[str, ContextValue] = {"sts:RoleSessionName": inp.session_name}
        actions = [ACTION]
        if identity.tags:
            extra.update({f"aws:RequestTag/{k}": v for k, v in identity.tags})
            extra["aws:TagKeys"] = [k for k, _ in identity.tags]
            if identity.transitive_tag_keys:
                extra["sts:TransitiveTagKeys"] = list(identity.transitive_tag_keys)
            actions.append("sts:TagSession")
        if identity.source_identity is not None:
            extra["sts:SourceIdentity"] = identity.source_identity
            actions.append("sts:SetSourceIdentity")
        trust = ("trust", self._trust_policy(str(role["trust"])))
        for action in actions:
            ctx = self.trust_context(action, inp.role_arn, identity, extra)
            if evaluate_trust(ctx, trust).decision is not Decision.ALLOW:
                log.info("web identity refused by the trust policy action=%s", action)
                raise AccessDeniedError(f"Not authorized to perform {action}")
        issued = await self._sts.mint_role_session(
            role,
            inp.session_name,
            inp.duration or ROLE_SESSION_DEFAULT_SECONDS,
            caller_arn=identity.provider_arn,
            policy=inp.policy,
            policy_arns=inp.policy_arns,
            tags=identity.tags,
            transitive=identity.transitive_tag_keys,
            source_identity=identity.source_identity,
        )
        return WebIdentitySession(issued, identity)
