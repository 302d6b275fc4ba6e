"""Core layer: the self-contained session token that carries a temporary credential.

A session token holds everything needed to authenticate a request signed with temporary
credentials (DESIGN section 5, spec E1/E2), so any node checks it with the token keys alone and
no store read. Layout, before url-safe base64 without padding::

    version (1 byte) | len(kid) (1 byte) | kid | nonce (12 bytes) | AES-256-GCM(ciphertext + tag)

``version | len(kid) | kid`` is the GCM associated data, so the header cannot be changed
without failing the tag. The plaintext is the claims as compact JSON with short keys,
zlib-compressed; nothing of it (secret key, role ARN, session name) is readable without the key.

Key rotation (spec E2) works through ``kid``: :func:`open_session_token` asks a lookup
function for the key named in the token, so tokens made with an older key keep opening for as
long as the caller still returns that key, and fail once it is gone.

Pure: randomness comes in as an argument (``rng(n)`` returns ``n`` random bytes) and the
current time is the ``now`` argument.

.. warning::
   :class:`TokenExpiredError` is raised only after the GCM tag verified, so its ``claims`` are
   genuine; a forged or garbled token always gives :class:`TokenMalformedError`, which tells an
   attacker nothing about expiry.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

Rng = Callable[[int], bytes]

TOKEN_VERSION = 1
"""First byte of every token; bump when the layout or the claims encoding changes."""

TOKEN_KEY_BYTES = 32
"""Length of a token key's secret (AES-256)."""

NONCE_BYTES = 12
"""AES-GCM nonce length (96 random bits per token)."""

MAX_TOKEN_CHARS = 16384
"""Longest token text :func:`open_session_token` looks at; longer input is malformed unread."""

MAX_PACKED_BYTES = 2048
"""Compressed size of session policy + policy ARNs + session tags that counts as 100 %.

AWS documents the plaintext limits (2048 characters of session policies, 10 managed policy
ARNs, 50 tags of up to 128 + 256 characters) and a separate, undocumented "packed" limit that
``PackedPolicySize`` reports as a percentage. Here the packed size is the zlib (level 9) size of
the compact JSON of those three inputs, and 2048 bytes is 100 %. Typical content fits: a
2048-character policy of ordinary statements plus 50 short tags and 10 ARNs packs to roughly
half of it. 2048 characters of random printable ASCII pack to nearly 90 % alone and go over
together with 10 ARNs and 50 tags; random characters from the whole Latin-1 range go over
alone, as do 50 tags near their maximal lengths. 2048 bytes also bounds the token:
with everything else a token carries, a session at 100 % stays below 4096 characters, which
every SDK sends in a header without trouble.
"""

SESSION_KINDS = frozenset({"assumed-role", "federated-user", "session"})
"""``assumed-role`` (AssumeRole*), ``federated-user`` (GetFederationToken), ``session``
(GetSessionToken)."""

_TAG_BYTES = 16
_HEADER_FIXED = 2  # version byte + kid length byte
_KID_RE = re.compile(r"[a-z0-9]{4,32}")
_KID_RANDOM_BYTES = 5  # 10 hex characters
_SESSION_ID_RE = re.compile(r"[0-9a-f]{32}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
_MAX_PLAINTEXT_BYTES = 1 << 20  # bounded inflate, even though only sealed data gets here
_ZLIB_LEVEL = 9
# Enough base64 characters to cover the fixed header and the longest kid.
_PEEK_CHARS = ((_HEADER_FIXED + 32 + 2) // 3) * 4


class TokenError(Exception):
    """Base of every failure to open a session token."""


class TokenMalformedError(TokenError):
    """Raised when a token is garbled, truncated, names an unknown kid or fails its GCM tag."""


class TokenExpiredError(TokenError):
    """Raised when a genuine token (tag verified) is at or past its ``expires_at``."""

    def __init__(self, claims: SessionClaims) -> None:
        self.claims = claims
        super().__init__("session token has expired")


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a session token says about the temporary credential it carries.

    ``principal_arn``/``principal_id`` are what ``GetCallerIdentity`` reports (aws-wire.md
    section 2); ``issuer_arn``/``issuer_name`` name the role, or the user or root that asked.
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    account_id: str
    kind: str
    principal_arn: str
    principal_id: str
    issuer_arn: str
    issuer_name: str
    session_id: str
    issued_at: int
    expires_at: int
    mfa_authenticated: bool = False
    mfa_auth_time: int | None = None
    source_identity: str | None = None
    chain_depth: int = 0
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    session_policy: str | None = None
    session_policy_arns: tuple[str, ...] = ()
    source_ip: str | None = None


@dataclass(frozen=True, slots=True)
class TokenKey:
    """One token key: a public name ``kid`` and a 32-byte AES-256-GCM ``secret``.

    The AES-GCM context is built once per key object and lives as long as the key does, so
    opening tokens repeats no key set-up and nothing secret is cached at module level.
    """

    kid: str
    secret: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if _KID_RE.fullmatch(self.kid) is None:
            raise ValueError("token key id must be 4-32 characters of [a-z0-9]")
        if len(self.secret) != TOKEN_KEY_BYTES:
            raise ValueError(f"token key secret must be {TOKEN_KEY_BYTES} bytes")
        object.__setattr__(self, "_aead", AESGCM(self.secret))


def new_token_key(rng: Rng = secrets.token_bytes) -> TokenKey:
    """Return a new token key: a random 10-character hex ``kid`` and 32 random secret bytes."""
    kid = rng(_KID_RANDOM_BYTES).hex()
    secret = rng(TOKEN_KEY_BYTES)
    return TokenKey(kid=kid, secret=secret)


# -- claims encoding ---------------------------------------------------------------------


def _check_claims(claims: SessionClaims) -> str | None:
    """Return what is wrong with ``claims``, or ``None`` when they are well-formed."""
    required = (
        claims.access_key_id,
        claims.secret_access_key,
        claims.account_id,
        claims.principal_arn,
        claims.principal_id,
        claims.issuer_arn,
        claims.issuer_name,
    )
    if not all(required):
        return "a required claim is empty"
    if claims.kind not in SESSION_KINDS:
        return "unknown session kind"
    if _SESSION_ID_RE.fullmatch(claims.session_id) is None:
        return "session id must be 32 lowercase hex characters"
    if claims.expires_at < claims.issued_at:
        return "session expires before it is issued"
    if claims.chain_depth < 0:
        return "chain depth is negative"
    return None


def _encode_claims(claims: SessionClaims) -> bytes:
    record: dict[str, object] = {
        "a": claims.access_key_id,
        "s": claims.secret_access_key,
        "c": claims.account_id,
        "k": claims.kind,
        "p": claims.principal_arn,
        "u": claims.principal_id,
        "i": claims.issuer_arn,
        "n": claims.issuer_name,
        "d": claims.session_id,
        "t": claims.issued_at,
        "e": claims.expires_at,
    }
    # Defaults are left out: most sessions carry none of these, and every byte goes on the wire.
    if claims.mfa_authenticated:
        record["m"] = True
    if claims.mfa_auth_time is not None:
        record["mt"] = claims.mfa_auth_time
    if claims.source_identity is not None:
        record["si"] = claims.source_identity
    if claims.chain_depth:
        record["cd"] = claims.chain_depth
    if claims.tags:
        record["tg"] = [list(pair) for pair in claims.tags]
    if claims.transitive_tag_keys:
        record["tt"] = list(claims.transitive_tag_keys)
    if claims.session_policy is not None:
        record["sp"] = claims.session_policy
    if claims.session_policy_arns:
        record["pa"] = list(claims.session_policy_arns)
    if claims.source_ip is not None:
        record["ip"] = claims.source_ip
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode("utf-8"), _ZLIB_LEVEL)


class _BadClaims(Exception):
    """A decrypted claims record does not have the expected shape."""


def _str(record: Mapping[str, object], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise _BadClaims(key)
    return value


def _opt_str(record: Mapping[str, object], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadClaims(key)
    return value


def _int(record: Mapping[str, object], key: str, default: int | None = None) -> int:
    value = record.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _BadClaims(key)
    return value


def _str_list(record: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _BadClaims(key)
    return tuple(str(item) for item in value)


def _tag_list(record: Mapping[str, object], key: str) -> tuple[tuple[str, str], ...]:
    value = record.get(key, [])
    if not isinstance(value, list):
        raise _BadClaims(key)
    pairs: list[tuple[str, str]] = []
    for item in value:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], str)
        ):
            raise _BadClaims(key)
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def _decode_claims(compressed: bytes) -> SessionClaims:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(compressed, _MAX_PLAINTEXT_BYTES)
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise _BadClaims("compressed claims")
        record = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError):
        raise _BadClaims("claims encoding") from None
    if not isinstance(record, dict):
        raise _BadClaims("claims record")
    mfa = record.get("m", False)
    mfa_time = record.get("mt")
    if not isinstance(mfa, bool) or not (
        mfa_time is None or (isinstance(mfa_time, int) and not isinstance(mfa_time, bool))
    ):
        raise _BadClaims("mfa")
    claims = SessionClaims(
        access_key_id=_str(record, "a"),
        secret_access_key=_str(record, "s"),
        account_id=_str(record, "c"),
        kind=_str(record, "k"),
        principal_arn=_str(record, "p"),
        principal_id=_str(record, "u"),
        issuer_arn=_str(record, "i"),
        issuer_name=_str(record, "n"),
        session_id=_str(record, "d"),
        issued_at=_int(record, "t"),
        expires_at=_int(record, "e"),
        mfa_authenticated=mfa,
        mfa_auth_time=mfa_time,
        source_identity=_opt_str(record, "si"),
        chain_depth=_int(record, "cd", 0),
        tags=_tag_list(record, "tg"),
        transitive_tag_keys=_str_list(record, "tt"),
        session_policy=_opt_str(record, "sp"),
        session_policy_arns=_str_list(record, "pa"),
        source_ip=_opt_str(record, "ip"),
    )
    problem = _check_claims(claims)
    if problem is not None:
        raise _BadClaims(problem)
    return claims


# -- base64 ------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode_strict(text: str) -> bytes | None:
    """Decode canonical unpadded url-safe base64; ``None`` for anything else."""
    if _TOKEN_RE.fullmatch(text) is None or len(text) % 4 == 1:
        return None
    raw = text.encode("ascii")
    try:
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return None
    # The unused low bits of the last character are ignored by the decoder; requiring the
    # canonical form makes every change to the text a change to the bytes.
    if _b64encode(data) != text:
        return None
    return data


def _header(kid: str) -> bytes:
    return bytes((TOKEN_VERSION, len(kid))) + kid.encode("ascii")


# -- public API --------------------------------------------------------------------------


def seal_session_token(claims: SessionClaims, key: TokenKey, rng: Rng = secrets.token_bytes) -> str:
    """Encrypt ``claims`` under ``key`` into a header-safe session token.

    Raises :class:`ValueError` when the claims are not well-formed (empty required claim,
    unknown ``kind``, bad ``session_id``, expiry before issue) or ``rng`` returns a short nonce.
    """
    problem = _check_claims(claims)
    if problem is not None:
        raise ValueError(f"cannot seal session claims: {problem}")
    nonce = rng(NONCE_BYTES)
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"rng must return {NONCE_BYTES} bytes for a nonce")
    header = _header(key.kid)
    sealed = key._aead.encrypt(nonce, _encode_claims(claims), header)
    return _b64encode(header + nonce + sealed)


def open_session_token(
    token: str, keys: Callable[[str], TokenKey | None], *, now: int
) -> SessionClaims:
    """Authenticate and decrypt ``token``; return its claims.

    ``keys(kid)`` returns the token key with that id, or ``None`` when it is unknown (never
    created, or removed by rotation). ``now`` is the current epoch time in seconds.

    Raises :class:`TokenMalformedError` for anything that is not a genuine, intact token made
    with a key ``keys`` knows, and :class:`TokenExpiredError` (after the tag verified) when
    ``now >= claims.expires_at``.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise TokenMalformedError("session token is too long or not text")
    data = _b64decode_strict(token)
    if data is None:
        raise TokenMalformedError("session token is not canonical url-safe base64")
    if len(data) < _HEADER_FIXED or data[0] != TOKEN_VERSION:
        raise TokenMalformedError("session token has an unknown version")
    kid_end = _HEADER_FIXED + data[1]
    if len(data) < kid_end + NONCE_BYTES + _TAG_BYTES:
        raise TokenMalformedError("session token is truncated")
    try:
        kid = data[_HEADER_FIXED:kid_end].decode("ascii")
    except UnicodeDecodeError:
        raise TokenMalformedError("session token has a garbled key id") from None
    if _KID_RE.fullmatch(kid) is None:
        raise TokenMalformedError("session token has a garbled key id")
    key = keys(kid)
    if key is None or key.kid != kid:
        raise TokenMalformedError("session token names an unknown key id")
    nonce_end = kid_end + NONCE_BYTES
    try:
        compressed = key._aead.decrypt(data[kid_end:nonce_end], data[nonce_end:], data[:kid_end])
    except InvalidTag:
        raise TokenMalformedError("session token failed authentication") from None
    try:
        claims = _decode_claims(compressed)
    except _BadClaims:
        raise TokenMalformedError("session token carries malformed claims") from None
    if now >= claims.expires_at:
        raise TokenExpiredError(claims)
    return claims


class OpenedTokens:
    """A bounded memo of session tokens already opened, keyed by the exact token text.

    A client signs many requests with one session token; opening it (base64, AES-GCM,
    inflate, JSON, claim checks) is the largest cost of authenticating temporary
    credentials. An entry keeps the key object that opened the token and is used only while
    ``keys(kid)`` still returns that very object, so a retired or reloaded key is never
    trusted from memory; expiry is checked on every call. Oldest entries go first when full.
    """

    def __init__(self, max_entries: int = 8192) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._entries: dict[str, tuple[TokenKey, SessionClaims]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def open(
        self, token: str, keys: Callable[[str], TokenKey | None], *, now: int
    ) -> SessionClaims:
        """Like :func:`open_session_token`, from memory when ``token`` was opened before."""
        hit = self._entries.get(token)
        if hit is not None:
            key, claims = hit
            if keys(key.kid) is key:
                if now >= claims.expires_at:
                    raise TokenExpiredError(claims)
                return claims
            del self._entries[token]
        claims = open_session_token(token, keys, now=now)
        opener = keys(token_kid(token) or "")
        if opener is not None:
            if len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]
            self._entries[token] = (opener, claims)
        return claims


def token_kid(token: str) -> str | None:
    """Return the key id named in ``token`` without authenticating it; ``None`` if unreadable.

    For metrics and rotation checks only: the kid is not verified until the token is opened.
    """
    head = token[:_PEEK_CHARS]
    head = head[: len(head) - len(head) % 4]
    if not head or _TOKEN_RE.fullmatch(head) is None:
        return None
    data = base64.urlsafe_b64decode(head)
    if len(data) < _HEADER_FIXED or data[0] != TOKEN_VERSION:
        return None
    kid_bytes = data[_HEADER_FIXED : _HEADER_FIXED + data[1]]
    if len(kid_bytes) != data[1]:
        return None
    kid = kid_bytes.decode("ascii", errors="replace")
    return kid if _KID_RE.fullmatch(kid) else None


def packed_policy_size(
    session_policy: str | None,
    policy_arns: Sequence[str],
    tags: Sequence[tuple[str, str]],
) -> int:
    """Return the packed size in bytes of session policy, policy ARNs and session tags.

    The packed form is the zlib (level 9) compression of their compact JSON; 0 when all three
    are empty. See :data:`MAX_PACKED_BYTES`.
    """
    if not session_policy and not policy_arns and not tags:
        return 0
    record = [session_policy or "", list(policy_arns), [[key, value] for key, value in tags]]
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return len(zlib.compress(text.encode("utf-8"), _ZLIB_LEVEL))


def packed_policy_percent(
    session_policy: str | None,
    policy_arns: Sequence[str],
    tags: Sequence[tuple[str, str]],
) -> int:
    """Return AWS's ``PackedPolicySize``: the packed size as a percentage of the limit.

    Rounded up, so the result is above 100 exactly when the packed size exceeds
    :data:`MAX_PACKED_BYTES`; the caller then fails the request with ``PackedPolicyTooLarge``.
    0 when there is no session policy, no policy ARN and no tag.
    """
    size = packed_policy_size(session_policy, policy_arns, tags)
    return -(-size * 100 // MAX_PACKED_BYTES)
