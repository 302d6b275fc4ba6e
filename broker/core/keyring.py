"""Core layer: the master key and sealing of secrets at rest (AES-256-GCM).

Everything secret that reaches a store (secret access keys, TOTP seeds, token keys) is
sealed here first (spec E3): ``v1.<kid>.<urlsafe base64 of nonce + ciphertext>``. The ``kid``
names the master key without revealing it, so a store can tell which key sealed a record;
the version, the kid and the caller's associated data are all bound into the GCM tag.

It also makes the asymmetric signing keys of the broker's own identity tokens (DESIGN
section 5: ``GetWebIdentityToken`` JWTs, published through ``/.well-known/jwks.json``): an
RSA-2048 key for ``RS256`` and a P-384 key for ``ES384``, each with a random ``kid``, kept as
PKCS#8 PEM (sealed before it reaches a store) and published as RFC 7517 JWKs.

Pure: randomness comes in as an argument (``rng(n)`` returns ``n`` random bytes); only the
private numbers of a new signing key come from OpenSSL's own CSPRNG, which offers no hook.

.. warning::
   ``aad`` must name what the sealed value belongs to (for example the record key), so a
   sealed value copied to another record fails to unseal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_BYTES = 32
"""Length of the master key (AES-256)."""

SEAL_VERSION = "v1"
"""Version tag at the start of every sealed text."""

NONCE_BYTES = 12
"""AES-GCM nonce length (96 bits, random per seal)."""

_TAG_BYTES = 16
_KID_CONTEXT = b"broker keyring kid v1\x00"
_SEAL_KEY_INFO = b"broker keyring seal v1"

Rng = Callable[[int], bytes]


class SealError(Exception):
    """Raised when a sealed text cannot be opened: tampered, wrong key, unknown kid, garbled."""


def generate_master_key(rng: Rng = secrets.token_bytes) -> str:
    """Return a new master key as base64 text of :data:`MASTER_KEY_BYTES` random bytes."""
    return base64.b64encode(rng(MASTER_KEY_BYTES)).decode("ascii")


def parse_master_key(text: str) -> bytes:
    """Decode a base64 master key (surrounding whitespace ignored) into its 32 bytes.

    Raises :class:`ValueError` with a message that never repeats the input.
    """
    compact = "".join(text.split())
    try:
        key = base64.b64decode(compact.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("master key must be base64 text") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ValueError(
            f"master key must decode to {MASTER_KEY_BYTES} bytes, got {len(key)} bytes"
        )
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        raw = text.encode("ascii")
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SealError("sealed value is garbled") from None
    # Only the canonical encoding is accepted, so every change to the text is detected.
    if _b64encode(data) != text:
        raise SealError("sealed value is garbled")
    return data


class Keyring:
    """Seals and unseals byte strings under one master key.

    ``kid`` is a short public name of the master key (8 hex characters of a domain-separated
    SHA-256), never the key itself. The AES key is derived from the master key with HKDF.
    """

    __slots__ = ("_aead", "_prefix", "_rng", "kid")

    kid: str

    def __init__(self, master_key: bytes, rng: Rng = secrets.token_bytes) -> None:
        """Build a keyring; ``master_key`` must be :data:`MASTER_KEY_BYTES` bytes."""
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError(f"master key must be {MASTER_KEY_BYTES} bytes")
        self.kid = hashlib.sha256(_KID_CONTEXT + master_key).hexdigest()[:8]
        seal_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_KEY_INFO
        ).derive(master_key)
        self._aead = AESGCM(seal_key)
        self._rng = rng
        self._prefix = f"{SEAL_VERSION}.{self.kid}."

    def _associated(self, aad: bytes) -> bytes:
        return self._prefix.encode("ascii") + aad

    def seal(self, plaintext: bytes, *, aad: bytes = b"") -> str:
        """Encrypt ``plaintext`` with a fresh random nonce, binding ``aad``, version and kid."""
        nonce = self._rng(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"rng must return {NONCE_BYTES} bytes for a nonce")
        sealed = self._aead.encrypt(nonce, plaintext, self._associated(aad))
        return self._prefix + _b64encode(nonce + sealed)

    def unseal(self, sealed: str, *, aad: bytes = b"") -> bytes:
        """Decrypt a text made by :meth:`seal` with the same ``aad``; raise :class:`SealError`."""
        version, sep1, rest = sealed.partition(".")
        kid, sep2, body = rest.partition(".")
        if not (sep1 and sep2) or version != SEAL_VERSION:
            raise SealError("sealed value has an unknown format")
        if kid != self.kid:
            raise SealError("sealed value names an unknown key id")
        data = _b64decode(body)
        if len(data) < NONCE_BYTES + _TAG_BYTES:
            raise SealError("sealed value is too short")
        try:
            return self._aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], self._associated(aad))
        except InvalidTag:
            raise SealError("sealed value failed authentication") from None

    def __repr__(self) -> str:
        return f"Keyring(kid={self.kid!r})"


# -- signing keys for identity tokens -----------------------------------------------------

SIGNING_ALGORITHMS = ("RS256", "ES384")
"""JWS algorithms of the broker's identity tokens: what the STS model allows for
``GetWebIdentityToken``'s ``SigningAlgorithm``."""

RSA_KEY_BITS = 2048
"""Modulus size of an ``RS256`` signing key."""

_RSA_PUBLIC_EXPONENT = 65537
_SIGNING_KID_BYTES = 8  # 16 hex characters
_P384_COORDINATE_BYTES = 48

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""A loaded signing key, as pyjwt takes it for ``jwt.encode``."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One identity-token signing key: ``kid``, JWS ``alg``, PKCS#8 PEM, creation time.

    ``private_pem`` is unencrypted: seal it with :meth:`Keyring.seal` before storing it.
    """

    kid: str
    alg: str
    private_pem: bytes = field(repr=False)
    created_at: int


def generate_signing_key(alg: str, *, now: int, rng: Rng = secrets.token_bytes) -> SigningKey:
    """Return a new signing key for ``alg`` (``RS256``: RSA-2048; ``ES384``: P-384).

    ``kid`` is 16 hex characters from ``rng``; ``now`` (epoch seconds) becomes ``created_at``.
    Raises :class:`ValueError` for an algorithm outside :data:`SIGNING_ALGORITHMS`.
    """
    private: PrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(
            public_exponent=_RSA_PUBLIC_EXPONENT, key_size=RSA_KEY_BITS
        )
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        raise ValueError(f"signing algorithm must be one of {list(SIGNING_ALGORITHMS)}")
    kid = rng(_SIGNING_KID_BYTES).hex()
    pem = private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return SigningKey(kid=kid, alg=alg, private_pem=pem, created_at=now)


def load_private_key(key: SigningKey) -> PrivateKey:
    """Load the private key of ``key``, checking that it fits ``key.alg``.

    Raises :class:`ValueError` when the PEM is unreadable or holds the wrong kind of key
    (not RSA of at least 2048 bits for ``RS256``, not P-384 for ``ES384``). Loading an RSA key
    checks it, which takes a moment: callers keep the result rather than reload it per token.
    """
    try:
        private = serialization.load_pem_private_key(key.private_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError("signing key PEM is unreadable") from None
    if key.alg == "RS256":
        if isinstance(private, rsa.RSAPrivateKey) and private.key_size >= RSA_KEY_BITS:
            return private
    elif key.alg == "ES384":
        if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
            private.curve, ec.SECP384R1
        ):
            return private
    else:
        raise ValueError(f"signing algorithm must be one of {list(SIGNING_ALGORITHMS)}")
    raise ValueError(f"signing key does not hold a key for {key.alg}")


def _b64_uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64encode(value.to_bytes(size, "big"))


def public_jwk(key: SigningKey) -> dict[str, str]:
    """Return the public half of ``key`` as an RFC 7517 JWK (RFC 7518 section 6 members).

    Always ``kty``, ``kid``, ``alg`` and ``use="sig"``; RSA adds ``n``/``e`` (minimal
    big-endian), EC adds ``crv="P-384"`` and ``x``/``y`` (48 bytes each); all base64url
    without padding. Raises :class:`ValueError` as :func:`load_private_key` does.
    """
    private = load_private_key(key)
    if isinstance(private, rsa.RSAPrivateKey):
        numbers = private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": key.kid,
            "alg": key.alg,
            "use": "sig",
            "n": _b64_uint(numbers.n),
            "e": _b64_uint(numbers.e),
        }
    point = private.public_key().public_numbers()
    return {
        "kty": "EC",
        "kid": key.kid,
        "alg": key.alg,
        "use": "sig",
        "crv": "P-384",
        "x": _b64_uint(point.x, _P384_COORDINATE_BYTES),
        "y": _b64_uint(point.y, _P384_COORDINATE_BYTES),
    }
