"""Core layer: identifiers in AWS's shapes (access key ids, secrets, unique ids, accounts).

Access key ids carry the owning account id in the layout described in
``spec/aws-wire.md`` section 4.2, so ``GetAccessKeyInfo`` and foreign tools can recover the
account without a lookup. Randomness comes in as an argument (``rng(n)`` returns ``n`` random
bytes; the default is :func:`secrets.token_bytes`), so tests can fix it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Callable

ACCESS_KEY_PREFIXES = frozenset({"AKIA", "ASIA"})
"""``AKIA``: long-term keys; ``ASIA``: temporary (session) keys."""

UNIQUE_ID_PREFIXES = frozenset({"AIDA", "AGPA", "AROA", "ANPA", "AIPA"})
"""Users, groups, roles, managed policies, instance profiles."""

ACCESS_KEY_ID_LENGTH = 20
SECRET_ACCESS_KEY_LENGTH = 40
UNIQUE_ID_LENGTH = 21

_SECRET_BYTES = 30  # 240 random bits -> exactly 40 base64 characters
_UNIQUE_ID_RANDOM_CHARS = 17
_ACCOUNT_MASK = 0x7FFFFFFFFF80
_ACCOUNT_LIMIT = 10**12
_ACCOUNT_FIRST = 10**11
_ACCOUNT_SPAN = _ACCOUNT_LIMIT - _ACCOUNT_FIRST  # 12-digit ids without a leading zero
_ACCOUNT_DRAW_BITS = 40
_ACCOUNT_DRAW_CEILING = (1 << _ACCOUNT_DRAW_BITS) // _ACCOUNT_SPAN * _ACCOUNT_SPAN
_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_KEY_ID_RE = re.compile(r"[A-Z]{4}[A-Z2-7]{16}")

Rng = Callable[[int], bytes]


def new_access_key_id(prefix: str, account_id: str, rng: Rng = secrets.token_bytes) -> str:
    """Return a new 20-character access key id for ``account_id``.

    ``prefix`` is ``"AKIA"`` or ``"ASIA"``. The 16 base32 characters after it encode the
    account id shifted over 7 random bits, followed by 4 random bytes (aws-wire.md 4.2).
    """
    if prefix not in ACCESS_KEY_PREFIXES:
        raise ValueError(f"access key prefix must be one of {sorted(ACCESS_KEY_PREFIXES)}")
    if not is_account_id(account_id):
        raise ValueError("account id must be 12 digits")
    low_bits = rng(1)[0] & 0x7F
    packed = ((int(account_id) << 7) | low_bits).to_bytes(6, "big") + rng(4)
    return prefix + base64.b32encode(packed).decode("ascii")


def account_from_access_key_id(access_key_id: str) -> str | None:
    """Decode the account id encoded in ``access_key_id``; ``None`` when it encodes none.

    Keys from before the encoding existed decode to meaningless numbers; the caller should
    consult its own key table first and use this as a fallback.
    """
    if _KEY_ID_RE.fullmatch(access_key_id) is None:
        return None
    try:
        raw = base64.b32decode(access_key_id[4:])
    except binascii.Error:
        return None
    account = (int.from_bytes(raw[:6], "big") & _ACCOUNT_MASK) >> 7
    if account >= _ACCOUNT_LIMIT:
        return None
    return f"{account:012d}"


def new_secret_access_key(rng: Rng = secrets.token_bytes) -> str:
    """Return a new 40-character secret access key drawn from 240 random bits."""
    return base64.b64encode(rng(_SECRET_BYTES)).decode("ascii")


def new_unique_id(prefix: str, rng: Rng = secrets.token_bytes) -> str:
    """Return a new 21-character unique id: ``prefix`` plus 17 characters of ``A-Z2-7``.

    ``prefix`` is one of :data:`UNIQUE_ID_PREFIXES` (``AIDA`` user, ``AGPA`` group, ``AROA``
    role, ``ANPA`` managed policy, ``AIPA`` instance profile).
    """
    if prefix not in UNIQUE_ID_PREFIXES:
        raise ValueError(f"unique id prefix must be one of {sorted(UNIQUE_ID_PREFIXES)}")
    # 11 bytes give 88 bits; the first 17 base32 characters use 85 of them.
    return prefix + base64.b32encode(rng(11)).decode("ascii")[:_UNIQUE_ID_RANDOM_CHARS]


def new_account_id(rng: Rng = secrets.token_bytes) -> str:
    """Return a uniformly random 12-digit account id whose first digit is not 0."""
    while True:
        draw = int.from_bytes(rng(_ACCOUNT_DRAW_BITS // 8), "big")
        if draw < _ACCOUNT_DRAW_CEILING:  # rejection sampling keeps the choice uniform
            return str(_ACCOUNT_FIRST + draw % _ACCOUNT_SPAN)


def is_account_id(text: str) -> bool:
    """Tell whether ``text`` is a 12-digit account id (leading zeros allowed)."""
    return _ACCOUNT_RE.fullmatch(text) is not None


_VARIANT = "89ab"


def request_id() -> str:
    """Return a random version-4 UUID text, for request and event ids.

    Same format as ``str(uuid.uuid4())`` at less than half the cost (no ``UUID`` object).
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
