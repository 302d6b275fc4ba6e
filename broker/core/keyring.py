"""Core layer: the master key and sealing of secrets at rest (AES-256-GCM).

Everything secret that reaches a store (secret access keys, TOTP seeds, token keys) is
sealed here first (spec E3): ``v1.<kid>.<urlsafe base64 of nonce + ciphertext>``. The ``kid``
names the master key without revealing it, so a store can tell which key sealed a record;
the version, the kid and the caller's associated data are all bound into the GCM tag.

Pure: randomness comes in as an argument (``rng(n)`` returns ``n`` random bytes).

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

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
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
