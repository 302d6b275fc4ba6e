"""API codec for the AWS query protocol: form parameters in, XML documents out.

Requests are form-encoded (``Action=...&Version=...&Name.member.1=...``); responses are
``<{Action}Response xmlns=...>`` documents with a ``<{Action}Result>`` wrapper and
``ResponseMetadata/RequestId``; errors are ``<ErrorResponse>`` envelopes
(spec/aws-wire.md sections 1.1-1.5).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TypeAlias
from xml.sax.saxutils import escape

from broker.clock import iso8601
from broker.errors import BrokerError, MalformedQueryStringError, ValidationError

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
MAX_PARAMETERS = 1000
MAX_TAGS = 50
TAG_KEY = re.compile(r"[\w\s_.:/=+\-@]+")
TAG_KEY_TEXT = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+"
TAG_VALUE = re.compile(r"[\w\s_.:/=+\-@]*")
TAG_VALUE_TEXT = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"

# A response tree: dicts become elements in insertion order, lists become <member> items.
Node: TypeAlias = (
    "str | int | bool | datetime | None | Sequence[Node] | Mapping[str, Node] | Entries"
)


class Entries:
    """A map rendered as ``<entry><key>k</key><value>v</value></entry>`` items."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[tuple[str, object]]) -> None:
        self.items = list(items)


_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_form(text: str) -> list[tuple[str, str]]:
    """Decode a form-encoded string into ordered pairs, rejecting bad percent-encoding."""
    if not text:
        return []
    if _BAD_PERCENT.search(text):
        raise MalformedQueryStringError("The query string contains invalid percent-encoding.")
    try:
        pairs = urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        if "Max number of fields" in str(exc):
            raise ValidationError(f"Too many parameters: at most {MAX_PARAMETERS}.") from None
        raise MalformedQueryStringError("The query string is malformed.") from None
    return pairs


# -- parameter access with AWS-style validation messages -----------------------------------


def _camel(member: str) -> str:
    """``UserName`` -> ``userName`` (how AWS names members in validation messages)."""
    return member[:1].lower() + member[1:] if member else member


def _shown(value: str) -> str:
    return value if len(value) <= 256 else value[:256] + "..."


class Params:
    """Typed access to one request's parameters, collecting constraint violations.

    Each accessor records violations instead of raising; :meth:`check` raises one
    ``ValidationError`` with AWS's "N validation errors detected: ..." message.
    """

    def __init__(self, pairs: Mapping[str, str]) -> None:
        self._p = pairs
        self._errors: list[str] = []

    def raw(self, name: str) -> str | None:
        """Return the raw value of ``name`` or ``None``."""
        return self._p.get(name)

    def fail(self, name: str, value: str | None, constraint: str) -> None:
        """Record a violation of ``constraint`` by ``value`` at member ``name``."""
        shown = "null" if value is None else f"'{_shown(value)}'"
        where = ".".join(_camel(part) for part in name.split("."))
        self._errors.append(
            f"Value {shown} at '{where}' failed to satisfy constraint: {constraint}"
        )

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        min_len: int = 0,
        max_len: int | None = None,
        pattern: re.Pattern[str] | None = None,
        pattern_text: str | None = None,
        enum: Sequence[str] | None = None,
        value: str | None = None,
    ) -> str | None:
        """Return string parameter ``name`` after length/pattern/enum checks."""
        v = self._p.get(name) if value is None else value
        if v is None:
            if required:
                self.fail(name, None, "Member must not be null")
            return None
        if len(v) < min_len:
            self.fail(name, v, f"Member must have length greater than or equal to {min_len}")
            return v
        if max_len is not None and len(v) > max_len:
            self.fail(name, v, f"Member must have length less than or equal to {max_len}")
            return v
        if pattern is not None and not pattern.fullmatch(v):
            shown = pattern_text if pattern_text is not None else pattern.pattern
            self.fail(name, v, f"Member must satisfy regular expression pattern: {shown}")
            return v
        if enum is not None and v not in enum:
            self.fail(name, v, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        return v

    def req(self, name: str, **kw: object) -> str:
        """Like :meth:`string` with ``required=True``; returns ``""`` when missing (see check)."""
        v = self.string(name, required=True, **kw)  # type: ignore[arg-type]
        return v if v is not None else ""

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        min_value: int | None = None,
        max_value: int | None = None,
    ) -> int | None:
        """Return integer parameter ``name`` after range checks."""
        v = self._p.get(name)
        if v is None:
            if required:
                self.fail(name, None, "Member must not be null")
            return None
        try:
            n = int(v, 10)
        except ValueError:
            self.fail(name, v, "Member must be a number")
            return None
        if min_value is not None and n < min_value:
            self.fail(name, v, f"Member must have value greater than or equal to {min_value}")
            return None
        if max_value is not None and n > max_value:
            self.fail(name, v, f"Member must have value less than or equal to {max_value}")
            return None
        return n

    def boolean(self, name: str) -> bool | None:
        """Return boolean parameter ``name`` (``true``/``false``)."""
        v = self._p.get(name)
        if v is None:
            return None
        if v.lower() not in {"true", "false"}:
            self.fail(name, v, "Member must be a boolean")
            return None
        return v.lower() == "true"

    def members(self, name: str) -> list[str] | None:
        """Return list parameter ``name`` (``Name.member.N``); ``[]`` for a bare ``Name=``."""
        prefix = name + ".member."
        found: dict[int, str] = {}
        for key, value in self._p.items():
            if key.startswith(prefix):
                idx = key[len(prefix) :]
                if idx.isdigit() and int(idx) >= 1:
                    found[int(idx)] = value
        if found:
            return [found[i] for i in sorted(found)]
        if name in self._p:
            return []
        return None

    def struct_list(self, name: str, members: Sequence[str]) -> list[dict[str, str | None]] | None:
        """Return a list of structures (``Name.member.N.Field``)."""
        prefix = name + ".member."
        found: dict[int, dict[str, str | None]] = {}
        for key, value in self._p.items():
            if not key.startswith(prefix):
                continue
            idx, _, field = key[len(prefix) :].partition(".")
            if idx.isdigit() and int(idx) >= 1 and field in members:
                found.setdefault(int(idx), {m: None for m in members})[field] = value
        if found:
            return [found[i] for i in sorted(found)]
        if name in self._p:
            return []
        return None

    def tags(self, member: str = "Tags", limit: int = MAX_TAGS) -> list[tuple[str, str]]:
        """Return a ``Name.member.N.Key/Value`` tag list checked against the model's patterns."""
        items = self.struct_list(member, ("Key", "Value")) or []
        out: list[tuple[str, str]] = []
        for i, item in enumerate(items, start=1):
            key = self.string(
                f"{member}.member.{i}.Key", required=True, min_len=1, max_len=128,
                pattern=TAG_KEY, pattern_text=TAG_KEY_TEXT, value=item["Key"],
            )  # fmt: skip
            value = self.string(
                f"{member}.member.{i}.Value", required=True, max_len=256,
                pattern=TAG_VALUE, pattern_text=TAG_VALUE_TEXT, value=item["Value"],
            )  # fmt: skip
            if key is not None and value is not None:
                out.append((key, value))
        if len(items) > limit:
            self.fail(member, None, f"Member must have length less than or equal to {limit}")
        return out

    def check(self) -> None:
        """Raise one ``ValidationError`` listing every recorded violation, if any."""
        if not self._errors:
            return
        n = len(self._errors)
        noun = "validation error" if n == 1 else "validation errors"
        raise ValidationError(f"{n} {noun} detected: " + "; ".join(self._errors))


# -- XML rendering -----------------------------------------------------------------------


def _render(name: str, node: object, out: list[str]) -> None:
    if node is None:
        return
    if isinstance(node, bool):
        out.append(f"<{name}>{'true' if node else 'false'}</{name}>")
    elif isinstance(node, int):
        out.append(f"<{name}>{node}</{name}>")
    elif isinstance(node, str):
        out.append(f"<{name}>{escape(node)}</{name}>")
    elif isinstance(node, datetime):
        out.append(f"<{name}>{iso8601(node)}</{name}>")
    elif isinstance(node, Mapping):
        out.append(f"<{name}>")
        for key, child in node.items():
            _render(key, child, out)
        out.append(f"</{name}>")
    elif isinstance(node, Entries):
        out.append(f"<{name}>")
        for key, value in node.items:
            out.append("<entry>")
            _render("key", key, out)
            _render("value", value, out)
            out.append("</entry>")
        out.append(f"</{name}>")
    elif isinstance(node, Sequence):
        if not node:
            out.append(f"<{name}/>")
            return
        out.append(f"<{name}>")
        for item in node:
            _render("member", item, out)
        out.append(f"</{name}>")
    else:  # pragma: no cover - programming error
        raise TypeError(f"cannot render {type(node).__name__}")


def render_response(action: str, namespace: str, result: Node, request_id: str) -> bytes:
    """Render a success document; ``result`` ``None`` means the action has no output shape."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<{action}Response xmlns="{namespace}">']
    if result is not None:
        _render(f"{action}Result", result, out)
    out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>")
    out.append(f"</{action}Response>")
    return "".join(out).encode("utf-8")


def render_error(error: BrokerError, namespace: str, request_id: str) -> bytes:
    """Render the ``<ErrorResponse>`` envelope for ``error``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>{error.fault}</Type>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def encode_policy_document(document: str) -> str:
    """Percent-encode a policy document as IAM returns it (botocore unquotes it)."""
    return urllib.parse.quote(document, safe="")
