"""Core layer: the IAM policy language, parse -> validate -> compile -> evaluate (pure).

Typical use::

    policy = parse_policy(text, PolicyKind.IDENTITY)     # once, at write/load time
    compiled = compile_policy(policy)                     # once, cached by the caller
    result = evaluate_statements([("arn:...:policy/p", compiled)], ctx)   # per request

For many decisions over the same policies, bundle them once in a :class:`PolicySet` (indexed
by action) and pass it instead of the list::

    identity = PolicySet([("arn:...:policy/p", compiled), ...])   # once per principal
    result = evaluate_request(ctx, identity=identity)              # per request

See ``spec/iam-policy.md`` for the semantics implemented here.
"""

from broker.core.policy.compile import (
    CompiledPolicy,
    CompiledStatement,
    MatchedStatement,
    compile_policy,
    referenced_keys,
)
from broker.core.policy.conditions import parse_date, parse_operator
from broker.core.policy.evaluate import (
    CallerKind,
    Decision,
    EvaluationResult,
    RequestContext,
    evaluate_request,
    evaluate_statements,
    evaluate_trust,
    normalize_keys,
)
from broker.core.policy.index import ActionIndex, PolicySet
from broker.core.policy.match import Glob
from broker.core.policy.model import (
    Condition,
    ContextScalar,
    ContextValue,
    Policy,
    PolicyKind,
    Principal,
    PrincipalType,
    SourceSpan,
    Statement,
)
from broker.core.policy.parse import parse_policy, policy_size, render_policy
from broker.core.policy.positions import statement_spans
from broker.core.policy.validate import MAX_WILDCARDS, check_document

__all__ = [
    "MAX_WILDCARDS",
    "ActionIndex",
    "CallerKind",
    "CompiledPolicy",
    "CompiledStatement",
    "Condition",
    "ContextScalar",
    "ContextValue",
    "Decision",
    "EvaluationResult",
    "Glob",
    "MatchedStatement",
    "Policy",
    "PolicyKind",
    "PolicySet",
    "Principal",
    "PrincipalType",
    "RequestContext",
    "SourceSpan",
    "Statement",
    "check_document",
    "compile_policy",
    "evaluate_request",
    "evaluate_statements",
    "evaluate_trust",
    "normalize_keys",
    "parse_date",
    "parse_operator",
    "parse_policy",
    "policy_size",
    "referenced_keys",
    "render_policy",
    "statement_spans",
]
