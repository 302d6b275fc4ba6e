"""Core layer, policy engine: JSON text <-> :class:`Policy` (parse once, render canonically).

:func:`parse_policy` decodes untrusted text strictly (duplicate keys, ``NaN``/``Infinity`` and
over-deep nesting are syntax errors; numbers keep their spelling), runs every check of
:mod:`broker.core.policy.validate`, and raises one
:class:`broker.errors.MalformedPolicyError` carrying all findings, whose message is the text
IAM would answer. Only a valid document becomes a :class:`Policy`. No exception other than
``MalformedPolicyError`` escapes for any input string.
"""

from __future__ import annotations

import json

from broker.core.policy.conditions import parse_operator
from broker.core.policy.model import (
    Condition,
    Policy,
    PolicyKind,
    Principal,
    PrincipalType,
    SourceSpan,
    Statement,
)
from broker.core.policy.positions import statement_spans
from broker.core.policy.validate import (
    JsonNumber,
    check_document,
    condition_text,
    finding,
)
from broker.errors import MalformedPolicyError

_JSON_WHITESPACE = frozenset(" \t\n\r")


class _DuplicateKeyError(ValueError):
    """A JSON object repeats a key."""


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"JSON constant {name} is not allowed")


def decode_json(text: str) -> object:
    """Decode ``text`` strictly; raise :class:`MalformedPolicyError` when it is not JSON."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=JsonNumber,
            parse_float=JsonNumber,
            parse_constant=_no_constant,
        )
    except _DuplicateKeyError as exc:
        found = finding("syntax.duplicate-key", "$")
        raise MalformedPolicyError(found.detail, [found]) from exc
    except RecursionError as exc:
        found = finding("syntax.too-deep", "$")
        raise MalformedPolicyError(found.detail, [found]) from exc
    except (ValueError, TypeError) as exc:
        found = finding("syntax.json", "$")
        raise MalformedPolicyError(found.detail, [found]) from exc


def parse_policy(
    text: str, kind: PolicyKind = PolicyKind.IDENTITY, *, managed: bool = False
) -> Policy:
    """Parse and validate a policy document of ``kind``.

    ``managed`` applies the managed-policy rule (CreatePolicy, CreatePolicyVersion, and
    permissions boundaries): ``Version`` must be ``2012-10-17``. Size quotas are the caller's
    check (:func:`policy_size`). Raises :class:`MalformedPolicyError` with every finding.

    Each statement carries its :class:`SourceSpan` in ``text`` (for the simulator's
    ``StartPosition``/``EndPosition``).
    """
    doc = decode_json(text)
    findings = check_document(doc, kind, managed=managed)
    if findings or not isinstance(doc, dict):
        raise MalformedPolicyError(findings[0].detail if findings else None, findings)
    return _build_policy(doc, statement_spans(text))


def policy_size(text: str) -> int:
    """Return the size IAM quotas count: characters, JSON whitespace not counted."""
    return sum(1 for ch in text if ch not in _JSON_WHITESPACE)


# -- building the model from a validated document ---------------------------------------------


def _build_policy(doc: dict[str, object], spans: tuple[SourceSpan, ...] = ()) -> Policy:
    version = doc.get("Version")
    pid = doc.get("Id")
    raw = doc["Statement"]
    items = [item for item in (raw if isinstance(raw, list) else [raw]) if isinstance(item, dict)]
    where: tuple[SourceSpan | None, ...] = spans
    if len(where) != len(items):
        where = (None,) * len(items)
    statements = tuple(
        _build_statement(item, span) for item, span in zip(items, where, strict=True)
    )
    return Policy(
        version if isinstance(version, str) else None,
        pid if isinstance(pid, str) else None,
        statements,
    )


def _texts(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return None


def _principals(value: object) -> tuple[Principal, ...] | None:
    if value is None:
        return None
    if value == "*":
        return (Principal(PrincipalType.ANY, "*"),)
    out: list[Principal] = []
    if isinstance(value, dict):
        for ptype, entries in value.items():
            for entry in _texts(entries) or ():
                out.append(Principal(PrincipalType(ptype), entry))
    return tuple(out)


def _conditions(value: object) -> tuple[Condition, ...] | None:
    if not isinstance(value, dict):
        return None
    out: list[Condition] = []
    for op, block in value.items():
        if not isinstance(block, dict) or parse_operator(op) is None:
            continue  # only an unknown operator with an empty object gets here
        for key, values in block.items():
            items = values if isinstance(values, list) else [values]
            out.append(
                Condition(
                    op,
                    key,
                    tuple(
                        condition_text(v) for v in items if isinstance(v, (str, bool, JsonNumber))
                    ),
                )
            )
    return tuple(out)


def _build_statement(st: dict[str, object], span: SourceSpan | None = None) -> Statement:
    sid = st.get("Sid")
    effect = st.get("Effect")
    return Statement(
        sid=sid if isinstance(sid, str) else None,
        effect=effect if isinstance(effect, str) else "",
        actions=_texts(st.get("Action")),
        not_actions=_texts(st.get("NotAction")),
        resources=_texts(st.get("Resource")),
        not_resources=_texts(st.get("NotResource")),
        principals=_principals(st.get("Principal")),
        not_principals=_principals(st.get("NotPrincipal")),
        conditions=_conditions(st.get("Condition")),
        span=span,
    )


# -- rendering ---------------------------------------------------------------------------------

JsonOut = str | list[str] | dict[str, object]


def _render_principals(principals: tuple[Principal, ...]) -> JsonOut:
    if any(p.type is PrincipalType.ANY for p in principals):
        return "*"
    grouped: dict[str, object] = {}
    for p in principals:
        bucket = grouped.setdefault(p.type.value, [])
        assert isinstance(bucket, list)
        bucket.append(p.value)
    return grouped


def _render_conditions(conditions: tuple[Condition, ...]) -> dict[str, object]:
    out: dict[str, dict[str, list[str]]] = {}
    for cond in conditions:
        out.setdefault(cond.operator, {})[cond.key] = list(cond.values)
    return dict(out)


def _render_statement(st: Statement) -> dict[str, object]:
    out: dict[str, object] = {}
    if st.sid is not None:
        out["Sid"] = st.sid
    out["Effect"] = st.effect
    if st.principals is not None:
        out["Principal"] = _render_principals(st.principals)
    if st.not_principals is not None:
        out["NotPrincipal"] = _render_principals(st.not_principals)
    for name, value in (
        ("Action", st.actions),
        ("NotAction", st.not_actions),
        ("Resource", st.resources),
        ("NotResource", st.not_resources),
    ):
        if value is not None:
            out[name] = list(value)
    if st.conditions is not None:
        out["Condition"] = _render_conditions(st.conditions)
    return out


def render_policy(policy: Policy) -> str:
    """Return canonical compact JSON for ``policy``; parsing it gives back an equal policy."""
    doc: dict[str, object] = {}
    if policy.version is not None:
        doc["Version"] = policy.version
    if policy.id is not None:
        doc["Id"] = policy.id
    doc["Statement"] = [_render_statement(s) for s in policy.statements]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


__all__ = ["decode_json", "parse_policy", "policy_size", "render_policy"]
