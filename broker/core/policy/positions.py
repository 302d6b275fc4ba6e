"""Core layer, policy engine: where each statement of a policy document sits in its text.

The policy simulator reports ``StartPosition``/``EndPosition`` (line and column, 1-based) of
every matched statement (spec §10). :func:`statement_spans` finds them with a small scan of
the JSON text: it walks the members of the top-level object, skipping each value with the
:mod:`json` module's scanner (which reports where a value ends), and returns the span of the
``Statement`` object, or of each object of that list, in document order: the order
:func:`broker.core.policy.parse.parse_policy` gives the statements.

The text must already have decoded as JSON (the parser checks that first); for anything else
the result is empty rather than an exception."""

from __future__ import annotations

import json
import re

from broker.core.policy.model import SourceSpan

_WS = re.compile(r"[ \t\n\r]*")
# Only used to find where each value ends; the document was already decoded strictly.
_DECODER = json.JSONDecoder()


class _Scan:
    """A cursor over the JSON text; values are skipped with the json module's own scanner."""

    __slots__ = ("text", "pos")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> str:
        """Move past whitespace; return the next character (``""`` at the end)."""
        match = _WS.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        """Consume ``char`` (after whitespace) or fail."""
        if self.skip_ws() != char:
            raise ValueError(f"{char!r} expected")
        self.pos += 1

    def value(self) -> object:
        """Read the JSON value at the cursor (after whitespace) and return it."""
        self.skip_ws()
        found, self.pos = _DECODER.raw_decode(self.text, self.pos)
        return found


def _offsets(text: str) -> list[tuple[int, int]]:
    """Return ``(start, end)`` character offsets of each statement object, in order."""
    scan = _Scan(text)
    scan.expect("{")
    if scan.skip_ws() == "}":
        return []
    while True:
        key = scan.value()
        scan.expect(":")
        if key != "Statement":
            scan.value()
        else:
            first = scan.skip_ws()
            if first == "{":
                start = scan.pos
                scan.value()
                return [(start, scan.pos)]
            if first != "[":
                return []
            scan.pos += 1
            out: list[tuple[int, int]] = []
            if scan.skip_ws() == "]":
                return out
            while True:
                start = scan.pos
                if isinstance(scan.value(), dict):
                    out.append((start, scan.pos))
                if scan.skip_ws() != ",":
                    return out
                scan.pos += 1
                scan.skip_ws()
        if scan.skip_ws() != ",":
            return []
        scan.pos += 1
        scan.skip_ws()


def statement_spans(text: str) -> tuple[SourceSpan, ...]:
    """Return the span of every statement object of a JSON policy document, in order.

    Lines break at LF, CR LF and a lone CR; columns count characters (code points), both
    1-based; a span ends just after the statement's closing ``}``. An unexpected shape gives
    ``()``.
    """
    try:
        offsets = _offsets(text)
    except (ValueError, IndexError, RecursionError):
        return ()
    spans: list[SourceSpan] = []
    line = 1
    counted = 0  # the line breaks before ``counted`` are in ``line``
    last_break = -1  # offset of the last of them

    def where(offset: int) -> tuple[int, int]:
        # Offsets only grow, and never fall between the CR and LF of a CR LF pair.
        nonlocal line, counted, last_break
        line += (
            text.count("\n", counted, offset)
            + text.count("\r", counted, offset)
            - text.count("\r\n", counted, offset)
        )
        found = max(text.rfind("\n", counted, offset), text.rfind("\r", counted, offset))
        if found >= 0:
            last_break = found
        counted = offset
        return line, offset - last_break

    for start, end in offsets:
        start_line, start_column = where(start)
        end_line, end_column = where(end)
        spans.append(SourceSpan(start_line, start_column, end_line, end_column))
    return tuple(spans)


__all__ = ["statement_spans"]
