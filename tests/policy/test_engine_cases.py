"""Tests: every case of ``tests/policy/cases.py`` decided by the policy engine directly.

Each case becomes one ``evaluate_request`` call: identity policies, the permissions boundary,
session policies and the resource policy are parsed with the grammar of their type and
compiled; the context entries are typed the way the simulator types them (spec §1, §10:
``string`` -> ``str``, ``numeric`` -> ``Decimal``, ``boolean`` -> ``bool``, ``ip`` -> an
address, ``binary`` -> decoded bytes, ``date`` -> an aware ``datetime`` from ISO 8601 or epoch
seconds, ``*List`` -> a list); the resource ``*`` is the simulator's "unspecified" resource.
A document the grammar rejects gives :data:`~tests.policy.cases.MALFORMED`.

A second group checks the table itself: its size, unique ids, well-formed context entries, and
that every condition operator is exercised with both outcomes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import ip_address

import pytest

from broker.core.policy import (
    CompiledPolicy,
    ContextScalar,
    ContextValue,
    PolicyKind,
    RequestContext,
    compile_policy,
    evaluate_request,
    parse_operator,
    parse_policy,
)
from broker.core.policy.conditions import BASE_OPERATORS
from broker.errors import MalformedPolicyError
from tests.policy.cases import (
    ACCOUNT,
    ALLOWED,
    CASES,
    LIST_TYPES,
    MALFORMED,
    OUTCOMES,
    SCALAR_TYPES,
    SIMULATABLE,
    Case,
    Entry,
    account_of,
)

ENGINE_DEVIATIONS: dict[str, str] = {}
"""Cases where the engine disagrees with the spec: case id -> what the engine does instead."""


# -- typing context entries -------------------------------------------------------------------


def _date(text: str) -> datetime:
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    value = datetime.fromisoformat(text.upper())
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"not a boolean: {text!r}")
    return lowered == "true"


def _binary(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


_CONVERT: dict[str, Callable[[str], ContextScalar]] = {
    "string": str,
    "numeric": Decimal,
    "boolean": _boolean,
    "ip": ip_address,
    "binary": _binary,
    "date": _date,
}


def typed_value(entry: Entry) -> ContextValue:
    """Return the engine value of one simulator-style context entry."""
    if entry.type in LIST_TYPES:
        convert = _CONVERT[entry.type[: -len("List")]]
        values: list[ContextScalar] = [convert(v) for v in entry.values]
        return values
    if entry.type not in SCALAR_TYPES or len(entry.values) != 1:
        raise ValueError(f"bad context entry {entry!r}")
    return _CONVERT[entry.type](entry.values[0])


def typed_context(entries: Iterable[Entry]) -> dict[str, ContextValue]:
    """Return the engine's context keys (lower-cased names) for a case's entries."""
    return {entry.key.lower(): typed_value(entry) for entry in entries}


# -- running one case -------------------------------------------------------------------------


def _compile(text: str, kind: PolicyKind) -> CompiledPolicy:
    return compile_policy(parse_policy(text, kind))


def run_case(case: Case) -> tuple[str, tuple[str, ...]]:
    """Decide ``case`` with the engine: the outcome and the Sids of the matched statements."""
    try:
        identity = [
            (f"PolicyInputList.{n}", _compile(text, PolicyKind.IDENTITY))
            for n, text in enumerate(case.policies, 1)
        ]
        boundary = (
            ("PermissionsBoundaryPolicyInputList.1", _compile(case.boundary, PolicyKind.IDENTITY))
            if case.boundary is not None
            else None
        )
        resource_policy = (
            ("ResourcePolicy", _compile(case.resource_policy, PolicyKind.RESOURCE))
            if case.resource_policy is not None
            else None
        )
        session = (
            [
                (f"SessionPolicy.{n}", _compile(text, PolicyKind.SESSION))
                for n, text in enumerate(case.session_policies, 1)
            ]
            if case.session_policies is not None
            else None
        )
    except MalformedPolicyError:
        return MALFORMED, ()
    ctx = RequestContext(
        action=case.action,
        resource=case.resource,
        principal_arn=case.caller,
        principal_account=account_of(case.caller),
        keys=typed_context(case.context),
        issuer_arn=case.issuer,
        has_boundary=case.boundary is not None,
        resource_unspecified=case.resource == "*",
    )
    result = evaluate_request(
        ctx,
        identity=identity,
        boundary=boundary,
        session=session,
        resource_policy=resource_policy,
        resource_account=case.resource_owner,
    )
    return result.decision.value, tuple(m.sid or "" for m in result.matched)


def _param(case: Case) -> object:
    marks = []
    if case.id in ENGINE_DEVIATIONS:
        marks.append(pytest.mark.xfail(strict=True, reason=ENGINE_DEVIATIONS[case.id]))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_engine_decides_case(case: Case) -> None:
    outcome, matched = run_case(case)
    assert outcome == case.expected
    if case.matched is not None:
        assert sorted(matched) == sorted(case.matched)


# -- the table itself -------------------------------------------------------------------------


def test_table_is_large_and_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 250
    assert len(set(ids)) == len(ids)
    assert len(SIMULATABLE) >= 250


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_case_is_well_formed(case: Case) -> None:
    assert case.expected in OUTCOMES
    assert case.policies, "SimulateCustomPolicy requires at least one identity policy"
    for entry in case.context:
        assert entry.type in SCALAR_TYPES | LIST_TYPES
        assert len(entry.key) >= 5
        if entry.type in SCALAR_TYPES:
            assert len(entry.values) == 1
        typed_value(entry)  # every value parses as its type
    if case.session_policies is not None:
        assert case.engine_only is not None
    if case.engine_only is None:
        assert account_of(case.caller) == ACCOUNT
        assert ":user/" in case.caller
    if case.resource_owner is not None:
        assert case.resource_policy is not None


def _operators(case: Case) -> set[str]:
    found: set[str] = set()
    for text in (*case.policies, case.boundary, case.resource_policy):
        if text is None:
            continue
        try:
            body = json.loads(text)
        except ValueError:
            continue
        statements = body.get("Statement", []) if isinstance(body, dict) else []
        for st in statements if isinstance(statements, list) else [statements]:
            block = st.get("Condition") if isinstance(st, dict) else None
            for name in block if isinstance(block, dict) else ():
                spec = parse_operator(name)
                if spec is not None:
                    found.add(spec.base)
    return found


def test_every_operator_has_both_outcomes() -> None:
    outcomes: dict[str, set[bool]] = {name: set() for name in BASE_OPERATORS}
    for case in CASES:
        if case.expected == MALFORMED:
            continue
        for name in _operators(case):
            outcomes[name].add(case.expected == ALLOWED)
    lacking = {name: seen for name, seen in outcomes.items() if seen != {True, False}}
    assert lacking == {}
