"""Random identity policies and requests for property tests, plus a reference evaluator.

The reference evaluator scans every statement of every policy and matches actions and
resources with :func:`ref_glob`, a dynamic-programming matcher written here, independent of
the engine's matchers, action index and memo. Conditions are evaluated with the engine's
compiled conditions (they are not what these properties are about).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from broker.core.policy import (
    CompiledPolicy,
    Condition,
    Decision,
    Policy,
    RequestContext,
    Statement,
    compile_policy,
)
from broker.core.policy.model import ContextValue
from broker.core.policy.variables import parse_template

ACCOUNT = "111122223333"
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/alice"

# Token of a pattern for ref_glob: a literal character, "*" (any run) or "?" (one character).
Token = tuple[str, str]
STAR: Token = ("*", "")
ONE: Token = ("?", "")


def tokens(text: str, wild: bool = True) -> list[Token]:
    """Turn text into tokens; with ``wild`` false every character is literal."""
    out: list[Token] = []
    for ch in text:
        if wild and ch == "*":
            out.append(STAR)
        elif wild and ch == "?":
            out.append(ONE)
        else:
            out.append(("lit", ch))
    return out


def ref_glob(pattern: Sequence[Token], text: str) -> bool:
    """Whole-text wildcard match by dynamic programming over (pattern prefix, text prefix)."""
    n = len(text)
    # reach[j]: the pattern consumed so far matches text[:j]
    reach = [True] + [False] * n
    for kind, ch in pattern:
        if kind == "*":
            seen = False
            for j in range(n + 1):
                seen = seen or reach[j]
                reach[j] = seen
        elif kind == "?":
            reach = [False] + [reach[j] for j in range(n)]
        else:
            reach = [False] + [reach[j] and text[j] == ch for j in range(n)]
    return reach[n]


def ref_action(patterns: Sequence[str], action: str) -> bool:
    """Whether some ``Action`` pattern covers ``action`` (case-insensitive, §4.1)."""
    return any(ref_glob(tokens(p.lower()), action.lower()) for p in patterns)


def ref_resource(
    entry: str, variables: bool, resource: str, keys: Mapping[str, ContextValue]
) -> bool:
    """Whether one ``Resource`` entry covers ``resource`` (field by field, §4.2, §7)."""
    if entry and entry.count("*") == len(entry):
        return True
    wanted = resource.split(":", 5)
    if len(wanted) < 6:
        return False
    fields = parse_template(entry, variables).split(":", 5)
    if len(fields) < 6:
        last = fields[-1]
        if not (last.is_plain and last.text.endswith("*")):
            return False
        heads = [f.source for f in fields] + ["*"] * (6 - len(fields))
        return all(ref_glob(tokens(h), w) for h, w in zip(heads, wanted, strict=True))
    for head, want in zip(fields[:5], wanted[:5], strict=True):
        if not ref_glob(tokens(head.source), want):
            return False
    parts = fields[5].resolve(keys)
    if parts is None:
        return False
    tail: list[Token] = []
    for text, wild in parts:
        tail.extend(tokens(text, wild))
    return ref_glob(tail, wanted[5])


@dataclass(frozen=True)
class RefResult:
    """What the reference evaluator decides for one policy set."""

    decision: Decision
    matched: tuple[tuple[str, int], ...]
    missing: tuple[str, ...]


def reference_statements(
    policies: Sequence[tuple[str, CompiledPolicy]], ctx: RequestContext
) -> RefResult:
    """Decide ``ctx`` over identity policies by scanning every statement (no index)."""
    denies: list[tuple[str, int]] = []
    allows: list[tuple[str, int]] = []
    missing: list[str] = []
    for policy_id, compiled in policies:
        variables = compiled.source.variables_enabled
        for index, (source, st_) in enumerate(
            zip(compiled.source.statements, compiled.statements, strict=True)
        ):
            if source.actions is not None:
                if not ref_action(source.actions, ctx.action):
                    continue
            elif source.not_actions is not None:
                if ref_action(source.not_actions, ctx.action):
                    continue
            else:
                continue
            if source.resources is not None:
                if not any(
                    ref_resource(r, variables, ctx.resource, ctx.keys) for r in source.resources
                ):
                    continue
            elif source.not_resources is not None:
                if any(
                    ref_resource(r, variables, ctx.resource, ctx.keys) for r in source.not_resources
                ):
                    continue
            if not all(c.evaluate(ctx.keys, missing) for c in st_.conditions):
                continue
            (denies if source.is_deny else allows).append((policy_id, index))
    seen: dict[str, str] = {}
    for key in missing:
        seen.setdefault(key.lower(), key)
    if denies:
        return RefResult(Decision.EXPLICIT_DENY, tuple(denies), tuple(seen.values()))
    if allows:
        return RefResult(Decision.ALLOW, tuple(allows), tuple(seen.values()))
    return RefResult(Decision.IMPLICIT_DENY, (), tuple(seen.values()))


# -- strategies --------------------------------------------------------------------------------

ACTION_PATTERNS = [
    "s3:GetObject",
    "s3:Get*",
    "s3:*",
    "*",
    "S3:getobject",
    "s3:*Object",
    "s3:Put*",
    "s3:?etObject",
    "ec2:Describe*",
    "ec2:RunInstances",
    "iam:List*",
    "sqs:Send?essage",
    # wildcard service parts: the validator rejects them, the engine must still be right
    "*:Get*",
    "s?:*",
    "*get*",
    "*Object",
]
REQUEST_ACTIONS = [
    "s3:GetObject",
    "S3:GETOBJECT",
    "s3:getobject",
    "s3:PutObject",
    "s3:ListBucket",
    "ec2:DescribeInstances",
    "ec2:RunInstances",
    "iam:ListUsers",
    "sqs:SendMessage",
    "s3-object-lambda:GetObject",
    "s4:GetThing",
    "nocolon",
]
RESOURCE_PATTERNS = [
    "*",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b",
    "arn:aws:s3:::b/${aws:username}/*",
    "arn:aws:s3:::*/home/${aws:PrincipalTag/team}*",
    "arn:aws:s3:::b/${aws:username, 'nobody'}/x",
    "arn:aws:s3:::b/${*}",
    "arn:aws:ec2:*:111122223333:instance/*",
    "arn:aws:ec2:us-?ast-1:*:instance/i-1",
    "arn:aws:sqs:us-east-1:*",
    "arn:aws:sqs:us-east-1",
]
REQUEST_RESOURCES = [
    "arn:aws:s3:::b/alice/f",
    "arn:aws:s3:::b/bob/f",
    "arn:aws:s3:::b",
    "arn:aws:s3:::b/nobody/x",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::c/home/payments-1",
    "arn:aws:ec2:us-east-1:111122223333:instance/i-1",
    "arn:aws:sqs:us-east-1:111122223333:q",
    "*",
]
CONDITIONS = [
    ("StringEquals", "aws:username", ("alice",)),
    ("StringEquals", "aws:PrincipalTag/team", ("${aws:username}", "ops")),
    ("Bool", "aws:SecureTransport", ("true",)),
    ("StringLike", "s3:prefix", ("home/*", "x?")),
    ("StringNotEquals", "aws:SourceVpc", ("vpc-1",)),
    ("IpAddress", "aws:SourceIp", ("10.0.0.0/8",)),
    ("ForAnyValue:StringEquals", "aws:TagKeys", ("a",)),
    ("ForAllValues:StringEquals", "aws:TagKeys", ("a", "b")),
    ("Null", "aws:TokenIssueTime", ("true",)),
    ("BoolIfExists", "aws:MultiFactorAuthPresent", ("true",)),
]

_names = st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=3).map(tuple)
_resources = st.lists(st.sampled_from(RESOURCE_PATTERNS), min_size=1, max_size=3).map(tuple)
_conditions = st.lists(st.sampled_from(CONDITIONS), max_size=3, unique=True).map(
    lambda found: tuple(Condition(op, key, values) for op, key, values in found)
)


@st.composite
def statements(draw: st.DrawFn, effect: str | None = None) -> Statement:
    """One identity-policy statement; ``effect`` fixes Allow or Deny."""
    chosen = effect if effect is not None else draw(st.sampled_from(["Allow", "Deny"]))
    names = draw(_names)
    negate_action = draw(st.integers(0, 4)) == 0
    resources = draw(_resources)
    negate_resource = draw(st.integers(0, 4)) == 0
    conditions = draw(_conditions)
    return Statement(
        sid=None,
        effect=chosen,
        actions=None if negate_action else names,
        not_actions=names if negate_action else None,
        resources=None if negate_resource else resources,
        not_resources=resources if negate_resource else None,
        conditions=conditions,
    )


@st.composite
def policies(draw: st.DrawFn, max_statements: int = 6) -> Policy:
    """A policy of 1..max_statements statements, language version 2012 or none."""
    version = draw(st.sampled_from(["2012-10-17", "2012-10-17", None]))
    body = draw(st.lists(statements(), min_size=1, max_size=max_statements))
    return Policy(version, None, tuple(body))


def policy_sets(max_policies: int = 4) -> st.SearchStrategy[list[Policy]]:
    """A principal's identity policies."""
    return st.lists(policies(), min_size=1, max_size=max_policies)


def pairs(documents: Sequence[Policy]) -> list[tuple[str, CompiledPolicy]]:
    """Compile and name policies ``p0``, ``p1``..."""
    return [(f"p{i}", compile_policy(p)) for i, p in enumerate(documents)]


@st.composite
def contexts(draw: st.DrawFn) -> RequestContext:
    """A request of user alice with a random action, resource and context keys."""
    keys: dict[str, ContextValue] = {}
    optional: list[tuple[str, list[ContextValue]]] = [
        ("aws:username", ["alice", "bob"]),
        ("aws:principaltag/team", ["payments", "alice", "ops"]),
        ("aws:securetransport", [True, False, "true"]),
        ("s3:prefix", ["home/x", "xy", "other"]),
        ("aws:sourcevpc", ["vpc-1", "vpc-2"]),
        ("aws:sourceip", ["10.1.2.3", "192.168.1.1"]),
        ("aws:tagkeys", [["a"], ["a", "b"], ["c"], []]),
        ("aws:tokenissuetime", ["2024-01-01T00:00:00Z"]),
        ("aws:multifactorauthpresent", [True, False]),
    ]
    for name, values in optional:
        if draw(st.booleans()):
            keys[name] = draw(st.sampled_from(values))
    return RequestContext(
        action=draw(st.sampled_from(REQUEST_ACTIONS)),
        resource=draw(st.sampled_from(REQUEST_RESOURCES)),
        principal_arn=USER_ARN,
        principal_account=ACCOUNT,
        keys=keys,
    )
