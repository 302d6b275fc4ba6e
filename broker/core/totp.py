"""Core layer: RFC 6238 time-based one-time passwords for virtual MFA devices.

A virtual MFA device is a random seed shared with an authenticator app. Codes are HOTP
(RFC 4226: HMAC-SHA-1 and dynamic truncation) over the time step ``floor(t / 30)``, six digits,
which is what AWS virtual MFA devices and every common authenticator app use.

``CreateVirtualMFADevice`` hands the seed out as ``Base32StringSeed``: the RFC 4648 base32 text
of the seed, which the query protocol then sends base64-encoded as a blob. The seed is
:data:`SEED_BYTES` = 20 bytes (160 bits, the length RFC 4226 recommends for HMAC-SHA-1), so its
base32 text is exactly 32 characters and needs no ``=`` padding. Every function here takes
seeds of any length, so longer seeds (such as 40 bytes, 64 base32 characters) work the same;
authenticator apps accept either.

Pure: randomness comes in as an argument (``rng(n)`` returns ``n`` random bytes) and the time
as ``at``/``now`` (epoch seconds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import quote

Rng = Callable[[int], bytes]

SEED_BYTES = 20
"""Length of a new device seed (160 bits)."""

STEP_SECONDS = 30
"""Length of one TOTP time step."""

DIGITS = 6
"""Digits of a code (AWS ``AuthenticationCode``/``TokenCode`` are exactly 6 digits)."""

DEFAULT_WINDOW = 1
"""Steps accepted either side of the current one when checking a sign-in code (clock drift)."""

RESYNC_WINDOW = 8
"""Steps searched either side of now for two consecutive codes (enable / resync a device)."""


def new_seed(rng: Rng = secrets.token_bytes) -> bytes:
    """Return a new random device seed of :data:`SEED_BYTES` bytes."""
    seed = rng(SEED_BYTES)
    if len(seed) != SEED_BYTES:
        raise ValueError(f"rng must return {SEED_BYTES} bytes for a seed")
    return seed


def seed_base32(seed: bytes) -> str:
    """Return ``seed`` as upper-case RFC 4648 base32 text without ``=`` padding.

    This is the ``Base32StringSeed`` text (before the query protocol's base64 blob encoding)
    and the ``secret`` of :func:`otpauth_uri`; authenticator apps expect it unpadded.
    """
    return base64.b32encode(seed).decode("ascii").rstrip("=")


def otpauth_uri(seed: bytes, *, account: str, issuer: str) -> str:
    """Return the ``otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...`` provisioning URI.

    This is the text a QR code for the device encodes. Issuer and account are
    percent-encoded, so a ``:`` or ``@`` in either cannot change the label's meaning.
    """
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    return f"otpauth://totp/{label}?secret={seed_base32(seed)}&issuer={quote(issuer, safe='')}"


def _hotp(seed: bytes, counter: int, digits: int) -> str:
    mac = hmac.new(seed, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def totp_code(seed: bytes, at: int, *, step: int = STEP_SECONDS, digits: int = DIGITS) -> str:
    """Return the TOTP code of ``seed`` at epoch second ``at`` (RFC 6238, HMAC-SHA-1)."""
    if step <= 0:
        raise ValueError("step must be positive")
    if not 1 <= digits <= 9:
        raise ValueError("digits must be between 1 and 9")
    if at < 0:
        raise ValueError("time must not be negative")
    return _hotp(seed, at // step, digits)


def _well_formed(code: str) -> bool:
    return isinstance(code, str) and len(code) == DIGITS and code.isascii() and code.isdigit()


def verify_code(
    seed: bytes,
    code: str,
    *,
    now: int,
    window: int = DEFAULT_WINDOW,
    after_step: int | None = None,
) -> int | None:
    """Check a six-digit ``code`` against the steps within ``window`` of ``now``.

    Returns the time step it matched (the lowest, should two match), or ``None``. Steps at or
    before ``after_step`` (the last step a code of this device was accepted for) are refused,
    so a code cannot be used twice. A malformed code (not exactly six ASCII digits) gives
    ``None``. Every candidate is computed and compared in constant time, so the time taken
    does not depend on which step, if any, matched.
    """
    if not _well_formed(code) or window < 0:
        return None
    current = now // STEP_SECONDS
    expected = code.encode("ascii")
    matched: int | None = None
    for step in range(max(current - window, 0), current + window + 1):
        candidate = _hotp(seed, step, DIGITS).encode("ascii")
        equal = hmac.compare_digest(candidate, expected)
        fresh = after_step is None or step > after_step
        if equal and fresh and matched is None:
            matched = step
    return matched


def verify_consecutive(
    seed: bytes, code1: str, code2: str, *, now: int, window: int = RESYNC_WINDOW
) -> int | None:
    """Check two consecutive codes, as ``EnableMFADevice`` and ``ResyncMFADevice`` take them.

    Looks for a step ``s`` with ``code1`` at ``s`` and ``code2`` at ``s + 1``, where ``s + 1``
    lies within ``window`` steps of ``now``. Returns ``s + 1`` (the step to record as last used),
    or ``None`` when no such pair exists or either code is malformed.
    """
    if not (_well_formed(code1) and _well_formed(code2)) or window < 0:
        return None
    current = now // STEP_SECONDS
    first = code1.encode("ascii")
    second = code2.encode("ascii")
    low = max(current - window, 1)
    codes = {
        step: _hotp(seed, step, DIGITS).encode("ascii")
        for step in range(low - 1, current + window + 1)
    }
    matched: int | None = None
    for step in range(low, current + window + 1):
        first_ok = hmac.compare_digest(codes[step - 1], first)
        second_ok = hmac.compare_digest(codes[step], second)
        if first_ok and second_ok and matched is None:
            matched = step
    return matched
