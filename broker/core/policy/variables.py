"""Core layer, policy engine: policy variables ``${key}`` and their resolution (spec §7).

A string of a ``2012-10-17`` document that may hold variables is compiled once into a
:class:`Template`: plain text (wildcards stay active where the element has them), variable
slots, and the fixed escapes ``${*}``, ``${?}``, ``${$}`` (literal characters, never wildcards).
Per request, :meth:`Template.resolve` fills the slots from the context keys. A variable whose
key is absent and has no default, or whose key is multi-valued, leaves the whole string without
a value (``None``): callers then treat the entry as matching nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.core.policy.model import ContextScalar, ContextValue

_ESCAPES = {"*": "*", "?": "?", "$": "$"}
_BAD_KEY_CHARS = frozenset(" \t\r\n${}',")
_DEFAULT_OPEN = ", '"


@dataclass(frozen=True, slots=True)
class Var:
    """A variable slot: ``key`` lower-cased (context keys are case-insensitive)."""

    key: str
    default: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Escaped:
    """A fixed escape such as ``${*}``: always the literal ``text``."""

    text: str
    source: str


Part = str | Var | Escaped
"""Plain policy text, a variable slot, or a fixed escape."""


@dataclass(frozen=True, slots=True)
class Template:
    """A policy string split into plain text, variable slots and escapes."""

    parts: tuple[Part, ...]

    @classmethod
    def plain(cls, text: str) -> Template:
        """Return a template of plain text only."""
        return cls((text,))

    @property
    def source(self) -> str:
        """The text as written in the document."""
        return "".join(p if isinstance(p, str) else p.source for p in self.parts)

    @property
    def has_vars(self) -> bool:
        """True when at least one slot needs the request context."""
        return any(isinstance(p, Var) for p in self.parts)

    @property
    def is_plain(self) -> bool:
        """True when the template is plain text (no variable, no escape)."""
        return all(isinstance(p, str) for p in self.parts)

    @property
    def text(self) -> str:
        """The plain text (meaningful when :attr:`is_plain`)."""
        return "".join(p for p in self.parts if isinstance(p, str))

    @property
    def variables(self) -> tuple[Var, ...]:
        """The variable slots, in order."""
        return tuple(p for p in self.parts if isinstance(p, Var))

    def split(self, sep: str, maxsplit: int) -> list[Template]:
        """Split at ``sep`` found in plain text only (variable values never split)."""
        out: list[Template] = []
        current: list[Part] = []
        left = maxsplit
        for part in self.parts:
            if not isinstance(part, str) or left == 0 or sep not in part:
                current.append(part)
                continue
            pieces = part.split(sep, left)
            left -= len(pieces) - 1
            current.append(pieces[0])
            for piece in pieces[1:]:
                out.append(Template(tuple(current)))
                current = [piece]
        out.append(Template(tuple(current)))
        return out

    def static_parts(self) -> tuple[tuple[str, bool], ...]:
        """The ``(text, wildcards_active)`` parts of a template without variables."""
        return tuple(
            (p, True)
            if isinstance(p, str)
            else (p.text, False)
            if isinstance(p, Escaped)
            else (p.source, True)
            for p in self.parts
        )

    def resolve(self, keys: Mapping[str, ContextValue]) -> tuple[tuple[str, bool], ...] | None:
        """Fill the slots from ``keys``; ``None`` when a slot cannot be resolved.

        The result is ``(text, wildcards_active)`` parts: text from variables, defaults and
        escapes is literal.
        """
        out: list[tuple[str, bool]] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append((part, True))
            elif isinstance(part, Escaped):
                out.append((part.text, False))
            else:
                value = resolve_var(part, keys)
                if value is None:
                    return None
                out.append((value, False))
        return tuple(out)

    def resolve_text(self, keys: Mapping[str, ContextValue]) -> str | None:
        """Return the resolved string (for operators without wildcards), or ``None``."""
        if self.is_plain:
            return self.text
        parts = self.resolve(keys)
        if parts is None:
            return None
        return "".join(text for text, _ in parts)


def resolve_var(var: Var, keys: Mapping[str, ContextValue]) -> str | None:
    """Return the text of one variable: the key's value, its default, or ``None``."""
    value = keys.get(var.key)
    if value is None:
        return var.default
    if isinstance(value, (list, tuple)):
        return None  # multi-valued keys cannot be variables (§7)
    return scalar_text(value)


def scalar_text(value: ContextScalar) -> str:
    """Return the string form of a context value (string operators and variables)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def parse_template(text: str, enabled: bool = True) -> Template:
    """Compile ``text`` into a :class:`Template`; with ``enabled=False`` it stays plain."""
    if not enabled or "${" not in text:
        return Template.plain(text)
    parts: list[Part] = []
    plain_start = 0
    pos = 0
    while True:
        i = text.find("${", pos)
        if i < 0:
            break
        found = _scan_var(text, i)
        if found is None:
            pos = i + 2
            continue
        part, end = found
        if i > plain_start:
            parts.append(text[plain_start:i])
        parts.append(part)
        plain_start = pos = end
    if plain_start < len(text) or not parts:
        parts.append(text[plain_start:])
    return Template(tuple(parts))


def _scan_var(text: str, start: int) -> tuple[Var | Escaped, int] | None:
    """Read one ``${...}`` at ``start``; ``None`` when it is not a well-formed variable."""
    close = text.find("}", start + 2)
    if close < 0:
        return None
    inner = text[start + 2 : close]
    if inner in _ESCAPES:
        return Escaped(_ESCAPES[inner], text[start : close + 1]), close + 1
    cut = inner.find(_DEFAULT_OPEN)
    if cut < 0:
        if _valid_key(inner):
            return Var(inner.lower(), None, text[start : close + 1]), close + 1
        return None
    key = inner[:cut]
    if not _valid_key(key):
        return None
    default_start = start + 2 + cut + len(_DEFAULT_OPEN)
    end = text.find("'}", default_start)
    if end < 0:
        return None
    return Var(key.lower(), text[default_start:end], text[start : end + 2]), end + 2


def _valid_key(key: str) -> bool:
    return bool(key) and not any(ch in _BAD_KEY_CHARS for ch in key)


__all__ = [
    "Escaped",
    "Part",
    "Template",
    "Var",
    "parse_template",
    "resolve_var",
    "scalar_text",
]
