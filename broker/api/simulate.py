"""API: the IAM policy-simulator actions of the query protocol.

``SimulateCustomPolicy``, ``SimulatePrincipalPolicy``, ``GetContextKeysForCustomPolicy`` and
``GetContextKeysForPrincipalPolicy`` register into ``broker.api.iam.IAM_ACTIONS`` when this
module is imported. Each handler checks the model's member constraints, calls
:class:`broker.service.simulator.SimulatorService` and renders the model's result shapes
(``EvaluationResults`` paged with ``MaxItems``/``Marker``, one result per action).

The simulator service is built once per ``IamService`` from that service's store and
authorizer, so the simulator authorizes with the same cached policies as every other IAM
action without a change to the listener's wiring.
"""

from __future__ import annotations

import weakref

from broker.api.iam import DOCUMENT, DOCUMENT_TEXT, MARKER, MARKER_TEXT, action, paginate
from broker.api.query import Entries, Node, Params
from broker.core import limits
from broker.core.model import Principal
from broker.core.policy import Decision
from broker.service.iam import IamService
from broker.service.simulator import (
    CONTEXT_KEY_TYPES,
    EXCLUSION_POLICY_TYPES,
    ActionResult,
    ContextEntryInput,
    PolicyExclusion,
    ResourceResult,
    Simulation,
    SimulationInput,
    SimulatorService,
    StatementRef,
)

MAX_ORGANIZATION_LEVELS = 7
"""Model limit of ``OrderedOrganizationPolicyInputList`` (root, OUs, account)."""

MAX_POLICY_EXCLUSIONS = 256
"""Model limit of ``PolicyExclusionList``."""

_SIMULATORS: weakref.WeakKeyDictionary[IamService, SimulatorService] = weakref.WeakKeyDictionary()


def simulator_for(svc: IamService) -> SimulatorService:
    """Return the simulator sharing ``svc``'s store and authorizer (built on first use)."""
    found = _SIMULATORS.get(svc)
    if found is None:
        # The IAM service owns the store and the authorizer this node uses for IAM actions.
        found = SimulatorService(svc._store, svc._authz)
        _SIMULATORS[svc] = found
    return found


# -- parameters ---------------------------------------------------------------------------------


def _list(p: Params, member: str, *, required: bool = False) -> list[str]:
    values = p.members(member)
    if values is None:
        if required:
            p.fail(member, None, "Member must not be null")
        return []
    return values


def _documents(p: Params, member: str, *, required: bool = False) -> tuple[str, ...]:
    docs = _list(p, member, required=required)
    for i, doc in enumerate(docs, start=1):
        p.string(
            f"{member}.member.{i}",
            min_len=1,
            max_len=limits.POLICY_DOCUMENT_MAX_LENGTH,
            pattern=DOCUMENT,
            pattern_text=DOCUMENT_TEXT,
            value=doc,
        )
    return tuple(docs)


def _strings(
    p: Params, member: str, min_len: int, max_len: int, *, required: bool = False
) -> tuple[str, ...]:
    values = _list(p, member, required=required)
    for i, value in enumerate(values, start=1):
        p.string(f"{member}.member.{i}", min_len=min_len, max_len=max_len, value=value)
    return tuple(values)


def _context_entries(p: Params) -> tuple[ContextEntryInput, ...]:
    out: list[ContextEntryInput] = []
    i = 1
    while True:
        base = f"ContextEntries.member.{i}"
        name = p.string(f"{base}.ContextKeyName", min_len=5, max_len=256)
        kind = p.string(f"{base}.ContextKeyType", enum=CONTEXT_KEY_TYPES)
        values = p.members(f"{base}.ContextKeyValues")
        if name is None and kind is None and values is None:
            return tuple(out)
        out.append(ContextEntryInput(name, None if values is None else tuple(values), kind))
        i += 1


def _organization_levels(p: Params) -> tuple[tuple[str, ...], ...]:
    member = "OrderedOrganizationPolicyInputList"
    levels: list[tuple[str, ...]] = []
    while True:
        name = f"{member}.member.{len(levels) + 1}.ServiceControlPolicyInputList"
        if p.members(name) is None:
            break
        levels.append(_documents(p, name))
    if len(levels) > MAX_ORGANIZATION_LEVELS:
        p.fail(
            member, None, f"Member must have length less than or equal to {MAX_ORGANIZATION_LEVELS}"
        )
    return tuple(levels)


def _exclusions(p: Params) -> tuple[PolicyExclusion, ...]:
    member = "PolicyExclusionList"
    out: list[PolicyExclusion] = []
    while True:
        base = f"{member}.member.{len(out) + 1}"
        inline = f"{base}.InlinePolicyIdentifier"
        policy_type = p.string(f"{base}.PolicyType", enum=EXCLUSION_POLICY_TYPES)
        policy_arn = p.string(f"{base}.PolicyArn", min_len=20, max_len=2048)
        names = [p.raw(f"{inline}.{f}") for f in ("PolicyName", "AttachmentType", "AttachmentName")]
        if policy_type is None and policy_arn is None and all(n is None for n in names):
            break
        inline_name = attachment_type = attachment_name = None
        if any(n is not None for n in names):
            inline_name = p.string(f"{inline}.PolicyName", required=True, min_len=1, max_len=128)
            attachment_type = p.string(
                f"{inline}.AttachmentType", required=True, enum=("user", "group", "role")
            )
            attachment_name = p.string(
                f"{inline}.AttachmentName", required=True, min_len=1, max_len=128
            )
        out.append(
            PolicyExclusion(policy_type, policy_arn, inline_name, attachment_type, attachment_name)
        )
    if len(out) > MAX_POLICY_EXCLUSIONS:
        p.fail(
            member, None, f"Member must have length less than or equal to {MAX_POLICY_EXCLUSIONS}"
        )
    return tuple(out)


def _simulation_input(p: Params, *, custom: bool) -> SimulationInput:
    policies = _documents(p, "PolicyInputList", required=custom)
    boundaries = _documents(p, "PermissionsBoundaryPolicyInputList")
    actions = _strings(p, "ActionNames", 3, 128, required=True)
    resources = p.members("ResourceArns")
    if resources is not None:
        _strings(p, "ResourceArns", 1, 2048)
    resource_policy = p.string(
        "ResourcePolicy",
        min_len=1,
        max_len=limits.POLICY_DOCUMENT_MAX_LENGTH,
        pattern=DOCUMENT,
        pattern_text=DOCUMENT_TEXT,
    )
    return SimulationInput(
        action_names=actions,
        resource_arns=None if resources is None else tuple(resources),
        policies=policies,
        boundaries=boundaries,
        organization_levels=_organization_levels(p) if custom else (),
        resource_policy=resource_policy,
        resource_owner=p.string("ResourceOwner", min_len=1, max_len=2048),
        caller_arn=p.string("CallerArn", min_len=1, max_len=2048),
        context_entries=_context_entries(p),
        resource_handling_option=p.string("ResourceHandlingOption", min_len=1, max_len=64),
        exclusions=() if custom else _exclusions(p),
    )


def _page_params(p: Params) -> tuple[str | None, int]:
    marker = p.string("Marker", min_len=1, max_len=320, pattern=MARKER, pattern_text=MARKER_TEXT)
    max_items = p.integer("MaxItems", min_value=1, max_value=limits.LIST_MAX_ITEMS)
    return marker, max_items or limits.LIST_DEFAULT_MAX_ITEMS


def _source_arn(p: Params) -> str:
    return p.req("PolicySourceArn", min_len=20, max_len=2048)


# -- rendering ----------------------------------------------------------------------------------


def statement_node(ref: StatementRef) -> dict[str, Node]:
    """Render a ``Statement`` (a matched statement of a simulation)."""
    node: dict[str, Node] = {
        "SourcePolicyId": ref.source_policy_id,
        "SourcePolicyType": ref.source_policy_type,
    }
    if ref.start is not None:
        node["StartPosition"] = {"Line": ref.start.line, "Column": ref.start.column}
    if ref.end is not None:
        node["EndPosition"] = {"Line": ref.end.line, "Column": ref.end.column}
    return node


def _details(found: tuple[tuple[str, Decision], ...] | None) -> Entries | None:
    if found is None:
        return None
    return Entries((key, decision.value) for key, decision in found)


def _boundary(allowed: bool | None) -> dict[str, Node] | None:
    if allowed is None:
        return None
    return {"AllowedByPermissionsBoundary": allowed}


def resource_result_node(row: ResourceResult) -> dict[str, Node]:
    """Render a ``ResourceSpecificResult``."""
    return {
        "EvalResourceName": row.resource,
        "EvalResourceDecision": row.decision.value,
        "MatchedStatements": [statement_node(s) for s in row.matched],
        "MissingContextValues": list(row.missing),
        "EvalDecisionDetails": _details(row.details),
        "PermissionsBoundaryDecisionDetail": _boundary(row.allowed_by_boundary),
    }


def evaluation_result_node(result: ActionResult) -> dict[str, Node]:
    """Render an ``EvaluationResult`` (members in the model's order)."""
    node: dict[str, Node] = {
        "EvalActionName": result.action,
        "EvalResourceName": result.resource,
        "EvalDecision": result.decision.value,
        "MatchedStatements": [statement_node(s) for s in result.matched],
        "MissingContextValues": list(result.missing),
    }
    if result.allowed_by_organizations is not None:
        node["OrganizationsDecisionDetail"] = {
            "AllowedByOrganizations": result.allowed_by_organizations
        }
    node["PermissionsBoundaryDecisionDetail"] = _boundary(result.allowed_by_boundary)
    node["EvalDecisionDetails"] = _details(result.details)
    if result.resources is not None:
        node["ResourceSpecificResults"] = [resource_result_node(r) for r in result.resources]
    return node


def _results_page(sim: Simulation, marker: str | None, max_items: int) -> dict[str, Node]:
    # Only the actions of the page are evaluated; a costly simulation gets shorter pages.
    size = sim.page_size(max_items)
    page, tail = paginate(list(range(sim.count)), lambda i: f"{i:08d}", marker, size)
    results = [evaluation_result_node(sim.result(i)) for i in page]
    return {"EvaluationResults": results, **tail}


# -- actions ------------------------------------------------------------------------------------


@action("SimulateCustomPolicy")
async def simulate_custom_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    """SimulateCustomPolicy: evaluate policies given as text."""
    inp = _simulation_input(p, custom=True)
    marker, max_items = _page_params(p)
    p.check()
    sim = await simulator_for(svc).simulate_custom(caller, inp)
    return _results_page(sim, marker, max_items)


@action("SimulatePrincipalPolicy")
async def simulate_principal_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    """SimulatePrincipalPolicy: evaluate the policies of a user, group or role."""
    source = _source_arn(p)
    inp = _simulation_input(p, custom=False)
    marker, max_items = _page_params(p)
    p.check()
    sim = await simulator_for(svc).simulate_principal(caller, source, inp)
    return _results_page(sim, marker, max_items)


@action("GetContextKeysForCustomPolicy")
async def get_context_keys_for_custom_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    """GetContextKeysForCustomPolicy: the context keys policies given as text use."""
    policies = _documents(p, "PolicyInputList", required=True)
    p.check()
    keys = await simulator_for(svc).context_keys_for_custom(caller, policies)
    return {"ContextKeyNames": list(keys)}


@action("GetContextKeysForPrincipalPolicy")
async def get_context_keys_for_principal_policy(
    svc: IamService, caller: Principal, p: Params
) -> Node:
    """GetContextKeysForPrincipalPolicy: the context keys of an entity's policies."""
    source = _source_arn(p)
    policies = _documents(p, "PolicyInputList")
    p.check()
    keys = await simulator_for(svc).context_keys_for_principal(caller, source, policies)
    return {"ContextKeyNames": list(keys)}
