"""Core layer, policy engine: decisions over compiled policies (spec §6, §8).

Every function here is a pure function of compiled policies and a :class:`RequestContext`; it
reads no clock and no store. Within one policy set an applicable ``Deny`` beats an applicable
``Allow``, which beats the implicit deny; statement and policy order never matter. Results list
the applicable statements that produced the decision (policy id, statement index, ``Sid``) so
that audit records and the console can say why.

:func:`evaluate_request` combines identity policies, the permissions boundary, session policies
and a resource-based policy (a role's trust policy for ``sts:AssumeRole*``) following §8.2 and,
when the resource account differs from the caller's, §8.4.

Each policy set is searched through its action index (see :mod:`broker.core.policy.index`):
only statements whose ``Action``/``NotAction`` covers the request are looked at. Passing a
:class:`~broker.core.policy.index.PolicySet` instead of a plain sequence of pairs makes that one
lookup for the whole set.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from broker.core.policy.compile import (
    CompiledPolicy,
    CompiledPrincipal,
    CompiledStatement,
    MatchedStatement,
    PrincipalForm,
)
from broker.core.policy.index import PolicySet
from broker.core.policy.match import ARN_FIELDS, split_arn
from broker.core.policy.model import ContextValue


class Decision(enum.Enum):
    """The three outcomes, with the simulator's spelling as values."""

    ALLOW = "allowed"
    EXPLICIT_DENY = "explicitDeny"
    IMPLICIT_DENY = "implicitDeny"


class CallerKind(enum.Enum):
    """Who is calling, as far as principal matching cares (§4.4)."""

    ROOT = "root"
    USER = "user"
    ROLE_SESSION = "role-session"
    FEDERATED_USER = "federated-user"
    SERVICE = "service"
    FEDERATED = "federated"
    """The bearer of a web identity or SAML token (AssumeRoleWithWebIdentity/SAML)."""
    ANONYMOUS = "anonymous"


LAYER_IDENTITY = "identity"
LAYER_BOUNDARY = "permissions boundary"
LAYER_SESSION = "session policy"
LAYER_RESOURCE = "resource policy"

_AWS_CALLERS = frozenset(
    {CallerKind.ROOT, CallerKind.USER, CallerKind.ROLE_SESSION, CallerKind.FEDERATED_USER}
)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Everything a decision may look at (§1).

    ``keys`` maps **lower-cased** context key names to values (see
    :func:`normalize_keys`); policy variables resolve from it. The caller's kind is inferred
    from ``principal_arn`` when ``caller`` is not given (root, IAM user, assumed-role and
    federated-user ARNs); service principals and web-identity/SAML callers must say so.
    ``issuer_arn`` is the role ARN (with path) of a role session, or the IAM user ARN behind a
    federated-user session; for role sessions it defaults to ``aws:principalarn`` of ``keys``.
    ``resource_unspecified`` selects the simulator's reading of resource ``*`` (§4.2).
    """

    action: str
    resource: str
    principal_arn: str
    principal_account: str
    keys: Mapping[str, ContextValue] = field(default_factory=dict)
    caller: CallerKind | None = None
    issuer_arn: str | None = None
    service: str | None = None
    federated_provider: str | None = None
    has_boundary: bool = False
    resource_unspecified: bool = False


def normalize_keys(keys: Mapping[str, ContextValue]) -> dict[str, ContextValue]:
    """Return ``keys`` with lower-cased names, as :class:`RequestContext` expects."""
    return {name.lower(): value for name, value in keys.items()}


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """A decision, the statements that produced it, and for denials which layer.

    ``layer`` names the policy type that caused an implicit deny (``identity``,
    ``permissions boundary``, ``session policy``, ``resource policy``) or held the explicit
    deny. ``missing_keys`` lists condition keys that were absent while evaluating, each once.
    """

    decision: Decision
    matched: tuple[MatchedStatement, ...]
    layer: str | None = None
    missing_keys: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """True when the decision is :attr:`Decision.ALLOW`."""
        return self.decision is Decision.ALLOW


class _Grant(enum.IntEnum):
    """How strongly a resource policy's matching principal entry grants (§8.2 step 4)."""

    ACCOUNT = 1  # delegation to the account: identity policies must still allow
    INDIRECT = 2  # role ARN / parent user of a federated session: boundary + session apply
    DIRECT = 3  # the caller itself (user, session ARN, "*")


class _Request:
    """A request prepared once per decision."""

    __slots__ = (
        "ctx",
        "action",
        "fields",
        "head",
        "tail",
        "split",
        "unspecified",
        "keys",
        "kind",
        "issuer",
        "missing",
    )

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.action = ctx.action
        fields = split_arn(ctx.resource)
        self.fields = fields
        self.unspecified = ctx.resource_unspecified
        # An ARN request on the real path is matched field by field from its split form.
        self.split = fields is not None and not self.unspecified
        if fields is not None:
            self.head = fields[: ARN_FIELDS - 1]
            self.tail = fields[ARN_FIELDS - 1]
        else:
            self.head = ()
            self.tail = ""
        keys = ctx.keys
        self.keys = keys
        kind = ctx.caller
        if kind is None:
            kind = infer_caller(ctx.principal_arn)
        self.kind = kind
        issuer = ctx.issuer_arn
        if issuer is None and kind is CallerKind.ROLE_SESSION:
            value = keys.get("aws:principalarn")
            issuer = value if isinstance(value, str) else None
        self.issuer = issuer
        self.missing: list[str] = []


@lru_cache(maxsize=4096)
def infer_caller(principal_arn: str) -> CallerKind:
    """Return the caller kind an ARN implies (anonymous for anything unrecognised)."""
    fields = split_arn(principal_arn)
    if fields is None or fields[0] != "arn":
        return CallerKind.ANONYMOUS
    service, resource = fields[2], fields[5]
    if service == "iam":
        if resource == "root":
            return CallerKind.ROOT
        if resource.startswith("user/"):
            return CallerKind.USER
    elif service == "sts":
        if resource.startswith("assumed-role/"):
            return CallerKind.ROLE_SESSION
        if resource.startswith("federated-user/"):
            return CallerKind.FEDERATED_USER
    return CallerKind.ANONYMOUS


def _grant_for(entry: CompiledPrincipal, req: _Request) -> _Grant | None:
    form = entry.form
    ctx = req.ctx
    if form is PrincipalForm.EVERYONE:
        return _Grant.DIRECT
    if form is PrincipalForm.ACCOUNT:
        if req.kind in _AWS_CALLERS and ctx.principal_account == entry.value:
            return _Grant.ACCOUNT
        return None
    if form is PrincipalForm.USER:
        if req.kind is CallerKind.USER and ctx.principal_arn == entry.value:
            return _Grant.DIRECT
        if req.kind is CallerKind.FEDERATED_USER and req.issuer == entry.value:
            return _Grant.INDIRECT
        return None
    if form is PrincipalForm.ROLE:
        if req.kind is CallerKind.ROLE_SESSION and req.issuer == entry.value:
            return _Grant.INDIRECT
        return None
    if form is PrincipalForm.SERVICE:
        name = ctx.service if ctx.service is not None else ctx.principal_arn
        if req.kind is CallerKind.SERVICE and name.lower() == entry.value:
            return _Grant.DIRECT
        return None
    if form is PrincipalForm.FEDERATED:
        if req.kind is CallerKind.FEDERATED and ctx.federated_provider == entry.value:
            return _Grant.DIRECT
        return None
    if form is PrincipalForm.NOBODY:
        return None
    # SESSION and OTHER: exact ARN of the caller.
    return _Grant.DIRECT if ctx.principal_arn == entry.value else None


def _principal_grant(entries: tuple[CompiledPrincipal, ...], req: _Request) -> _Grant | None:
    best: _Grant | None = None
    for entry in entries:
        grant = _grant_for(entry, req)
        if grant is not None and (best is None or grant > best):
            best = grant
            if best is _Grant.DIRECT:
                break
    return best


def _exempt(entries: tuple[CompiledPrincipal, ...], req: _Request) -> bool:
    """Whether a ``NotPrincipal`` list names the caller (a session by its own ARN only)."""
    ctx = req.ctx
    if ctx.has_boundary:
        return False  # documented quirk: Deny+NotPrincipal always covers bounded principals
    for entry in entries:
        form = entry.form
        if form is PrincipalForm.EVERYONE:
            return True
        if form is PrincipalForm.ACCOUNT:
            if req.kind is CallerKind.ROOT and ctx.principal_account == entry.value:
                return True
        elif form in (PrincipalForm.SERVICE, PrincipalForm.FEDERATED):
            if _grant_for(entry, req) is not None:
                return True
        elif form is not PrincipalForm.NOBODY and ctx.principal_arn == entry.value:
            return True
    return False


class _Outcome:
    """The applicable statements of one policy set, and the strongest principal grant."""

    __slots__ = ("denies", "allows", "grant")

    def __init__(
        self, denies: list[MatchedStatement], allows: list[MatchedStatement], grant: _Grant | None
    ) -> None:
        self.denies = denies
        self.allows = allows
        self.grant = grant


def _applies(st: CompiledStatement, req: _Request) -> _Grant | None:
    """Return how ``st`` grants when it applies to ``req`` (its action already matched)."""
    grant = _Grant.DIRECT
    principals = st.principals
    if principals is not None:
        found = _principal_grant(principals, req)
        if found is None:
            return None
        grant = found
    if st.not_principals is not None and _exempt(st.not_principals, req):
        return None
    if not st.any_resource:
        if req.split:
            if not st.resource_matches_split(req.head, req.tail, req.keys):
                return None
        elif not st.resource_matches(req.fields, req.keys, req.unspecified):
            return None
    if st.conditions:
        keys = req.keys
        missing = req.missing
        for condition in st.conditions:
            if not condition.evaluate(keys, missing):
                return None
    return grant


def _scan(policies: Sequence[tuple[str, CompiledPolicy]], req: _Request) -> _Outcome:
    """Find the applicable statements of one policy set (only those covering the action)."""
    denies: list[MatchedStatement] = []
    allows: list[MatchedStatement] = []
    best: _Grant | None = None
    action = req.action
    if isinstance(policies, PolicySet):
        for st, matched in policies.candidates(action):
            grant = _Grant.DIRECT if st.unconditional else _applies(st, req)
            if grant is None:
                continue
            if st.deny:
                denies.append(matched)
            else:
                allows.append(matched)
                if best is None or grant > best:
                    best = grant
        return _Outcome(denies, allows, best)
    for policy_id, policy in policies:
        for st in policy.index.candidates(action):
            grant = _Grant.DIRECT if st.unconditional else _applies(st, req)
            if grant is None:
                continue
            if st.deny:
                denies.append(st.matched(policy_id))
            else:
                allows.append(st.matched(policy_id))
                if best is None or grant > best:
                    best = grant
    return _Outcome(denies, allows, best)


def _missing(req: _Request) -> tuple[str, ...]:
    if not req.missing:
        return ()
    seen: dict[str, str] = {}
    for key in req.missing:
        seen.setdefault(key.lower(), key)
    return tuple(seen.values())


def evaluate_statements(
    policies: Sequence[tuple[str, CompiledPolicy]], ctx: RequestContext
) -> EvaluationResult:
    """Decide one policy set (e.g. all identity policies of a principal).

    ``policies`` are ``(policy_id, compiled)`` pairs, or a
    :class:`~broker.core.policy.index.PolicySet` of them. An applicable ``Deny`` anywhere gives
    ``EXPLICIT_DENY`` (matched: every applicable deny), else an applicable ``Allow`` gives
    ``ALLOW`` (matched: every applicable allow), else ``IMPLICIT_DENY``.
    """
    req = _Request(ctx)
    out = _scan(policies, req)
    if out.denies:
        return EvaluationResult(Decision.EXPLICIT_DENY, tuple(out.denies), None, _missing(req))
    if out.allows:
        return EvaluationResult(Decision.ALLOW, tuple(out.allows), None, _missing(req))
    return EvaluationResult(Decision.IMPLICIT_DENY, (), None, _missing(req))


def evaluate_trust(ctx: RequestContext, trust: tuple[str, CompiledPolicy]) -> EvaluationResult:
    """Decide a request against one trust (or other resource) policy alone.

    This is the whole decision for ``AssumeRoleWithWebIdentity``/``AssumeRoleWithSAML``
    (§8.5), whose callers have no policies of their own; principals are matched per §4.4.
    """
    req = _Request(ctx)
    out = _scan((trust,), req)
    if out.denies:
        return EvaluationResult(
            Decision.EXPLICIT_DENY, tuple(out.denies), LAYER_RESOURCE, _missing(req)
        )
    if out.allows:
        return EvaluationResult(Decision.ALLOW, tuple(out.allows), None, _missing(req))
    return EvaluationResult(Decision.IMPLICIT_DENY, (), LAYER_RESOURCE, _missing(req))


def evaluate_request(
    ctx: RequestContext,
    *,
    identity: Sequence[tuple[str, CompiledPolicy]] = (),
    boundary: tuple[str, CompiledPolicy] | None = None,
    session: Sequence[tuple[str, CompiledPolicy]] | None = None,
    resource_policy: tuple[str, CompiledPolicy] | None = None,
    resource_account: str | None = None,
    resource_policy_required: bool = False,
) -> EvaluationResult:
    """Decide a request over every policy type that applies to it (§8.2, §8.4).

    ``identity`` are the principal's identity policies, ``boundary`` its permissions boundary,
    ``session`` the session policies of a session (``None``: none were passed; an empty
    sequence counts as passed and allowing nothing), ``resource_policy`` the resource's policy
    (a role's trust policy for ``sts:AssumeRole*``), owned by ``resource_account`` (default:
    the caller's account). ``resource_policy_required`` makes an allow from the resource
    policy mandatory (trust policies, §8.5). ``identity`` and ``session`` may be
    :class:`~broker.core.policy.index.PolicySet` bundles (fastest for repeated decisions).

    The account root user is allowed everything in its own account unless a policy explicitly
    denies it (refusing role assumption by root is the STS service's rule).
    """
    req = _Request(ctx)
    ident = _scan(identity, req)
    bound = _scan((boundary,), req) if boundary is not None else None
    sess = _scan(session, req) if session is not None else None
    res = _scan((resource_policy,), req) if resource_policy is not None else None
    missing = _missing(req)

    if (
        ident.denies
        or (res is not None and res.denies)
        or (bound is not None and bound.denies)
        or (sess is not None and sess.denies)
    ):
        denies: list[MatchedStatement] = []
        layer: str | None = None
        for name, out in (
            (LAYER_RESOURCE, res),
            (LAYER_IDENTITY, ident),
            (LAYER_BOUNDARY, bound),
            (LAYER_SESSION, sess),
        ):
            if out is not None and out.denies:
                denies.extend(out.denies)
                if layer is None:
                    layer = name
        return EvaluationResult(Decision.EXPLICIT_DENY, tuple(denies), layer, missing)

    same_account = resource_account is None or resource_account == ctx.principal_account
    if req.kind is CallerKind.ROOT and same_account:
        return EvaluationResult(Decision.ALLOW, _allows(res), None, missing)

    boundary_ok = bound is None or bool(bound.allows)
    if sess is not None:
        session_ok = bool(sess.allows)
    else:  # GetFederationToken without a policy grants nothing (§8.2 step 7)
        session_ok = req.kind is not CallerKind.FEDERATED_USER
    grant = res.grant if res is not None else None

    if same_account:
        if grant is _Grant.DIRECT:
            return EvaluationResult(Decision.ALLOW, _allows(res), None, missing)
        if grant is _Grant.INDIRECT:
            if not boundary_ok:
                return _implicit(LAYER_BOUNDARY, missing)
            if not session_ok:
                return _implicit(LAYER_SESSION, missing)
            return EvaluationResult(Decision.ALLOW, _allows(res, bound, sess), None, missing)
        if resource_policy_required and grant is None:
            return _implicit(LAYER_RESOURCE, missing)
    if not ident.allows:
        return _implicit(LAYER_IDENTITY, missing)
    if not boundary_ok:
        return _implicit(LAYER_BOUNDARY, missing)
    if not session_ok:
        return _implicit(LAYER_SESSION, missing)
    if not same_account and grant is None:
        return _implicit(LAYER_RESOURCE, missing)
    return EvaluationResult(Decision.ALLOW, _allows(res, ident, bound, sess), None, missing)


def _implicit(layer: str, missing: tuple[str, ...]) -> EvaluationResult:
    return EvaluationResult(Decision.IMPLICIT_DENY, (), layer, missing)


def _allows(*outs: _Outcome | None) -> tuple[MatchedStatement, ...]:
    """The allow statements of the given layers, in that order."""
    if len(outs) == 1:
        only = outs[0]
        return () if only is None else tuple(only.allows)
    found: list[MatchedStatement] = []
    for out in outs:
        if out is not None:
            found.extend(out.allows)
    return tuple(found)


__all__ = [
    "LAYER_BOUNDARY",
    "LAYER_IDENTITY",
    "LAYER_RESOURCE",
    "LAYER_SESSION",
    "CallerKind",
    "Decision",
    "EvaluationResult",
    "MatchedStatement",
    "RequestContext",
    "evaluate_request",
    "evaluate_statements",
    "evaluate_trust",
    "infer_caller",
    "normalize_keys",
]
