"""Properties of the policy engine: matchers against reference matchers, deny monotonicity."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy import (
    Decision,
    Glob,
    Policy,
    PolicySet,
    RequestContext,
    Statement,
    compile_policy,
    evaluate_request,
    evaluate_statements,
)
from broker.core.policy.match import ActionMatcher, ArnPattern, split_arn
from broker.core.policy.model import ContextValue
from broker.core.policy.variables import parse_template
from tests.unit.policy.policy_gen import (
    ACTION_PATTERNS,
    REQUEST_ACTIONS,
    REQUEST_RESOURCES,
    RESOURCE_PATTERNS,
    Token,
    contexts,
    pairs,
    policies,
    policy_sets,
    ref_action,
    ref_glob,
    ref_resource,
    statements,
    tokens,
)

# -- the wildcard matcher against the dynamic-programming reference ----------------------------

_PATTERN = st.text(alphabet="ab*?:/", max_size=14)
_TEXT = st.text(alphabet="ab:/*?", max_size=18)


@settings(max_examples=1000, deadline=None)
@given(pattern=_PATTERN, text=_TEXT)
def test_glob_agrees_with_reference(pattern: str, text: str) -> None:
    assert Glob.compile(pattern).match(text) is ref_glob(tokens(pattern), text)


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(max_size=12), text=st.text(max_size=16))
def test_glob_agrees_with_reference_on_any_characters(pattern: str, text: str) -> None:
    assert Glob.compile(pattern).match(text) is ref_glob(tokens(pattern), text)


@settings(max_examples=500, deadline=None)
@given(
    parts=st.lists(st.tuples(st.text(alphabet="ab*?", max_size=4), st.booleans()), max_size=5),
    text=st.text(alphabet="ab*?", max_size=14),
)
def test_glob_from_parts_keeps_literal_parts_literal(
    parts: list[tuple[str, bool]], text: str
) -> None:
    reference: list[Token] = []
    for piece, wild in parts:
        reference.extend(tokens(piece, wild))
    assert Glob.from_parts(parts).match(text) is ref_glob(reference, text)


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.text(alphabet="ab*?", min_size=1, max_size=6).map(lambda s: "a" + s),
    count=st.integers(1, 4000),
)
def test_glob_on_long_texts_agrees_with_reference(pattern: str, count: int) -> None:
    text = ("ab" * count)[:count]
    assert Glob.compile(pattern).match(text) is ref_glob(tokens(pattern), text)


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=4),
    action=st.sampled_from(REQUEST_ACTIONS),
)
def test_action_matcher_agrees_with_reference(patterns: list[str], action: str) -> None:
    assert ActionMatcher(patterns).matches(action.lower()) is ref_action(patterns, action)


@settings(max_examples=500, deadline=None)
@given(
    entry=st.sampled_from(RESOURCE_PATTERNS),
    variables=st.booleans(),
    resource=st.sampled_from(REQUEST_RESOURCES),
    username=st.sampled_from([None, "alice", "bob", "*"]),
    team=st.sampled_from([None, "payments"]),
)
def test_resource_pattern_agrees_with_reference(
    entry: str, variables: bool, resource: str, username: str | None, team: str | None
) -> None:
    keys: dict[str, ContextValue] = {}
    if username is not None:
        keys["aws:username"] = username
    if team is not None:
        keys["aws:principaltag/team"] = team
    pattern = ArnPattern(parse_template(entry, variables))
    expected = ref_resource(entry, variables, resource, keys)
    assert pattern.matches(split_arn(resource), keys) is expected


# -- monotonicity of denies ---------------------------------------------------------------------


def _with_statement(policy: Policy, statement: Statement) -> Policy:
    return Policy(policy.version, policy.id, policy.statements + (statement,))


@settings(max_examples=300, deadline=None)
@given(
    documents=policy_sets(),
    boundary=st.one_of(st.none(), policies()),
    extra=statements(effect="Deny"),
    where=st.integers(0, 5),
    version=st.sampled_from(["2012-10-17", None]),
    requests=st.lists(contexts(), min_size=1, max_size=4),
)
def test_adding_a_deny_never_allows_more(
    documents: list[Policy],
    boundary: Policy | None,
    extra: Statement,
    where: int,
    version: str | None,
    requests: list[RequestContext],
) -> None:
    # The Deny goes into an existing identity policy, a new one, or the boundary.
    after_documents = list(documents)
    after_boundary = boundary
    if where < len(documents):
        after_documents[where] = _with_statement(documents[where], extra)
        alone = _with_statement(Policy(documents[where].version, None, ()), extra)
    elif where == 5 and boundary is not None:
        after_boundary = _with_statement(boundary, extra)
        alone = _with_statement(Policy(boundary.version, None, ()), extra)
    else:
        alone = Policy(version, None, (extra,))
        after_documents.append(alone)
    before_ids = pairs(documents)
    after_ids = PolicySet(pairs(after_documents))
    before_pb = ("pb", compile_policy(boundary)) if boundary is not None else None
    after_pb = ("pb", compile_policy(after_boundary)) if after_boundary is not None else None
    deny_only = [("d", compile_policy(alone))]
    for ctx in requests:
        before = evaluate_request(ctx, identity=before_ids, boundary=before_pb)
        after = evaluate_request(ctx, identity=after_ids, boundary=after_pb)
        if before.decision is not Decision.ALLOW:
            assert after.decision is not Decision.ALLOW
        if evaluate_statements(deny_only, ctx).decision is Decision.EXPLICIT_DENY:
            assert after.decision is Decision.EXPLICIT_DENY
        if before.decision is Decision.EXPLICIT_DENY:
            assert after.decision is Decision.EXPLICIT_DENY


@settings(max_examples=300, deadline=None)
@given(
    documents=policy_sets(),
    boundary=st.one_of(st.none(), policies()),
    pick=st.integers(0, 10_000),
    requests=st.lists(contexts(), min_size=1, max_size=4),
)
def test_removing_an_allow_never_allows_more(
    documents: list[Policy],
    boundary: Policy | None,
    pick: int,
    requests: list[RequestContext],
) -> None:
    allows = [
        (i, j)
        for i, policy in enumerate(documents)
        for j, statement in enumerate(policy.statements)
        if not statement.is_deny
    ]
    if not allows:
        return
    i, j = allows[pick % len(allows)]
    kept = documents[i].statements[:j] + documents[i].statements[j + 1 :]
    after_documents = list(documents)
    after_documents[i] = Policy(documents[i].version, documents[i].id, kept)
    before_ids = PolicySet(pairs(documents))
    after_ids = pairs(after_documents)
    pb = ("pb", compile_policy(boundary)) if boundary is not None else None
    for ctx in requests:
        before = evaluate_request(ctx, identity=before_ids, boundary=pb)
        after = evaluate_request(ctx, identity=after_ids, boundary=pb)
        if before.decision is not Decision.ALLOW:
            assert after.decision is before.decision
        elif after.decision is Decision.ALLOW:
            # every allow still matching was matching before (indices after the removed
            # statement moved down by one)
            original = {
                (m.policy_id, m.index + 1 if m.policy_id == f"p{i}" and m.index >= j else m.index)
                for m in after.matched
            }
            assert original <= {(m.policy_id, m.index) for m in before.matched}
