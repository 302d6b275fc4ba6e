"""The action index and PolicySet: indexed evaluation agrees with scanning every statement."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy import (
    ActionIndex,
    CompiledPolicy,
    Decision,
    Policy,
    PolicyKind,
    PolicySet,
    RequestContext,
    Statement,
    compile_policy,
    evaluate_request,
    evaluate_statements,
    parse_policy,
)
from broker.core.policy.match import ActionMatcher
from broker.core.policy.model import ContextValue
from tests.unit.policy.policy_gen import (
    ACCOUNT,
    REQUEST_ACTIONS,
    USER_ARN,
    contexts,
    pairs,
    policy_sets,
    reference_statements,
)


def compiled(*statements: dict[str, object]) -> CompiledPolicy:
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return compile_policy(parse_policy(text, PolicyKind.IDENTITY))


def model(*actions: tuple[str, ...] | None, negate: bool = False) -> CompiledPolicy:
    """A policy built from the model directly (no validation), one statement per entry."""
    body = tuple(
        Statement(
            sid=f"S{i}",
            effect="Allow",
            actions=None if negate else names,
            not_actions=names if negate else None,
            resources=("*",),
        )
        for i, names in enumerate(actions)
    )
    return compile_policy(Policy("2012-10-17", None, body))


def request(action: str, resource: str = "*", **keys: ContextValue) -> RequestContext:
    return RequestContext(
        action=action,
        resource=resource,
        principal_arn=USER_ARN,
        principal_account=ACCOUNT,
        keys={k.lower(): v for k, v in keys.items()},
    )


# -- ActionMatcher classification ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "exact", "services", "open_"),
    [
        (["s3:GetObject"], {"s3:getobject"}, set(), False),
        (["S3:Get*", "s3:List?"], set(), {"s3"}, False),
        (["s3:GetObject", "ec2:*"], {"s3:getobject"}, {"ec2"}, False),
        (["*"], set(), set(), True),
        (["*:Get*"], set(), set(), True),
        (["s?:*"], set(), set(), True),
        (["*Object"], set(), set(), True),
        (["iam:*", "*"], set(), {"iam"}, True),
    ],
)
def test_action_matcher_tells_the_index_where_to_file(
    patterns: list[str], exact: set[str], services: set[str], open_: bool
) -> None:
    matcher = ActionMatcher(patterns)
    assert set(matcher.exact) == exact
    assert set(matcher.services) == services
    assert matcher.open is open_


# -- candidates ---------------------------------------------------------------------------------


def test_candidates_are_the_covering_statements_in_document_order() -> None:
    policy = model(
        ("s3:GetObject",),
        ("ec2:*",),
        ("*",),
        ("s3:Get*", "ec2:RunInstances"),
        ("*:get*",),
        ("iam:ListUsers",),
    )
    sids = [st_.sid for st_ in policy.candidates("s3:GetObject")]
    assert sids == ["S0", "S2", "S3", "S4"]
    assert [st_.sid for st_ in policy.candidates("EC2:RunInstances")] == ["S1", "S2", "S3"]
    assert [st_.sid for st_ in policy.candidates("iam:listusers")] == ["S2", "S5"]
    assert [st_.sid for st_ in policy.candidates("sqs:SendMessage")] == ["S2"]
    assert [st_.sid for st_ in policy.candidates("nocolon")] == ["S2"]


def test_not_action_statements_are_always_checked() -> None:
    policy = model(("s3:*",), ("iam:*",), negate=True)
    assert [st_.sid for st_ in policy.candidates("s3:GetObject")] == ["S1"]
    assert [st_.sid for st_ in policy.candidates("ec2:RunInstances")] == ["S0", "S1"]


def test_statement_without_action_element_is_never_a_candidate() -> None:
    policy = compile_policy(
        Policy("2012-10-17", None, (Statement(sid="X", effect="Allow", resources=("*",)),))
    )
    assert len(policy.index) == 0
    assert policy.candidates("s3:GetObject") == ()


def test_repeated_action_is_answered_from_the_memo() -> None:
    policy = model(("s3:Get*",), ("s3:PutObject",))
    first = policy.candidates("s3:GetObject")
    assert policy.candidates("s3:GetObject") is first
    # another spelling is another memo entry with the same answer
    other = policy.candidates("S3:GETOBJECT")
    assert other == first and other is not first


def test_memo_is_a_bounded_lru() -> None:
    policy = model(("s3:*",))
    index: ActionIndex[object] = ActionIndex(((s, s) for s in policy.statements), size=2)
    a = index.candidates("s3:A")
    b = index.candidates("s3:B")
    assert index.candidates("s3:A") is a  # A is now the most recently used
    index.candidates("s3:C")  # evicts B
    assert index.candidates("s3:A") is a
    assert index.candidates("s3:B") is not b
    assert index.candidates("s3:B") == b


def test_lookup_bypasses_the_memo() -> None:
    policy = model(("s3:Get*",), ("*",))
    assert policy.index.lookup("s3:getobject") == policy.candidates("s3:GetObject")
    assert policy.index.lookup("ec2:x") == (policy.statements[1],)


# -- PolicySet ----------------------------------------------------------------------------------


def test_policy_set_is_a_sequence_of_its_pairs() -> None:
    first = compiled({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    second = compiled({"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"})
    bundle = PolicySet([("one", first), ("two", second)])
    assert len(bundle) == 2
    assert list(bundle) == [("one", first), ("two", second)]
    assert bundle[1] == ("two", second)
    assert bundle[:1] == (("one", first),)
    assert bundle.policies == (("one", first), ("two", second))
    assert "one" in repr(bundle)
    assert len(PolicySet()) == 0


def test_policy_set_candidates_name_policy_and_statement() -> None:
    first = compiled(
        {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Sid": "B", "Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
    )
    second = compiled({"Sid": "C", "Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"})
    bundle = PolicySet([("one", first), ("two", second)])
    found = [(m.policy_id, m.sid, m.index) for _, m in bundle.candidates("s3:DeleteObject")]
    assert found == [("one", "A", 0), ("two", "C", 0)]
    assert bundle.candidates("iam:ListUsers") == ()


def test_policy_set_and_sequence_give_the_same_results() -> None:
    first = compiled(
        {"Sid": "A", "Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"},
        {
            "Sid": "B",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    )
    boundary = compiled({"Sid": "C", "Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    plain = [("one", first)]
    bundle = PolicySet(plain)
    for ctx in (
        request("s3:GetObject", "arn:aws:s3:::b/k", **{"aws:SecureTransport": True}),
        request("s3:GetObject", "arn:aws:s3:::b/k", **{"aws:SecureTransport": False}),
        request("s3:GetObject", "arn:aws:s3:::c/k"),
        request("ec2:RunInstances"),
    ):
        for pb in (None, ("pb", boundary)):
            expected = evaluate_request(ctx, identity=plain, boundary=pb)
            assert evaluate_request(ctx, identity=bundle, boundary=pb) == expected
            assert evaluate_request(ctx, identity=tuple(plain), boundary=pb) == expected
        assert evaluate_statements(bundle, ctx) == evaluate_statements(plain, ctx)


def test_policy_set_works_as_session_policies() -> None:
    role = compiled({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    session = PolicySet(
        [("s", compiled({"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}))]
    )
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s1"
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/app"

    def as_session(action: str) -> RequestContext:
        return RequestContext(action, "*", session_arn, ACCOUNT, {}, issuer_arn=role_arn)

    allowed = evaluate_request(as_session("s3:GetObject"), identity=[("r", role)], session=session)
    denied = evaluate_request(as_session("s3:PutObject"), identity=[("r", role)], session=session)
    assert allowed.decision is Decision.ALLOW
    assert (denied.decision, denied.layer) == (Decision.IMPLICIT_DENY, "session policy")


# -- indexed evaluation agrees with scanning every statement -----------------------------------


def _check(found: object, expected: object) -> None:
    assert found == expected


def _summary(
    policies: Sequence[tuple[str, CompiledPolicy]], ctx: RequestContext
) -> tuple[Decision, tuple[tuple[str, int], ...], tuple[str, ...]]:
    result = evaluate_statements(policies, ctx)
    return (
        result.decision,
        tuple((m.policy_id, m.index) for m in result.matched),
        result.missing_keys,
    )


@settings(max_examples=300, deadline=None)
@given(documents=policy_sets(), requests=st.lists(contexts(), min_size=1, max_size=6))
def test_indexed_evaluation_agrees_with_reference_scan(
    documents: list[Policy], requests: list[RequestContext]
) -> None:
    plain = pairs(documents)
    bundle = PolicySet(plain)
    small = PolicySet(plain, memo_size=1)  # every other lookup misses the memo
    for ctx in requests + requests:  # the second round is answered from the memos
        ref = reference_statements(plain, ctx)
        expected = (ref.decision, ref.matched, ref.missing)
        assert _summary(plain, ctx) == expected
        assert _summary(bundle, ctx) == expected
        assert _summary(small, ctx) == expected


@settings(max_examples=150, deadline=None)
@given(
    documents=policy_sets(),
    boundary=policy_sets(max_policies=1),
    requests=st.lists(contexts(), min_size=1, max_size=4),
)
def test_request_decisions_do_not_depend_on_the_container(
    documents: list[Policy], boundary: list[Policy], requests: list[RequestContext]
) -> None:
    plain = pairs(documents)
    bound = pairs(boundary)[0]
    for ctx in requests:
        expected = evaluate_request(ctx, identity=plain, boundary=bound)
        assert evaluate_request(ctx, identity=PolicySet(plain), boundary=bound) == expected
        assert evaluate_request(ctx, identity=tuple(plain), boundary=bound) == expected


@pytest.mark.parametrize("action", REQUEST_ACTIONS)
def test_every_request_action_spelling_reaches_its_statements(action: str) -> None:
    policy = model(("s3:GetObject",), ("S3:get*",), ("*",), ("ec2:*",))
    expected = [st_.sid for st_ in policy.statements if st_.action_matches(action.lower())]
    assert [st_.sid for st_ in policy.candidates(action)] == expected
