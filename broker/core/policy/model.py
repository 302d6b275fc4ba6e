"""Core layer, policy engine: the typed model of a parsed IAM policy document (pure values).

:func:`broker.core.policy.parse.parse_policy` produces these frozen objects from JSON once;
compilation and evaluation work on them and never see JSON again. String-or-list forms are
normalised to tuples. ``None`` means "element absent" and differs from an empty tuple (for
example ``"Condition": {}`` gives ``conditions == ()``).

The request-side value types (:data:`ContextValue`) live here too, so that every module of the
engine can name them without import cycles.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address

VERSION_2012 = "2012-10-17"
"""The current policy language version: enables policy variables (§7)."""

VERSION_2008 = "2008-10-17"
"""The old policy language version: ``${...}`` is ordinary text."""

VERSIONS = (VERSION_2012, VERSION_2008)


class PolicyKind(enum.Enum):
    """Which rules of the grammar apply to a document (spec §2, per-type table)."""

    IDENTITY = "identity"
    """User/group/role inline or managed policy, and permissions boundaries."""

    TRUST = "trust"
    """A role's trust policy: ``Principal`` required, ``Resource`` forbidden."""

    SESSION = "session"
    """A session policy passed to AssumeRole*/GetFederationToken."""

    RESOURCE = "resource"
    """Any other resource-based policy: ``Principal`` or ``NotPrincipal`` required."""


class PrincipalType(enum.Enum):
    """The key of a ``Principal`` map entry; ``ANY`` stands for the bare ``"Principal": "*"``."""

    ANY = "*"
    AWS = "AWS"
    SERVICE = "Service"
    FEDERATED = "Federated"
    CANONICAL_USER = "CanonicalUser"


@dataclass(frozen=True, slots=True)
class Principal:
    """One value of a ``Principal``/``NotPrincipal`` element."""

    type: PrincipalType
    value: str


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``operator -> key -> values`` triple of a ``Condition`` block.

    ``operator`` and ``key`` keep the spelling of the document. JSON numbers and booleans in
    ``values`` are kept as their text (``10``, ``true``).
    """

    operator: str
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SourceSpan:
    """Where a statement object sits in its document text (1-based, in characters).

    ``start`` is the ``{`` that opens the statement; ``end`` is the position just after its
    closing ``}``. Lines end at LF, CR LF or a lone CR; columns count code points.
    """

    start_line: int
    start_column: int
    end_line: int
    end_column: int


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement; exactly one of each ``X``/``NotX`` pair is set when the kind needs it."""

    sid: str | None
    effect: str
    actions: tuple[str, ...] | None = None
    not_actions: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None
    not_resources: tuple[str, ...] | None = None
    principals: tuple[Principal, ...] | None = None
    not_principals: tuple[Principal, ...] | None = None
    conditions: tuple[Condition, ...] | None = None
    span: SourceSpan | None = field(default=None, compare=False)
    """Position in the source text (``None`` when built without one); not part of equality."""

    @property
    def is_deny(self) -> bool:
        """True for ``"Effect": "Deny"``."""
        return self.effect == "Deny"


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole parsed document."""

    version: str | None
    id: str | None
    statements: tuple[Statement, ...]

    @property
    def variables_enabled(self) -> bool:
        """True when ``${...}`` are policy variables (``Version`` 2012-10-17 only)."""
        return self.version == VERSION_2012


ContextScalar = str | bool | int | Decimal | datetime | IPv4Address | IPv6Address | bytes
"""One typed value of a request-context key (spec §1); operators coerce it to their family."""

ContextValue = ContextScalar | list[ContextScalar] | tuple[ContextScalar, ...]
"""A context value: a single value, or a list for multi-valued keys (``aws:TagKeys``)."""


__all__ = [
    "VERSIONS",
    "VERSION_2008",
    "VERSION_2012",
    "Condition",
    "ContextScalar",
    "ContextValue",
    "Policy",
    "PolicyKind",
    "Principal",
    "PrincipalType",
    "SourceSpan",
    "Statement",
]
