"""Service: the IAM policy simulator and the context-key listings (spec/iam-policy.md §10).

``SimulateCustomPolicy`` evaluates policies given as text; ``SimulatePrincipalPolicy`` evaluates
the policies of an existing user (its own, attached and its groups'), group or role, optionally
with more policies given as text. Both evaluate every action against every resource with the
same engine that authorizes real requests (:func:`broker.core.policy.evaluate_request`), so a
simulation and a real request agree.

Behaviour chosen here (the spec's **[choice]** items and what it leaves open):

* The simulator does not invent context keys: only ``ContextEntries`` are in the context, so
  ``aws:CurrentTime``, ``aws:username`` and friends are absent unless given, and conditions on
  them report the key in ``MissingContextValues``.
* A scalar ``ContextKeyType`` with several values, and a value that does not parse as its type,
  are ``InvalidInput``; ``*List`` types give a multi-valued key.
* The simulated caller is always evaluated as an IAM user (``CallerArn`` must name one);
  without ``CallerArn`` it is the simulated user itself (SimulatePrincipalPolicy on a user) or
  the calling principal, which matters only for the account it belongs to.
* One result per action: the decision is the most restrictive over the resources
  (``explicitDeny`` > ``implicitDeny`` > ``allowed``); per-resource results are listed when
  resources were named. ``EvalDecisionDetails`` lists the decision of each policy type when a
  resource policy takes part or the resource belongs to another account; it is present and
  empty for named resources otherwise.
* ``OrderedOrganizationPolicyInputList`` (service control policies, one list per level) gates
  custom simulations as §8.2 step 2 says; ``PolicyExclusionList`` leaves chosen policies of the
  simulated entity out.

The request is validated and every policy parsed before anything is evaluated; evaluation
itself runs per action, so a page of results costs only its own actions, and a page holds
fewer actions when they are costly (:data:`MAX_STATEMENT_CHECKS`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from broker.core.arn import parse_arn
from broker.core.model import Principal
from broker.core.policy import (
    CallerKind,
    CompiledPolicy,
    ContextScalar,
    ContextValue,
    Decision,
    EvaluationResult,
    Glob,
    MatchedStatement,
    Policy,
    PolicyKind,
    RequestContext,
    compile_policy,
    evaluate_request,
    evaluate_statements,
    parse_date,
    parse_policy,
    referenced_keys,
)
from broker.core.policy.conditions import parse_bool, parse_number
from broker.errors import InvalidInputError, MalformedPolicyError, NoSuchEntityError
from broker.service.authz import Authorizer
from broker.service.iam import GROUP, ROLE, USER, entity_key, resource_keys
from broker.service.managed import BY_ARN as AWS_POLICIES
from broker.service.txn import Doc, read, read_many
from broker.store.base import Store

MAX_EVALUATIONS = 10_000
"""Most action x resource pairs one simulation request may ask for."""

MAX_STATEMENT_CHECKS = 2_000_000
"""Most statement evaluations one page of results may cost (about a second of CPU).

A page holds fewer actions than ``MaxItems`` when its actions would cost more (IAM may return
fewer results than asked for, with ``IsTruncated``); one action must always fit.
"""

MAX_BOUNDARY_POLICIES = 1
"""Permissions boundaries one simulation may carry (an entity has at most one)."""

CONTEXT_KEY_TYPES = (
    "string",
    "stringList",
    "numeric",
    "numericList",
    "boolean",
    "booleanList",
    "ip",
    "ipList",
    "binary",
    "binaryList",
    "date",
    "dateList",
)
"""The ``ContextKeyType`` values of the IAM API."""

EXCLUSION_POLICY_TYPES = (
    "inline",
    "aws-managed",
    "user-managed",
    "permission-boundary",
    "scp",
    "rcp",
)
"""The ``PolicyExclusionList`` policy types of the IAM API."""

RESOURCE_HANDLING_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "EC2-VPC-InstanceStore": ("instance", "image", "security-group", "network-interface"),
    "EC2-VPC-InstanceStore-Subnet": (
        "instance",
        "image",
        "security-group",
        "network-interface",
        "subnet",
    ),
    "EC2-VPC-EBS": ("instance", "image", "security-group", "network-interface", "volume"),
    "EC2-VPC-EBS-Subnet": (
        "instance",
        "image",
        "security-group",
        "network-interface",
        "subnet",
        "volume",
    ),
}
"""Each ``ResourceHandlingOption`` and the EC2 resource types it requires among the resources."""

# ``SourcePolicyType`` values (the model's ``PolicySourceType`` enum).
SOURCE_INPUT = "none"
"""Policies given as text (``PolicyInputList``, ``PermissionsBoundaryPolicyInputList``)."""
SOURCE_RESOURCE = "resource"
SOURCE_AWS_MANAGED = "aws-managed"
SOURCE_CUSTOMER_MANAGED = "user-managed"
# Inline policies use the holder's kind: "user", "group" or "role".

# ``EvalDecisionDetails`` keys: one per policy type.
DETAIL_IDENTITY = "IAM Policy"
DETAIL_BOUNDARY = "Permissions Boundary Policy"
DETAIL_RESOURCE = "Resource Policy"

_ACCOUNT_RE = re.compile(r"\d{12}")
_ACTION_RE = re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+")
_DENY_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}'
_SEVERITY = {Decision.ALLOW: 0, Decision.IMPLICIT_DENY: 1, Decision.EXPLICIT_DENY: 2}
_NOUN = {USER: "user", GROUP: "group", ROLE: "role"}


# -- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContextEntryInput:
    """One ``ContextEntries`` member as sent (any part may be missing)."""

    name: str | None
    values: tuple[str, ...] | None
    type: str | None


@dataclass(frozen=True, slots=True)
class PolicyExclusion:
    """One ``PolicyExclusionList`` member: exactly one of the three identifier forms."""

    policy_type: str | None = None
    policy_arn: str | None = None
    inline_policy_name: str | None = None
    attachment_type: str | None = None
    attachment_name: str | None = None


@dataclass(frozen=True, slots=True)
class SimulationInput:
    """The parameters both simulate actions share (``None``/empty: not given)."""

    action_names: tuple[str, ...]
    resource_arns: tuple[str, ...] | None = None
    policies: tuple[str, ...] = ()
    boundaries: tuple[str, ...] = ()
    organization_levels: tuple[tuple[str, ...], ...] = ()
    resource_policy: str | None = None
    resource_owner: str | None = None
    caller_arn: str | None = None
    context_entries: tuple[ContextEntryInput, ...] = ()
    resource_handling_option: str | None = None
    exclusions: tuple[PolicyExclusion, ...] = ()


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """A line and column (1-based) in a policy document's text."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class StatementRef:
    """A statement that produced a decision: which policy, what kind, where in its text."""

    source_policy_id: str
    source_policy_type: str
    start: Position | None = None
    end: Position | None = None


@dataclass(frozen=True, slots=True)
class ResourceResult:
    """The decision for one action on one resource.

    ``allowed_by_boundary`` / ``allowed_by_organizations`` are ``None`` when no boundary / no
    service control policy took part; ``details`` is ``None`` when not reported.
    """

    resource: str
    decision: Decision
    matched: tuple[StatementRef, ...]
    missing: tuple[str, ...]
    allowed_by_boundary: bool | None = None
    allowed_by_organizations: bool | None = None
    details: tuple[tuple[str, Decision], ...] | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The result for one action over every simulated resource.

    ``resource`` is the one resource simulated, or ``*`` for several; ``resources`` holds the
    per-resource results when resources were named (``None`` for the default ``*``).
    """

    action: str
    resource: str
    decision: Decision
    matched: tuple[StatementRef, ...]
    missing: tuple[str, ...]
    allowed_by_boundary: bool | None
    allowed_by_organizations: bool | None
    details: tuple[tuple[str, Decision], ...] | None
    resources: tuple[ResourceResult, ...] | None


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """A policy taking part in a simulation, with the id and type results report for it."""

    source_id: str
    source_type: str
    compiled: CompiledPolicy


# -- pure helpers ---------------------------------------------------------------------------------


def _fail(message: str) -> InvalidInputError:
    return InvalidInputError(message)


def parse_context_value(name: str, kind: str, values: Sequence[str]) -> ContextValue:
    """Convert the text values of one ``ContextEntries`` member to a typed context value.

    ``*List`` types give a tuple (a multi-valued key, possibly empty); scalar types need exactly
    one value. Raises ``InvalidInputError`` for an unknown type or a value that does not parse.
    """
    if kind not in CONTEXT_KEY_TYPES:
        raise _fail(f"Invalid ContextKeyType {kind} for context key {name}.")
    is_list = kind.endswith("List")
    base = kind[: -len("List")] if is_list else kind
    parsed = tuple(_parse_scalar(name, base, v) for v in values)
    if is_list:
        return parsed
    if len(parsed) != 1:
        raise _fail(
            f"Context key {name} of type {kind} takes exactly one value; "
            f"use {kind}List for several."
        )
    return parsed[0]


def _parse_scalar(name: str, base: str, text: str) -> ContextScalar:
    value: ContextScalar | None
    if base == "string":
        value = text
    elif base == "numeric":
        value = parse_number(text.strip())
    elif base == "boolean":
        value = parse_bool(text.strip())
    elif base == "date":
        value = parse_date(text.strip())
    elif base == "ip":
        try:
            value = ip_address(text.strip())
        except ValueError:
            value = None
    else:  # binary
        try:
            value = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            value = None
    if value is None:
        raise _fail(f"Invalid value {text!r} of type {base} for context key {name}.")
    return value


def parse_context_entries(entries: Iterable[ContextEntryInput]) -> dict[str, ContextValue]:
    """Return the simulation's context: lower-cased key names to typed values.

    Names compare case-insensitively; naming a key twice is ``InvalidInputError``, as is a
    member without a name, a type or values.
    """
    keys: dict[str, ContextValue] = {}
    for entry in entries:
        if not entry.name:
            raise _fail("ContextKeyName is required for every context entry.")
        if entry.type is None:
            raise _fail(f"ContextKeyType is required for context key {entry.name}.")
        if entry.values is None:
            raise _fail(f"ContextKeyValues is required for context key {entry.name}.")
        lowered = entry.name.lower()
        if lowered in keys:
            raise _fail(f"Context key {entry.name} is given more than once.")
        keys[lowered] = parse_context_value(entry.name, entry.type, entry.values)
    return keys


def merge_context_keys(policies: Iterable[Policy]) -> tuple[str, ...]:
    """Return the condition and variable keys of ``policies``, each once, in order of use.

    Keys compare case-insensitively; the first spelling met is kept.
    """
    seen: dict[str, str] = {}
    for policy in policies:
        for key in referenced_keys(policy):
            seen.setdefault(key.lower(), key)
    return tuple(seen.values())


def check_action_name(name: str) -> None:
    """Reject an action that is not ``service:Action`` (wildcards are not simulated)."""
    if "*" in name or "?" in name:
        raise _fail(f"Action {name} is invalid: wildcards are not supported in ActionNames.")
    if not _ACTION_RE.fullmatch(name):
        raise _fail(f"Action {name} is invalid: actions take the form service:ActionName.")


def check_resource_arn(resource: str) -> None:
    """Reject a resource that is neither ``*`` nor shaped like an ARN."""
    if resource != "*" and parse_arn(resource) is None:
        raise _fail(f"Resource {resource} is invalid: resources must be ARNs or *.")


def check_resource_handling(option: str, resources: Sequence[str]) -> None:
    """Reject an unknown ``ResourceHandlingOption`` or resources that do not fit its scenario."""
    required = RESOURCE_HANDLING_OPTIONS.get(option)
    if required is None:
        raise _fail(
            f"Invalid ResourceHandlingOption {option}; valid options: "
            + ", ".join(RESOURCE_HANDLING_OPTIONS)
        )
    present: set[str] = set()
    for resource in resources:
        arn = parse_arn(resource)
        if arn is not None and arn.service == "ec2":
            present.add(arn.resource.split("/", 1)[0])
    missing = [t for t in required if t not in present]
    if missing:
        raise _fail(
            f"ResourceHandlingOption {option} requires resources of type: " + ", ".join(missing)
        )


def parse_caller_arn(text: str) -> str:
    """Return the account of a ``CallerArn``, which must name an IAM user."""
    arn = parse_arn(text)
    if (
        arn is None
        or arn.service != "iam"
        or arn.region
        or not _ACCOUNT_RE.fullmatch(arn.account)
        or not arn.resource.startswith("user/")
        or arn.resource.endswith("/")
    ):
        raise _fail(f"Invalid CallerArn {text}: the simulated caller must be an IAM user ARN.")
    return arn.account


def parse_resource_owner(text: str) -> str:
    """Return the account of a ``ResourceOwner`` (``arn:aws:iam::ACCOUNT:root`` or an id)."""
    if _ACCOUNT_RE.fullmatch(text):
        return text
    arn = parse_arn(text)
    if (
        arn is None
        or arn.service != "iam"
        or arn.region
        or arn.resource != "root"
        or not _ACCOUNT_RE.fullmatch(arn.account)
    ):
        raise _fail(
            f"Invalid ResourceOwner {text}: use arn:aws:iam::ACCOUNT-ID:root or an account ID."
        )
    return arn.account


def parse_source_arn(text: str) -> tuple[str, str, str]:
    """Return ``(account, kind, name)`` of a ``PolicySourceArn`` (an IAM user, group or role)."""
    arn = parse_arn(text)
    if arn is not None and arn.service == "iam" and not arn.region:
        kind, _, rest = arn.resource.partition("/")
        name = rest.rsplit("/", 1)[-1]
        if kind in (USER, GROUP, ROLE) and name and _ACCOUNT_RE.fullmatch(arn.account):
            return arn.account, kind, name
    raise _fail(f"Invalid PolicySourceArn {text}: it must be the ARN of a user, group or role.")


def _check_exclusion(ex: PolicyExclusion) -> None:
    forms = [
        ex.policy_type is not None,
        ex.policy_arn is not None,
        ex.inline_policy_name is not None,
    ]
    if sum(forms) != 1:
        raise _fail(
            "Each PolicyExclusionList member takes exactly one of PolicyType, PolicyArn "
            "and InlinePolicyIdentifier."
        )
    if ex.policy_type is not None and ex.policy_type not in EXCLUSION_POLICY_TYPES:
        raise _fail(f"Invalid PolicyType {ex.policy_type} in PolicyExclusionList.")
    if ex.policy_arn is not None:
        arn = parse_arn(ex.policy_arn)
        ok = (
            arn is not None
            and arn.service == "iam"
            and not arn.region
            and (arn.account == "aws" or _ACCOUNT_RE.fullmatch(arn.account) is not None)
            and arn.resource.startswith("policy/")
        )
        if ok and arn is not None:
            head, _, name = arn.resource.rpartition("/")
            ok = bool(name) and "*" not in head and "?" not in head and name.count("*") <= 1
        if not ok:
            raise _fail(f"Invalid PolicyArn {ex.policy_arn} in PolicyExclusionList.")
    if ex.inline_policy_name is not None and ex.attachment_type not in (USER, GROUP, ROLE):
        raise _fail(f"Invalid AttachmentType {ex.attachment_type} in PolicyExclusionList.")


class _Exclusions:
    """Which of an entity's policies a ``PolicyExclusionList`` removes from a simulation."""

    def __init__(self, items: Sequence[PolicyExclusion]) -> None:
        for item in items:
            _check_exclusion(item)
        self._types = {i.policy_type for i in items if i.policy_type is not None}
        self._arns = tuple(Glob.compile(i.policy_arn) for i in items if i.policy_arn is not None)
        self._inline = tuple(
            (
                i.attachment_type,
                Glob.compile((i.attachment_name or "").lower()),
                (i.inline_policy_name or "").lower(),
            )
            for i in items
            if i.inline_policy_name is not None
        )

    def inline(self, kind: str, holder: str, policy: str) -> bool:
        """Whether inline policy ``policy`` of ``holder`` (a user, group or role) is excluded."""
        if "inline" in self._types:
            return True
        lowered = holder.lower()
        return any(
            k == kind and glob.match(lowered) and name == policy.lower()
            for k, glob, name in self._inline
        )

    def managed(self, arn: str, aws: bool) -> bool:
        """Whether the attached managed policy ``arn`` is excluded."""
        if ("aws-managed" if aws else "user-managed") in self._types:
            return True
        return any(glob.match(arn) for glob in self._arns)

    def boundary(self) -> bool:
        """Whether the entity's own permissions boundary is excluded."""
        return "permission-boundary" in self._types


# -- the simulation -----------------------------------------------------------------------------


def _severity(decision: Decision) -> int:
    return _SEVERITY[decision]


def _strictest(decisions: Iterable[Decision]) -> Decision:
    return max(decisions, key=_severity, default=Decision.IMPLICIT_DENY)


class Simulation:
    """A validated simulation request, ready to evaluate one action at a time."""

    def __init__(
        self,
        *,
        actions: Sequence[str],
        resources: Sequence[str],
        named_resources: bool,
        caller_arn: str,
        caller_account: str,
        keys: Mapping[str, ContextValue],
        identity: Sequence[SourcePolicy],
        boundary: SourcePolicy | None,
        resource_policy: SourcePolicy | None,
        resource_owner: str | None,
        organizations: Sequence[Sequence[SourcePolicy]] = (),
    ) -> None:
        self.actions = tuple(actions)
        self.resources = tuple(resources)
        self._named = named_resources
        self._caller_arn = caller_arn
        self._caller_account = caller_account
        self._keys = dict(keys)
        self._resource_owner = resource_owner
        self._sources: list[SourcePolicy] = []
        self._identity = tuple(self._register(p) for p in identity)
        self._boundary = self._register(boundary) if boundary is not None else None
        self._resource_policy = (
            self._register(resource_policy) if resource_policy is not None else None
        )
        self._organizations = tuple(
            tuple(self._register(p) for p in level) for level in organizations
        )

    def _register(self, policy: SourcePolicy) -> tuple[str, CompiledPolicy]:
        self._sources.append(policy)
        return str(len(self._sources) - 1), policy.compiled

    @property
    def count(self) -> int:
        """How many results the simulation has (one per action)."""
        return len(self.actions)

    @property
    def cost(self) -> int:
        """Statement evaluations one action costs, at most (resources x statements x passes).

        Besides the decision itself, the per-type details and the boundary verdict evaluate
        some policy sets a second time.
        """
        statements = sum(len(p.compiled.statements) for p in self._sources)
        return len(self.resources) * max(statements, 1) * 2

    def page_size(self, max_items: int) -> int:
        """How many actions one page evaluates: ``max_items`` or fewer (never none)."""
        return max(1, min(max_items, MAX_STATEMENT_CHECKS // self.cost))

    def result(self, index: int) -> ActionResult:
        """Evaluate action number ``index`` against every resource."""
        action = self.actions[index]
        rows = tuple(self._evaluate(action, resource) for resource in self.resources)
        decision = _strictest(r.decision for r in rows)
        matched: dict[StatementRef, None] = {}
        missing: dict[str, str] = {}
        for row in rows:
            if row.decision is decision:
                matched.update(dict.fromkeys(row.matched))
            for key in row.missing:
                missing.setdefault(key.lower(), key)
        bound = None
        if self._boundary is not None:
            bound = all(bool(r.allowed_by_boundary) for r in rows)
        orgs = None
        if self._organizations:
            orgs = all(bool(r.allowed_by_organizations) for r in rows)
        return ActionResult(
            action=action,
            resource=rows[0].resource if len(rows) == 1 else "*",
            decision=decision,
            matched=tuple(matched),
            missing=tuple(missing.values()),
            allowed_by_boundary=bound,
            allowed_by_organizations=orgs,
            details=_merge_details(r.details for r in rows),
            resources=rows if self._named else None,
        )

    def _owner(self, resource: str) -> str:
        arn = parse_arn(resource)
        if arn is not None and _ACCOUNT_RE.fullmatch(arn.account):
            return arn.account
        if self._resource_owner is not None:
            return self._resource_owner
        return self._caller_account

    def _evaluate(self, action: str, resource: str) -> ResourceResult:
        owner = self._owner(resource)
        ctx = RequestContext(
            action=action,
            resource=resource,
            principal_arn=self._caller_arn,
            principal_account=self._caller_account,
            keys=self._keys,
            caller=CallerKind.USER,
            has_boundary=self._boundary is not None,
            resource_unspecified=resource == "*",
        )
        main = evaluate_request(
            ctx,
            identity=self._identity,
            boundary=self._boundary,
            resource_policy=self._resource_policy,
            resource_account=owner,
        )
        decision = main.decision
        matched = self._refs(main)
        orgs: bool | None = None
        if self._organizations:
            org_decision = self._organizations_decision(ctx)
            orgs = org_decision is Decision.ALLOW
            if not orgs and decision is not Decision.EXPLICIT_DENY:
                # Statements of service control policies are not reported (as on AWS).
                decision, matched = org_decision, ()
        bound: bool | None = None
        bound_decision = Decision.ALLOW
        if self._boundary is not None:
            bound_decision = evaluate_statements((self._boundary,), ctx).decision
            bound = bound_decision is Decision.ALLOW
        details: tuple[tuple[str, Decision], ...] | None = None
        if orgs is not False:
            if self._resource_policy is not None or owner != self._caller_account:
                found = [(DETAIL_IDENTITY, evaluate_statements(self._identity, ctx).decision)]
                if self._boundary is not None:
                    found.append((DETAIL_BOUNDARY, bound_decision))
                if self._resource_policy is not None:
                    alone = evaluate_statements((self._resource_policy,), ctx)
                    found.append((DETAIL_RESOURCE, alone.decision))
                details = tuple(found)
            elif self._named:
                details = ()
        return ResourceResult(
            resource=resource,
            decision=decision,
            matched=matched,
            missing=main.missing_keys,
            allowed_by_boundary=bound,
            allowed_by_organizations=orgs,
            details=details,
        )

    def _organizations_decision(self, ctx: RequestContext) -> Decision:
        """Service control policies, one set per level: each level must allow (§8.2 step 2)."""
        results = [evaluate_statements(level, ctx).decision for level in self._organizations]
        if Decision.EXPLICIT_DENY in results:
            return Decision.EXPLICIT_DENY
        if Decision.IMPLICIT_DENY in results:
            return Decision.IMPLICIT_DENY
        return Decision.ALLOW

    def _refs(self, result: EvaluationResult) -> tuple[StatementRef, ...]:
        out: dict[StatementRef, None] = {}
        for m in result.matched:
            source = self._sources[int(m.policy_id)]
            start, end = _positions(m, source.compiled)
            out[StatementRef(source.source_id, source.source_type, start, end)] = None
        return tuple(out)


def _merge_details(
    rows: Iterable[tuple[tuple[str, Decision], ...] | None],
) -> tuple[tuple[str, Decision], ...] | None:
    """The most restrictive decision per policy type over several resources."""
    merged: dict[str, Decision] | None = None
    for row in rows:
        if row is None:
            continue
        if merged is None:
            merged = {}
        for key, decision in row:
            prior = merged.get(key)
            if prior is None or _severity(decision) > _severity(prior):
                merged[key] = decision
    return None if merged is None else tuple(merged.items())


def _positions(m: MatchedStatement, compiled: CompiledPolicy) -> tuple[Position | None, ...]:
    """Start and end of a matched statement in its policy text, when known."""
    line = int(getattr(m, "start_line", 0) or 0)
    if line > 0:
        return (
            Position(line, int(getattr(m, "start_column", 0) or 0)),
            Position(int(getattr(m, "end_line", 0) or 0), int(getattr(m, "end_column", 0) or 0)),
        )
    statements = compiled.source.statements
    if 0 <= m.index < len(statements):
        span = getattr(statements[m.index], "span", None)
        if span is not None:
            return (
                Position(int(span.start_line), int(span.start_column)),
                Position(int(span.end_line), int(span.end_column)),
            )
    return None, None


# -- the service --------------------------------------------------------------------------------


class SimulatorService:
    """The simulator use cases: validate, authorize, gather policies, build a :class:`Simulation`.

    ``authz`` authorizes the simulator actions themselves (``iam:SimulateCustomPolicy`` ...) like
    every other IAM action, and compiles policy text through its content-keyed cache.
    """

    def __init__(self, store: Store, authz: Authorizer) -> None:
        self._store = store
        self._authz = authz

    # -- public use cases ---------------------------------------------------------------------

    async def simulate_custom(self, caller: Principal, inp: SimulationInput) -> Simulation:
        """SimulateCustomPolicy: evaluate the policies given as text."""
        await self._authz.authorize(caller, "iam:SimulateCustomPolicy", "*")
        identity = self._inputs(inp.policies)
        return self._build(caller, inp, identity, None, default_caller=None)

    async def simulate_principal(
        self, caller: Principal, source_arn: str, inp: SimulationInput
    ) -> Simulation:
        """SimulatePrincipalPolicy: the policies of a user, group or role (plus any given)."""
        kind, doc = await self._entity(caller, source_arn, "iam:SimulatePrincipalPolicy")
        exclusions = _Exclusions(inp.exclusions)
        identity, boundary = await self._entity_policies(caller.account_id, kind, doc, exclusions)
        identity += self._inputs(inp.policies)
        default_caller = source_arn if kind == USER else None
        return self._build(caller, inp, identity, boundary, default_caller=default_caller)

    async def context_keys_for_custom(
        self, caller: Principal, policies: Sequence[str]
    ) -> tuple[str, ...]:
        """GetContextKeysForCustomPolicy: the keys the given policies reference."""
        await self._authz.authorize(caller, "iam:GetContextKeysForCustomPolicy", "*")
        return merge_context_keys(p.compiled.source for p in self._inputs(policies))

    async def context_keys_for_principal(
        self, caller: Principal, source_arn: str, policies: Sequence[str]
    ) -> tuple[str, ...]:
        """GetContextKeysForPrincipalPolicy: keys of the entity's policies and the given ones.

        The entity's permissions boundary counts: the simulator evaluates it too.
        """
        kind, doc = await self._entity(caller, source_arn, "iam:GetContextKeysForPrincipalPolicy")
        extra = self._inputs(policies)
        identity, boundary = await self._entity_policies(
            caller.account_id, kind, doc, _Exclusions(())
        )
        found = [*identity, *([boundary] if boundary is not None else []), *extra]
        return merge_context_keys(p.compiled.source for p in found)

    # -- building blocks ----------------------------------------------------------------------

    def _compile(self, text: str) -> CompiledPolicy:
        return self._authz.compiled(text)

    def _inputs(self, texts: Sequence[str], member: str = "PolicyInputList") -> list[SourcePolicy]:
        return [
            SourcePolicy(f"{member}.{i}", SOURCE_INPUT, self._compile(text))
            for i, text in enumerate(texts, start=1)
        ]

    def _build(
        self,
        caller: Principal,
        inp: SimulationInput,
        identity: Sequence[SourcePolicy],
        entity_boundary: SourcePolicy | None,
        *,
        default_caller: str | None,
    ) -> Simulation:
        for name in inp.action_names:
            check_action_name(name)
        resources = inp.resource_arns if inp.resource_arns else ("*",)
        for resource in resources:
            check_resource_arn(resource)
        named = inp.resource_arns is not None and any(r != "*" for r in inp.resource_arns)
        if len(inp.action_names) * len(resources) > MAX_EVALUATIONS:
            raise _fail(
                f"A simulation may evaluate at most {MAX_EVALUATIONS} action and resource "
                "combinations."
            )
        if inp.resource_handling_option is not None:
            check_resource_handling(inp.resource_handling_option, resources)
        keys = parse_context_entries(inp.context_entries)
        if len(inp.boundaries) > MAX_BOUNDARY_POLICIES:
            raise _fail("Only one permissions boundary policy can be simulated.")
        boundary = entity_boundary
        if inp.boundaries:
            boundary = self._inputs(inp.boundaries, "PermissionsBoundaryPolicyInputList")[0]
        levels = [
            self._inputs(level, f"OrderedOrganizationPolicyInputList.{n}")
            for n, level in enumerate(inp.organization_levels, start=1)
        ]
        resource_policy: SourcePolicy | None = None
        if inp.resource_policy is not None:
            parsed = compile_policy(parse_policy(inp.resource_policy, PolicyKind.RESOURCE))
            resource_policy = SourcePolicy("ResourcePolicy", SOURCE_RESOURCE, parsed)
        caller_arn = inp.caller_arn if inp.caller_arn is not None else default_caller
        if caller_arn is None:
            if resource_policy is not None:
                raise _fail("CallerArn is required when a ResourcePolicy is simulated.")
            caller_arn = caller.arn
            caller_account = caller.account_id
        else:
            caller_account = parse_caller_arn(caller_arn)
        owner = None
        if inp.resource_owner is not None:
            owner = parse_resource_owner(inp.resource_owner)
        sim = Simulation(
            actions=inp.action_names,
            resources=resources,
            named_resources=named,
            caller_arn=caller_arn,
            caller_account=caller_account,
            keys=keys,
            identity=identity,
            boundary=boundary,
            resource_policy=resource_policy,
            resource_owner=owner,
            organizations=levels,
        )
        if sim.cost > MAX_STATEMENT_CHECKS:
            raise _fail(
                "The simulation is too large: simulate fewer resources or smaller policies "
                f"(at most {MAX_STATEMENT_CHECKS // 2} resource and statement combinations "
                "per action)."
            )
        return sim

    async def _entity(self, caller: Principal, source_arn: str, action: str) -> tuple[str, Doc]:
        """Authorize ``action`` on the source entity, then return ``(kind, record)``.

        A caller not allowed ``action`` gets ``AccessDenied`` whether or not the entity exists,
        so names cannot be probed; entities of other accounts are never found.
        """
        account, kind, name = parse_source_arn(source_arn)
        doc: Doc | None = None
        if account == caller.account_id:
            doc = await read(self._store, account, entity_key(kind, name))
            if doc is not None and doc.get("arn") != source_arn:
                doc = None
        await self._authz.authorize(
            caller, action, source_arn, resource_keys(doc) if doc is not None else None
        )
        if doc is None:
            raise NoSuchEntityError(f"The {_NOUN[kind]} with name {name} cannot be found.")
        return kind, doc

    async def _entity_policies(
        self, account: str, kind: str, doc: Doc, exclusions: _Exclusions
    ) -> tuple[list[SourcePolicy], SourcePolicy | None]:
        """The identity policies and the boundary of a user (with its groups), group or role."""
        holders: list[tuple[str, Doc]] = [(kind, doc)]
        if kind == USER:
            groups = await read_many(self._store, account, [f"group/{g}" for g in doc["groups"]])
            holders += [(GROUP, g) for g in groups if g is not None]
        out: list[SourcePolicy] = []
        arns: list[str] = []
        for holder_kind, holder in holders:
            for policy_name, text in holder.get("inline", {}).items():
                if exclusions.inline(holder_kind, holder["name"], policy_name):
                    continue
                source_id = f"{holder_kind}_{holder['name']}_{policy_name}"
                self._add(out, source_id, holder_kind, text)
            arns += [a for a in holder.get("attached", []) if a not in arns]
        texts = await self._managed_texts(account, arns)
        for arn in arns:
            aws = arn in AWS_POLICIES
            if arn in texts and not exclusions.managed(arn, aws):
                kind_name = SOURCE_AWS_MANAGED if aws else SOURCE_CUSTOMER_MANAGED
                self._add(out, arn.rsplit("/", 1)[1], kind_name, texts[arn])
        boundary: SourcePolicy | None = None
        boundary_arn = doc.get("boundary")
        if boundary_arn and not exclusions.boundary():
            found = await self._managed_texts(account, [boundary_arn])
            # A boundary whose policy vanished allows nothing (fail closed, as authorization).
            text = found.get(boundary_arn, _DENY_ALL)
            aws = boundary_arn in AWS_POLICIES
            kind_name = SOURCE_AWS_MANAGED if aws else SOURCE_CUSTOMER_MANAGED
            boundary = SourcePolicy(
                boundary_arn.rsplit("/", 1)[1], kind_name, self._compile_stored(text)
            )
        return out, boundary

    async def _managed_texts(self, account: str, arns: Sequence[str]) -> dict[str, str]:
        """Default-version documents of managed policies (missing ones are left out)."""
        out: dict[str, str] = {}
        own: list[str] = []
        for arn in arns:
            aws = AWS_POLICIES.get(arn)
            if aws is not None:
                out[arn] = aws.document
            else:
                own.append(arn)
        docs = await read_many(
            self._store, account, [f"policy/{a.rsplit('/', 1)[1].lower()}" for a in own]
        )
        for arn, doc in zip(own, docs, strict=True):
            if doc is not None and doc.get("arn") == arn:
                out[arn] = str(doc["versions"][doc["default"]]["doc"])
        return out

    def _compile_stored(self, text: str) -> CompiledPolicy:
        try:
            return self._compile(text)
        except MalformedPolicyError:  # pragma: no cover - documents are validated on write
            return self._compile(_DENY_ALL)

    def _add(self, out: list[SourcePolicy], source_id: str, source_type: str, text: str) -> None:
        try:
            out.append(SourcePolicy(source_id, source_type, self._compile(text)))
        except MalformedPolicyError:  # pragma: no cover - documents are validated on write
            pass


__all__ = [
    "CONTEXT_KEY_TYPES",
    "DETAIL_BOUNDARY",
    "DETAIL_IDENTITY",
    "DETAIL_RESOURCE",
    "EXCLUSION_POLICY_TYPES",
    "MAX_BOUNDARY_POLICIES",
    "MAX_EVALUATIONS",
    "MAX_STATEMENT_CHECKS",
    "RESOURCE_HANDLING_OPTIONS",
    "SOURCE_AWS_MANAGED",
    "SOURCE_CUSTOMER_MANAGED",
    "SOURCE_INPUT",
    "SOURCE_RESOURCE",
    "ActionResult",
    "ContextEntryInput",
    "PolicyExclusion",
    "Position",
    "ResourceResult",
    "SimulationInput",
    "Simulation",
    "SimulatorService",
    "SourcePolicy",
    "StatementRef",
    "check_action_name",
    "check_resource_arn",
    "check_resource_handling",
    "merge_context_keys",
    "parse_caller_arn",
    "parse_context_entries",
    "parse_context_value",
    "parse_resource_owner",
    "parse_source_arn",
]
