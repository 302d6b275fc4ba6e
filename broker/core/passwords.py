"""Core: console password hashing and the account password policy rules (pure, no I/O).

Hashes are Argon2id in the PHC string format (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``),
so each hash carries its own cost parameters and salt: a hash made under older settings still
verifies after the settings change, and :func:`needs_rehash` tells when to renew it. The cost
parameters are inputs (:class:`HashParams`); the shipped defaults meet spec/security.md E4
(Argon2id, memory >= 19 MiB, t >= 2, p = 1).

The password policy mirrors IAM's ``PasswordPolicy`` (``UpdateAccountPasswordPolicy``): length,
character classes (AWS's symbol set ``! @ # $ % ^ & * ( ) _ + - = [ ] { } | '``), reuse
prevention over the last N passwords, and maximum age with an optional hard expiry. Without an
account policy, AWS's default policy applies: at least 8 characters, of at least three of the
four character classes.

Every function here is synchronous and CPU-bound; hashing and verifying take as long as the
cost parameters say, so callers on an event loop run them in a worker thread.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

DEFAULT_TIME_COST = 2
"""Argon2id passes (spec/security.md E4: at least 2)."""

DEFAULT_MEMORY_KIB = 19 * 1024
"""Argon2id memory in KiB (spec/security.md E4: at least 19 MiB)."""

DEFAULT_PARALLELISM = 1
"""Argon2id lanes (spec/security.md E4: 1)."""

MIN_MEMORY_KIB_PER_LANE = 8
"""Argon2's own lower bound on memory: 8 KiB per lane."""

SALT_BYTES = 16
HASH_BYTES = 32

PASSWORD_MAX_LENGTH = 128
"""Longest password IAM accepts (``passwordType``)."""

SYMBOLS = frozenset("!@#$%^&*()_+-=[]{}|'")
"""The characters AWS counts as symbols in a password policy."""

MIN_LENGTH_LOWEST, MIN_LENGTH_HIGHEST = 6, 128
"""Range of ``MinimumPasswordLength`` (``minimumPasswordLengthType``)."""

POLICY_DEFAULT_MIN_LENGTH = 6
"""``MinimumPasswordLength`` of a policy set without one (AWS's documented default)."""

MAX_AGE_LOWEST, MAX_AGE_HIGHEST = 1, 1095
"""Range of ``MaxPasswordAge`` in days (``maxPasswordAgeType``)."""

REUSE_LOWEST, REUSE_HIGHEST = 1, 24
"""Range of ``PasswordReusePrevention`` (``passwordReusePreventionType``)."""

HISTORY_KEPT = REUSE_HIGHEST
"""Previous hashes kept per user: enough for the strictest reuse prevention."""

DEFAULT_POLICY_MIN_LENGTH = 8
DEFAULT_POLICY_MIN_CLASSES = 3
"""AWS's default password policy (no account policy): 8 characters, 3 of 4 classes."""

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class HashParams:
    """Argon2id cost parameters (``[signin] hash_time_cost``, ``hash_memory_kib``, ...)."""

    time_cost: int = DEFAULT_TIME_COST
    memory_kib: int = DEFAULT_MEMORY_KIB
    parallelism: int = DEFAULT_PARALLELISM

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1:
            raise ValueError("time_cost and parallelism must be at least 1")
        if self.memory_kib < MIN_MEMORY_KIB_PER_LANE * self.parallelism:
            raise ValueError("memory_kib must be at least 8 KiB per lane")


@functools.lru_cache(maxsize=8)
def _hasher(params: HashParams) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=HASH_BYTES,
        salt_len=SALT_BYTES,
        type=Type.ID,
    )


def hash_password(password: str, params: HashParams) -> str:
    """Return the Argon2id PHC string of ``password`` with a fresh random salt.

    .. warning:: ``password`` is a secret: never log it, and drop it once hashed.
    """
    return _hasher(params).hash(password)


def verify_password(encoded: str, password: str) -> bool:
    """Return whether ``password`` matches the PHC string ``encoded``.

    The parameters and salt come from ``encoded`` itself; the digest comparison is constant
    time (libargon2's). A malformed or foreign hash is a mismatch, never an exception.
    """
    try:
        return bool(_hasher(HashParams()).verify(encoded, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str, params: HashParams) -> bool:
    """Return whether ``encoded`` was made with parameters other than ``params``."""
    try:
        return bool(_hasher(params).check_needs_rehash(encoded))
    except (InvalidHashError, ValueError):
        return True


@functools.lru_cache(maxsize=8)
def dummy_hash(params: HashParams) -> str:
    """A hash of no one's password, for doing the same work when there is no real hash.

    Sign-in verifies the given password against it for unknown accounts, unknown users and
    users without a password, so those answers take about as long as a wrong password.
    """
    return hash_password("\x00 not a password \x00", params)


# -- the password policy ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """An account password policy (``None`` members: not set).

    ``default`` marks AWS's built-in policy that applies while the account has none; it is
    never stored or shown by ``GetAccountPasswordPolicy``.
    """

    minimum_length: int = POLICY_DEFAULT_MIN_LENGTH
    require_symbols: bool = False
    require_numbers: bool = False
    require_uppercase: bool = False
    require_lowercase: bool = False
    allow_users_to_change: bool = False
    max_age_days: int | None = None
    reuse_prevention: int | None = None
    hard_expiry: bool | None = None
    default: bool = False

    @property
    def expire_passwords(self) -> bool:
        """``ExpirePasswords``: true when passwords have a maximum age."""
        return bool(self.max_age_days)

    def to_record(self) -> dict[str, Any]:
        """The ``pwpolicy`` record: AWS member names as keys, unset members left out."""
        doc: dict[str, Any] = {
            "MinimumPasswordLength": self.minimum_length,
            "RequireSymbols": self.require_symbols,
            "RequireNumbers": self.require_numbers,
            "RequireUppercaseCharacters": self.require_uppercase,
            "RequireLowercaseCharacters": self.require_lowercase,
            "AllowUsersToChangePassword": self.allow_users_to_change,
        }
        if self.max_age_days is not None:
            doc["MaxPasswordAge"] = self.max_age_days
        if self.reuse_prevention is not None:
            doc["PasswordReusePrevention"] = self.reuse_prevention
        if self.hard_expiry is not None:
            doc["HardExpiry"] = self.hard_expiry
        return doc

    @classmethod
    def from_record(cls, doc: Mapping[str, Any] | None) -> PasswordPolicy:
        """The policy stored in a ``pwpolicy`` record; AWS's default policy for ``None``."""
        if doc is None:
            return DEFAULT_POLICY
        return cls(
            minimum_length=int(doc.get("MinimumPasswordLength", POLICY_DEFAULT_MIN_LENGTH)),
            require_symbols=bool(doc.get("RequireSymbols", False)),
            require_numbers=bool(doc.get("RequireNumbers", False)),
            require_uppercase=bool(doc.get("RequireUppercaseCharacters", False)),
            require_lowercase=bool(doc.get("RequireLowercaseCharacters", False)),
            allow_users_to_change=bool(doc.get("AllowUsersToChangePassword", False)),
            max_age_days=_opt_int(doc.get("MaxPasswordAge")),
            reuse_prevention=_opt_int(doc.get("PasswordReusePrevention")),
            hard_expiry=None if doc.get("HardExpiry") is None else bool(doc["HardExpiry"]),
        )


DEFAULT_POLICY = PasswordPolicy(minimum_length=DEFAULT_POLICY_MIN_LENGTH, default=True)
"""AWS's default password policy, in force while an account has none."""


def _opt_int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value or None
    return None


def character_classes(password: str) -> dict[str, bool]:
    """Which of IAM's four character classes ``password`` uses."""
    return {
        "uppercase": any("A" <= c <= "Z" for c in password),
        "lowercase": any("a" <= c <= "z" for c in password),
        "numbers": any("0" <= c <= "9" for c in password),
        "symbols": any(c in SYMBOLS for c in password),
    }


def policy_violations(policy: PasswordPolicy, password: str) -> list[str]:
    """Return why ``password`` breaks ``policy`` (reuse aside), one sentence per rule."""
    out: list[str] = []
    classes = character_classes(password)
    if len(password) < policy.minimum_length:
        out.append(f"Password should have a minimum length of {policy.minimum_length}")
    if policy.default:
        used = sum(classes.values())
        if used < DEFAULT_POLICY_MIN_CLASSES:
            out.append(
                f"Password should include at least {DEFAULT_POLICY_MIN_CLASSES} of the "
                "following character types: uppercase letters, lowercase letters, numbers, "
                "symbols"
            )
        return out
    if policy.require_uppercase and not classes["uppercase"]:
        out.append("Password should have at least one uppercase letter")
    if policy.require_lowercase and not classes["lowercase"]:
        out.append("Password should have at least one lowercase letter")
    if policy.require_numbers and not classes["numbers"]:
        out.append("Password should have at least one number")
    if policy.require_symbols and not classes["symbols"]:
        out.append("Password should have at least one symbol")
    return out


def reuse_candidates(
    policy: PasswordPolicy, current: str | None, history: Sequence[str]
) -> list[str]:
    """The hashes a new password must not match: the last ``PasswordReusePrevention`` ones.

    ``current`` (the password in use) counts as the most recent; ``history`` is newest first.
    """
    n = policy.reuse_prevention or 0
    if n <= 0:
        return []
    hashes = ([current] if current else []) + list(history)
    return hashes[:n]


def reuse_message(policy: PasswordPolicy) -> str:
    """The ``PasswordPolicyViolation`` message for a reused password."""
    n = policy.reuse_prevention or 0
    noun = "password" if n == 1 else f"{n} passwords"
    return f"Password should not be the same as your previous {noun}"


def next_history(current: str | None, history: Sequence[str]) -> list[str]:
    """The history after replacing ``current``: it goes first, at most :data:`HISTORY_KEPT`."""
    hashes = ([current] if current else []) + list(history)
    return hashes[:HISTORY_KEPT]


# -- expiry -------------------------------------------------------------------------------------


class PasswordState(enum.Enum):
    """What a correct password allows at sign-in."""

    OK = "ok"
    RESET_REQUIRED = "reset_required"
    """An administrator asked for a new password, or it is past its maximum age."""
    HARD_EXPIRED = "hard_expired"
    """Past its maximum age under ``HardExpiry``: only an administrator can set a new one."""


def expires_at(policy: PasswordPolicy, changed: datetime) -> datetime | None:
    """When a password set at ``changed`` expires under ``policy`` (``None``: never)."""
    if not policy.max_age_days:
        return None
    return changed + policy.max_age_days * DAY


def is_expired(policy: PasswordPolicy, changed: datetime, now: datetime) -> bool:
    """Whether a password set at ``changed`` is past the policy's maximum age at ``now``."""
    end = expires_at(policy, changed)
    return end is not None and now >= end


def password_state(
    policy: PasswordPolicy, *, changed: datetime, reset_required: bool, now: datetime
) -> PasswordState:
    """Decide what a correct password allows at ``now`` (see :class:`PasswordState`)."""
    if is_expired(policy, changed, now):
        return PasswordState.HARD_EXPIRED if policy.hard_expiry else PasswordState.RESET_REQUIRED
    if reset_required:
        return PasswordState.RESET_REQUIRED
    return PasswordState.OK
