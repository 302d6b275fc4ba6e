"""Core layer, policy engine: condition operators and their evaluation (spec §5).

Operator names are parsed once (:func:`parse_operator`): an optional set qualifier
(``ForAllValues:``/``ForAnyValue:``), a base operator, an optional ``IfExists`` suffix. Policy
values are converted once at compile time into the form their family compares (sets of
strings, globs, decimals, instants, networks); only values holding policy variables are
resolved per request.

Evaluation of one key follows the missing-key rule (§5.2), the set rules (§5.4) and, without a
set qualifier, the multi-valued choice of §5.3. For every operator the per-value test ``m(r)``
is "some policy value matches ``r``" for positive operators and "no policy value matches ``r``"
for negated ones. A value that cannot be converted to the operator's family never matches.
"""

from __future__ import annotations

import base64
import binascii
import enum
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

from broker.core.policy.match import ArnPattern, Glob, split_arn, template_glob
from broker.core.policy.model import Condition, ContextScalar, ContextValue
from broker.core.policy.variables import Template, parse_template, scalar_text


class Family(enum.Enum):
    """What an operator compares."""

    STRING = "string"
    STRING_IGNORE_CASE = "string-ignore-case"
    STRING_LIKE = "string-like"
    NUMERIC = "numeric"
    DATE = "date"
    BOOL = "bool"
    BINARY = "binary"
    IP = "ip"
    ARN = "arn"
    NULL = "null"


VARIABLE_FAMILIES = frozenset(
    {Family.STRING, Family.STRING_IGNORE_CASE, Family.STRING_LIKE, Family.ARN, Family.BOOL}
)
"""Families whose policy values may hold policy variables (§7)."""

WILDCARD_FAMILIES = frozenset({Family.STRING_LIKE, Family.ARN})
"""Families whose policy values are wildcard patterns."""


class SetQualifier(enum.Enum):
    """The set prefix of an operator (§5.4)."""

    FOR_ALL_VALUES = "ForAllValues"
    FOR_ANY_VALUE = "ForAnyValue"


_BASE: dict[str, tuple[Family, bool, str]] = {
    "StringEquals": (Family.STRING, False, "eq"),
    "StringNotEquals": (Family.STRING, True, "eq"),
    "StringEqualsIgnoreCase": (Family.STRING_IGNORE_CASE, False, "eq"),
    "StringNotEqualsIgnoreCase": (Family.STRING_IGNORE_CASE, True, "eq"),
    "StringLike": (Family.STRING_LIKE, False, "eq"),
    "StringNotLike": (Family.STRING_LIKE, True, "eq"),
    "NumericEquals": (Family.NUMERIC, False, "eq"),
    "NumericNotEquals": (Family.NUMERIC, True, "eq"),
    "NumericLessThan": (Family.NUMERIC, False, "lt"),
    "NumericLessThanEquals": (Family.NUMERIC, False, "le"),
    "NumericGreaterThan": (Family.NUMERIC, False, "gt"),
    "NumericGreaterThanEquals": (Family.NUMERIC, False, "ge"),
    "DateEquals": (Family.DATE, False, "eq"),
    "DateNotEquals": (Family.DATE, True, "eq"),
    "DateLessThan": (Family.DATE, False, "lt"),
    "DateLessThanEquals": (Family.DATE, False, "le"),
    "DateGreaterThan": (Family.DATE, False, "gt"),
    "DateGreaterThanEquals": (Family.DATE, False, "ge"),
    "Bool": (Family.BOOL, False, "eq"),
    "BinaryEquals": (Family.BINARY, False, "eq"),
    "IpAddress": (Family.IP, False, "eq"),
    "NotIpAddress": (Family.IP, True, "eq"),
    "ArnEquals": (Family.ARN, False, "eq"),
    "ArnLike": (Family.ARN, False, "eq"),
    "ArnNotEquals": (Family.ARN, True, "eq"),
    "ArnNotLike": (Family.ARN, True, "eq"),
    "Null": (Family.NULL, False, "eq"),
}

BASE_OPERATORS = tuple(_BASE)
"""Every base operator name, in the order of spec §5."""

_NUMBER_COMPARE: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "eq": operator.eq,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
_DATE_COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    "eq": operator.eq,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """A parsed condition operator name."""

    name: str
    base: str
    family: Family
    negated: bool
    comparison: str
    qualifier: SetQualifier | None
    if_exists: bool


def parse_operator(name: str) -> OperatorSpec | None:
    """Return the operator's parts, or ``None`` when the name is not a known operator.

    Names are case-sensitive (``stringequals`` is unknown). ``Null`` takes no ``IfExists``.
    """
    rest = name
    qualifier: SetQualifier | None = None
    for q in SetQualifier:
        prefix = q.value + ":"
        if rest.startswith(prefix):
            qualifier = q
            rest = rest[len(prefix) :]
            break
    if_exists = False
    if rest.endswith("IfExists") and rest != "IfExists":
        if_exists = True
        rest = rest[: -len("IfExists")]
    found = _BASE.get(rest)
    if found is None:
        return None
    family, negated, comparison = found
    if family is Family.NULL and if_exists:
        return None
    return OperatorSpec(name, rest, family, negated, comparison, qualifier, if_exists)


# -- value conversion ------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?")
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?([Zz]|[+-]\d{2}:\d{2})?)?"
)
_EPOCH_RE = re.compile(r"\d{1,12}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_number(text: str) -> Decimal | None:
    """Return the decimal value of ``text`` (integer or fraction, optional sign), or ``None``."""
    if not _NUMBER_RE.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        return None


@lru_cache(maxsize=4096)
def parse_date(text: str) -> datetime | None:
    """Return the UTC-aware instant of an ISO 8601 text or integer epoch, or ``None`` (§5.7)."""
    if _EPOCH_RE.fullmatch(text):
        return _from_epoch(Decimal(text))
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = UTC
        if zone is not None and zone not in ("Z", "z"):
            sign = -1 if zone[0] == "-" else 1
            offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            tz = timezone(sign * offset)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _from_epoch(seconds: Decimal) -> datetime | None:
    if not seconds.is_finite():
        return None
    try:
        whole = int(seconds)
        micro = int((seconds - whole) * 1_000_000)
        return _EPOCH + timedelta(seconds=whole, microseconds=micro)
    except (OverflowError, ValueError):
        return None


def _number_of(value: ContextScalar) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        return parse_number(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = aware - _EPOCH
        return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 10**6
    return None


def _date_of(value: ContextScalar) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _from_epoch(Decimal(value))
    if isinstance(value, Decimal):
        return _from_epoch(value)
    if isinstance(value, str):
        return parse_date(value)
    return None


def parse_bool(text: str) -> bool | None:
    """Return the boolean of ``"true"``/``"false"`` (any case), or ``None``."""
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


def _bool_of(value: ContextScalar) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(value)
    return None


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


Network = IPv4Network | IPv6Network


def parse_network(text: str) -> Network | None:
    """Return the network of an address or CIDR (host bits ignored), or ``None``."""
    try:
        return ip_network(text, strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _parse_address(text: str) -> IPv4Address | IPv6Address | None:
    # The same source address is tested by many conditions and requests: parse it once.
    try:
        return ip_address(text)
    except ValueError:
        return None


def _address_of(value: ContextScalar) -> IPv4Address | IPv6Address | None:
    if isinstance(value, (IPv4Address, IPv6Address)):
        return value
    if isinstance(value, str):
        return _parse_address(value)
    return None


# -- per-family matchers ---------------------------------------------------------------------


class _Matcher:
    """The positive per-value test of one operator over its policy values."""

    __slots__ = ()

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        raise NotImplementedError


class _StringEquals(_Matcher):
    __slots__ = ("_fold", "_static", "_templates")

    def __init__(self, values: Sequence[Template], fold: bool) -> None:
        self._fold = fold
        self._static: frozenset[str] | None = None
        self._templates = tuple(values)
        if not any(t.has_vars for t in values):
            texts = (t.resolve_text({}) or "" for t in values)
            self._static = frozenset(t.casefold() if fold else t for t in texts)

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        text = scalar_text(value)
        if self._fold:
            text = text.casefold()
        if self._static is not None:
            return text in self._static
        for template in self._templates:
            resolved = template.resolve_text(keys)
            if resolved is None:
                continue
            if (resolved.casefold() if self._fold else resolved) == text:
                return True
        return False


class _StringLike(_Matcher):
    __slots__ = ("_globs", "_templates")

    def __init__(self, values: Sequence[Template]) -> None:
        self._globs = tuple(Glob.from_parts(t.static_parts()) for t in values if not t.has_vars)
        self._templates = tuple(t for t in values if t.has_vars)

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        text = scalar_text(value)
        for static in self._globs:
            if static.match(text):
                return True
        for template in self._templates:
            glob = template_glob(template, keys)
            if glob is not None and glob.match(text):
                return True
        return False


class _Numeric(_Matcher):
    __slots__ = ("_cmp", "_values")

    def __init__(self, values: Sequence[str], comparison: str) -> None:
        self._values = tuple(n for n in map(parse_number, values) if n is not None)
        self._cmp = _NUMBER_COMPARE[comparison]

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        number = _number_of(value)
        if number is None:
            return False
        cmp = self._cmp
        for p in self._values:
            if cmp(number, p):
                return True
        return False


class _Date(_Matcher):
    __slots__ = ("_cmp", "_values")

    def __init__(self, values: Sequence[str], comparison: str) -> None:
        self._values = tuple(d for d in map(parse_date, values) if d is not None)
        self._cmp = _DATE_COMPARE[comparison]

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        instant = _date_of(value)
        if instant is None:
            return False
        cmp = self._cmp
        for p in self._values:
            if cmp(instant, p):
                return True
        return False


class _Bool(_Matcher):
    __slots__ = ("_static", "_templates")

    def __init__(self, values: Sequence[Template]) -> None:
        self._templates = tuple(values)
        self._static: frozenset[bool] | None = None
        if not any(t.has_vars for t in values):
            parsed = (parse_bool(t.resolve_text({}) or "") for t in values)
            self._static = frozenset(b for b in parsed if b is not None)

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        flag = _bool_of(value)
        if flag is None:
            return False
        if self._static is not None:
            return flag in self._static
        for template in self._templates:
            text = template.resolve_text(keys)
            if text is not None and parse_bool(text) is flag:
                return True
        return False


class _Binary(_Matcher):
    __slots__ = ("_values",)

    def __init__(self, values: Sequence[str]) -> None:
        self._values = tuple((v, _b64(v)) for v in values)

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        if isinstance(value, bytes):
            raw: bytes | None = value
            text = base64.b64encode(value).decode("ascii")
        elif isinstance(value, str):
            raw, text = _b64(value), value
        else:
            return False
        for policy_text, policy_raw in self._values:
            if raw is not None and policy_raw is not None:
                if raw == policy_raw:
                    return True
            elif text == policy_text:
                return True
        return False


class _Ip(_Matcher):
    __slots__ = ("_networks",)

    def __init__(self, values: Sequence[str]) -> None:
        self._networks = tuple(n for n in map(parse_network, values) if n is not None)

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        address = _address_of(value)
        if address is None:
            return False
        for net in self._networks:
            if address in net:
                return True
        return False


class _Arn(_Matcher):
    __slots__ = ("_patterns",)

    def __init__(self, values: Sequence[Template]) -> None:
        self._patterns = tuple(ArnPattern(t) for t in values)

    def test(self, value: ContextScalar, keys: Mapping[str, ContextValue]) -> bool:
        if not isinstance(value, str):
            return False
        fields = split_arn(value)
        if fields is None:
            return False
        for pattern in self._patterns:
            if pattern.matches(fields, keys):
                return True
        return False


class CompiledCondition:
    """One condition key of one operator, ready to evaluate against context keys."""

    __slots__ = ("key", "key_lc", "spec", "_matcher", "_null_true", "_null_false")

    def __init__(self, spec: OperatorSpec, key: str, values: Sequence[str], variables: bool):
        self.key = key
        self.key_lc = key.lower()
        self.spec = spec
        self._null_true = False
        self._null_false = False
        family = spec.family
        use_vars = variables and family in VARIABLE_FAMILIES
        templates = [parse_template(v, use_vars) for v in values]
        matcher: _Matcher | None = None
        if family is Family.STRING:
            matcher = _StringEquals(templates, fold=False)
        elif family is Family.STRING_IGNORE_CASE:
            matcher = _StringEquals(templates, fold=True)
        elif family is Family.STRING_LIKE:
            matcher = _StringLike(templates)
        elif family is Family.NUMERIC:
            matcher = _Numeric(values, spec.comparison)
        elif family is Family.DATE:
            matcher = _Date(values, spec.comparison)
        elif family is Family.BOOL:
            matcher = _Bool(templates)
        elif family is Family.BINARY:
            matcher = _Binary(values)
        elif family is Family.IP:
            matcher = _Ip(values)
        elif family is Family.ARN:
            matcher = _Arn(templates)
        else:
            flags = [parse_bool(v) for v in values]
            self._null_true = True in flags
            self._null_false = False in flags
        self._matcher = matcher

    def evaluate(self, keys: Mapping[str, ContextValue], missing: list[str] | None = None) -> bool:
        """Return whether the condition holds; absent keys are appended to ``missing``."""
        value = keys.get(self.key_lc)
        spec = self.spec
        matcher = self._matcher
        if matcher is None:  # Null
            return self._null_false if value is not None else self._null_true
        if value is None:
            if missing is not None:
                missing.append(self.key)
            if spec.if_exists or spec.qualifier is SetQualifier.FOR_ALL_VALUES:
                return True
            if spec.qualifier is SetQualifier.FOR_ANY_VALUE:
                return False
            return spec.negated
        negated = spec.negated
        if isinstance(value, (list, tuple)):
            qualifier = spec.qualifier
            if qualifier is SetQualifier.FOR_ANY_VALUE or (qualifier is None and not negated):
                return any(matcher.test(v, keys) != negated for v in value)
            return all(matcher.test(v, keys) != negated for v in value)
        return matcher.test(value, keys) != negated

    def __repr__(self) -> str:
        return f"CompiledCondition({self.spec.name!r}, {self.key!r})"


def compile_conditions(
    conditions: Sequence[Condition], variables: bool
) -> tuple[CompiledCondition, ...]:
    """Compile a statement's conditions (unknown operators, already rejected, are skipped)."""
    out: list[CompiledCondition] = []
    for cond in conditions:
        spec = parse_operator(cond.operator)
        if spec is not None:
            out.append(CompiledCondition(spec, cond.key, cond.values, variables))
    return tuple(out)


__all__ = [
    "BASE_OPERATORS",
    "VARIABLE_FAMILIES",
    "WILDCARD_FAMILIES",
    "CompiledCondition",
    "Family",
    "OperatorSpec",
    "SetQualifier",
    "compile_conditions",
    "parse_bool",
    "parse_date",
    "parse_network",
    "parse_number",
    "parse_operator",
]
