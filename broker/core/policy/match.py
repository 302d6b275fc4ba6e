"""Core layer, policy engine: wildcard, action and ARN matchers (pure, linear-time).

A :class:`Glob` is compiled once from a pattern in which ``*`` matches any run of characters
(including none) and ``?`` exactly one; every other character is literal (``[``, ``.``, ``+``
have no meaning). The pattern is split at ``*`` into fixed-length segments; the first segment is
anchored at the start of the text, the last at its end, and the middle ones are found left to
right with ``str.find``. Taking the leftmost occurrence of each middle segment is always safe,
so matching never backtracks: time is at most O(len(pattern) * len(text)) and usually linear.
No regular expression is built from policy text (spec §4.3, security D7).

Templates with policy variables (see :mod:`broker.core.policy.variables`) resolve into
``(text, wildcards_active)`` parts that :meth:`Glob.from_parts` turns into a matcher, so a ``*``
that comes from a variable's value stays literal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from broker.core.policy.model import ContextValue
from broker.core.policy.variables import Template

Piece = str | int
"""One element of a segment: literal text, or a count of single-character wildcards."""

ARN_FIELDS = 6
"""``arn:partition:service:region:account:resource``: the sixth field keeps later colons."""


@dataclass(frozen=True, slots=True)
class _Segment:
    """A ``*``-free run of a pattern: literal pieces and ``?`` runs, of fixed length."""

    pieces: tuple[Piece, ...]
    size: int
    literal: str | None  # the whole segment when it holds no ``?``
    anchor: str  # first literal piece (used to skip ahead with str.find), or ""
    anchor_offset: int

    def at(self, text: str, pos: int) -> bool:
        """Return whether the segment matches ``text`` at ``pos`` (length already checked)."""
        for piece in self.pieces:
            if isinstance(piece, int):
                pos += piece
            else:
                if not text.startswith(piece, pos):
                    return False
                pos += len(piece)
        return True

    def find(self, text: str, start: int, stop: int) -> int:
        """Return the leftmost position ``p >= start`` where the segment fits before ``stop``."""
        if self.literal is not None:
            return text.find(self.literal, start, stop)
        last = stop - self.size
        if start > last:
            return -1
        if not self.anchor:
            return start
        off = self.anchor_offset
        pos = start
        while pos <= last:
            hit = text.find(self.anchor, pos + off, last + off + len(self.anchor))
            if hit < 0:
                return -1
            pos = hit - off
            if self.at(text, pos):
                return pos
            pos += 1
        return -1


def _segment(pieces: list[Piece]) -> _Segment:
    size = 0
    anchor = ""
    anchor_offset = 0
    for piece in pieces:
        if isinstance(piece, int):
            size += piece
        else:
            if not anchor:
                anchor, anchor_offset = piece, size
            size += len(piece)
    literal: str | None = None
    if all(isinstance(p, str) for p in pieces):
        literal = "".join(p for p in pieces if isinstance(p, str))
    return _Segment(tuple(pieces), size, literal, anchor, anchor_offset)


class Glob:
    """A compiled wildcard pattern (``*`` any run, ``?`` one character, nothing else special)."""

    __slots__ = ("_first", "_last", "_middle", "_star", "_everything", "_wildcards")

    def __init__(self, segments: list[_Segment], wildcards: int) -> None:
        self._first = segments[0]
        self._last = segments[-1]
        self._middle = tuple(segments[1:-1])
        self._star = len(segments) > 1
        self._everything = self._star and all(s.size == 0 for s in segments)
        self._wildcards = wildcards

    @classmethod
    def compile(cls, pattern: str) -> Glob:
        """Compile ``pattern`` with ``*`` and ``?`` active everywhere."""
        return cls.from_parts(((pattern, True),))

    @classmethod
    def literal(cls, text: str) -> Glob:
        """Return a matcher for exactly ``text`` (no wildcard characters)."""
        return cls.from_parts(((text, False),))

    @classmethod
    def from_parts(cls, parts: Iterable[tuple[str, bool]]) -> Glob:
        """Compile a pattern given as ``(text, wildcards_active)`` parts."""
        segments: list[_Segment] = []
        pieces: list[Piece] = []
        wildcards = 0

        def add_text(text: str) -> None:
            if text:
                if pieces and isinstance(pieces[-1], str):
                    pieces[-1] = pieces[-1] + text
                else:
                    pieces.append(text)

        def add_one() -> None:
            if pieces and isinstance(pieces[-1], int):
                pieces[-1] = pieces[-1] + 1
            else:
                pieces.append(1)

        for text, wild in parts:
            if not wild:
                add_text(text)
                continue
            start = 0
            for i, ch in enumerate(text):
                if ch == "*" or ch == "?":
                    add_text(text[start:i])
                    start = i + 1
                    wildcards += 1
                    if ch == "?":
                        add_one()
                    else:
                        segments.append(_segment(pieces))
                        pieces = []
            add_text(text[start:])
        segments.append(_segment(pieces))
        return cls(segments, wildcards)

    @property
    def wildcards(self) -> int:
        """Number of ``*`` and ``?`` characters in the pattern."""
        return self._wildcards

    @property
    def matches_everything(self) -> bool:
        """True when the pattern is made of ``*`` only."""
        return self._everything

    @property
    def exact(self) -> str | None:
        """The literal text when the pattern has no wildcard at all, else ``None``."""
        return None if self._star else self._first.literal

    def match(self, text: str) -> bool:
        """Return whether the whole of ``text`` matches the pattern."""
        first = self._first
        if not self._star:
            if first.literal is not None:
                return text == first.literal
            return len(text) == first.size and first.at(text, 0)
        if self._everything:
            return True
        last = self._last
        end = len(text) - last.size
        if end < first.size:
            return False
        if first.size:
            if first.literal is not None:
                if not text.startswith(first.literal):
                    return False
            elif not first.at(text, 0):
                return False
        if last.size:
            if last.literal is not None:
                if not text.endswith(last.literal):
                    return False
            elif not last.at(text, end):
                return False
        pos = first.size
        for seg in self._middle:
            if seg.size == 0:
                continue
            hit = seg.find(text, pos, end)
            if hit < 0:
                return False
            pos = hit + seg.size
        return True

    def __repr__(self) -> str:
        return f"Glob(wildcards={self._wildcards}, star={self._star})"


def count_wildcards(pattern: str) -> int:
    """Return how many ``*``/``?`` characters ``pattern`` holds (limit check at write time)."""
    return pattern.count("*") + pattern.count("?")


# -- actions -----------------------------------------------------------------------------------


class ActionMatcher:
    """Matches lower-cased action names against ``Action``/``NotAction`` patterns.

    Besides :meth:`matches`, it tells an action index which requests can possibly match
    (:attr:`exact`, :attr:`services`, :attr:`open`), so most statements are never looked at
    for an action they cannot cover.
    """

    __slots__ = ("_all", "_exact", "_globs", "_services", "_open")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        services: set[str] = set()
        globs: list[Glob] = []
        everything = False
        opened = False
        for pattern in patterns:
            lowered = pattern.lower()
            glob = Glob.compile(lowered)
            if glob.matches_everything:
                everything = True
            elif glob.exact is not None:
                exact.add(glob.exact)
            else:
                globs.append(glob)
                service, colon, _ = lowered.partition(":")
                if colon and "*" not in service and "?" not in service:
                    services.add(service)
                else:
                    opened = True
        self._all = everything
        self._exact = frozenset(exact)
        self._globs = tuple(globs)
        self._services = frozenset(services)
        self._open = everything or opened

    def matches(self, action_lc: str) -> bool:
        """Return whether any pattern matches ``action_lc`` (already lower-cased)."""
        if self._all or action_lc in self._exact:
            return True
        for glob in self._globs:
            if glob.match(action_lc):
                return True
        return False

    @property
    def exact(self) -> frozenset[str]:
        """The wildcard-free patterns, lower-cased."""
        return self._exact

    @property
    def services(self) -> frozenset[str]:
        """Service prefixes of the patterns like ``s3:Get*``: they only match ``<service>:...``."""
        return self._services

    @property
    def open(self) -> bool:
        """True when some pattern (``*``, ``s?:x``, ``*Get*``) may match any service's actions."""
        return self._open


# -- ARNs --------------------------------------------------------------------------------------


def split_arn(text: str) -> tuple[str, ...] | None:
    """Return the six fields of an ARN-shaped string, or ``None`` when it has fewer."""
    fields = text.split(":", ARN_FIELDS - 1)
    if len(fields) != ARN_FIELDS:
        return None
    return tuple(fields)


@lru_cache(maxsize=4096)
def _resolved_glob(parts: tuple[tuple[str, bool], ...]) -> Glob:
    # Resolved templates repeat across requests (same user, same tags): build each once.
    return Glob.from_parts(parts)


def template_glob(template: Template, keys: Mapping[str, ContextValue]) -> Glob | None:
    """Resolve ``template`` against ``keys`` into a matcher; ``None`` when unresolved (§7)."""
    parts = template.resolve(keys)
    return None if parts is None else _resolved_glob(parts)


class ArnPattern:
    """One ``Resource`` entry or ARN-operator value: field-by-field, case-sensitive (§4.2).

    Fields one to five are plain globs (a wildcard stays within its field); the sixth may span
    ``:`` and ``/`` and may hold policy variables. A pattern with fewer than six fields matches
    when its last present field ends with ``*`` (the missing fields count as ``*``); otherwise
    it matches nothing. A pattern made only of ``*`` matches everything, the request text ``*``
    included.
    """

    __slots__ = (
        "_any",
        "_never",
        "_head_exact",
        "_head_checks",
        "_tail",
        "_tail_glob",
        "_tail_prefix",
    )

    def __init__(self, template: Template) -> None:
        self._any = template.is_plain and _is_stars(template.text)
        fields = template.split(":", ARN_FIELDS - 1)
        self._never = False
        if len(fields) < ARN_FIELDS:
            last = fields[-1]
            if not (last.is_plain and last.text.endswith("*")):
                self._never = True
            fields = fields + [Template.plain("*")] * (ARN_FIELDS - len(fields))
        # Variables are only substituted in the resource field; elsewhere ${...} is literal.
        heads = tuple(Glob.compile(f.source) for f in fields[:-1])
        # The common case (no wildcard before the resource field) is one tuple comparison;
        # otherwise only the fields that are not a bare ``*`` are checked.
        exact = tuple(h.exact for h in heads)
        self._head_exact: tuple[str, ...] | None = None
        if all(e is not None for e in exact):
            self._head_exact = tuple(e for e in exact if e is not None)
        self._head_checks = tuple((i, h) for i, h in enumerate(heads) if not h.matches_everything)
        tail = fields[-1]
        self._tail = tail
        self._tail_glob: Glob | None = None
        self._tail_prefix = ""
        if not tail.has_vars:
            self._tail_glob = Glob.from_parts(tail.static_parts())
        else:
            # The plain text before the first variable or wildcard must start the request's
            # resource part: checking it first spares resolving variables for most misses.
            first = tail.parts[0]
            if isinstance(first, str):
                cut = min((i for i in (first.find("*"), first.find("?")) if i >= 0), default=-1)
                self._tail_prefix = first if cut < 0 else first[:cut]

    def matches(self, fields: tuple[str, ...] | None, keys: Mapping[str, ContextValue]) -> bool:
        """Return whether the pattern matches a request split by :func:`split_arn`.

        ``fields`` is ``None`` for a request that is not an ARN (such as ``*``): only an
        all-``*`` pattern matches it.
        """
        if self._any:
            return True
        if self._never or fields is None:
            return False
        return self.matches_split(fields[: ARN_FIELDS - 1], fields[ARN_FIELDS - 1], keys)

    def matches_split(
        self, head: tuple[str, ...], tail: str, keys: Mapping[str, ContextValue]
    ) -> bool:
        """Like :meth:`matches` for an ARN given as its first five fields and its resource."""
        if self._any:
            return True
        if self._never:
            return False
        exact = self._head_exact
        if exact is not None:
            if head != exact:
                return False
        else:
            for i, check in self._head_checks:
                if not check.match(head[i]):
                    return False
        glob = self._tail_glob
        if glob is None:
            if not tail.startswith(self._tail_prefix):
                return False
            glob = template_glob(self._tail, keys)
            if glob is None:
                return False
        return glob.match(tail)

    @property
    def is_everything(self) -> bool:
        """True for ``*`` (and ``**``...): the entry covers every resource."""
        return self._any


def _is_stars(text: str) -> bool:
    return bool(text) and text.count("*") == len(text)


__all__ = [
    "ARN_FIELDS",
    "ActionMatcher",
    "ArnPattern",
    "Glob",
    "count_wildcards",
    "split_arn",
    "template_glob",
]
