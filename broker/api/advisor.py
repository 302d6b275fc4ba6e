"""API: the IAM service last accessed actions (the access advisor) of the query protocol.

``GenerateServiceLastAccessedDetails``, ``GetServiceLastAccessedDetails`` and
``GetServiceLastAccessedDetailsWithEntities`` register into ``broker.api.iam.IAM_ACTIONS`` when
this module is imported. Each handler checks the model's member constraints (spec/aws-wire.md
Appendix A, "Service last accessed"), calls :class:`broker.service.advisor.AdvisorService` and
renders the model's shapes. ``JobCompletionDate`` is omitted while a job is ``IN_PROGRESS`` and
``ServicesLastAccessed`` is then sent empty (spec/aws-wire.md section 3.3).

The tracked actions of an ``ACTION_LEVEL`` report are the ``iam`` and ``sts`` actions this
listener serves (``IAM_ACTIONS`` and ``STS_ACTIONS``, read when a report is generated).

The advisor service is built once per ``IamService`` from that service's store, keyring, clock,
authorizer and generations, like the MFA service.
"""

from __future__ import annotations

import re
import weakref

from broker.api.iam import IAM_ACTIONS, _arn, _page_params, action, paginate
from broker.api.query import Node, Params
from broker.api.sts import STS_ACTIONS
from broker.core.model import Principal
from broker.service.advisor import (
    GRANULARITIES,
    IN_PROGRESS,
    AccessJob,
    AdvisorService,
    EntityAccessReport,
    ServiceAccessReport,
    entity_order,
)
from broker.service.iam import IamService

NAMESPACE = re.compile(r"[\w-]*", re.ASCII)
NAMESPACE_TEXT = r"[\w-]*"
JOB_ID_LENGTH = 36

_SERVICES: weakref.WeakKeyDictionary[IamService, AdvisorService] = weakref.WeakKeyDictionary()


def advisor_for(svc: IamService) -> AdvisorService:
    """Return the advisor service sharing ``svc``'s store, keyring, clock and caches."""
    found = _SERVICES.get(svc)
    if found is None:
        found = AdvisorService(
            svc._store, svc._keyring, svc._clock, svc._authz, svc._generations, svc._rng
        )
        _SERVICES[svc] = found
    return found


def action_catalogue() -> dict[str, list[str]]:
    """The action names this listener serves, per tracked namespace."""
    return {"iam": sorted(IAM_ACTIONS), "sts": sorted(STS_ACTIONS)}


def _job_id(p: Params) -> str:
    return p.req("JobId", min_len=JOB_ID_LENGTH, max_len=JOB_ID_LENGTH)


# -- renderers ----------------------------------------------------------------------------------


def service_node(s: ServiceAccessReport) -> dict[str, Node]:
    """Render a ``ServiceLastAccessed`` structure (members of a never-used service omitted)."""
    node: dict[str, Node] = {
        "ServiceName": s.name,
        "LastAuthenticated": s.last,
        "ServiceNamespace": s.namespace,
        "LastAuthenticatedEntity": s.entity,
        "LastAuthenticatedRegion": s.region,
        "TotalAuthenticatedEntities": s.total,
    }
    if s.actions is not None:
        node["TrackedActionsLastAccessed"] = [
            {
                "ActionName": a.name,
                "LastAccessedEntity": a.entity,
                "LastAccessedTime": a.time,
                "LastAccessedRegion": a.region,
            }
            for a in s.actions
        ]
    return node


def entity_node(e: EntityAccessReport) -> dict[str, Node]:
    """Render an ``EntityDetails`` structure."""
    return {
        "EntityInfo": {"Arn": e.arn, "Name": e.name, "Type": e.type, "Id": e.id, "Path": e.path},
        "LastAuthenticated": e.last,
    }


def _error_node(job: AccessJob) -> dict[str, Node] | None:
    if job.error is None:
        return None
    return {"Message": job.error[1], "Code": job.error[0]}


def _completion(job: AccessJob) -> str | None:
    return None if job.status == IN_PROGRESS else job.completed


# -- actions ------------------------------------------------------------------------------------


@action("GenerateServiceLastAccessedDetails")
async def generate_service_last_accessed_details(
    svc: IamService, caller: Principal, p: Params
) -> Node:
    """GenerateServiceLastAccessedDetails: compute a report now; return its ``JobId``."""
    arn = _arn(p, "Arn")
    granularity = p.string("Granularity", enum=GRANULARITIES) or "SERVICE_LEVEL"
    p.check()
    job_id = await advisor_for(svc).generate(caller, arn, granularity, action_catalogue())
    return {"JobId": job_id}


@action("GetServiceLastAccessedDetails")
async def get_service_last_accessed_details(svc: IamService, caller: Principal, p: Params) -> Node:
    """GetServiceLastAccessedDetails: one page of a report's services."""
    job_id = _job_id(p)
    marker, max_items = _page_params(p)
    p.check()
    job = await advisor_for(svc).get(caller, job_id)
    services = [] if job.status == IN_PROGRESS else list(job.services)
    page, tail = paginate(services, lambda s: s.namespace, marker, max_items)
    return {
        "JobStatus": job.status,
        "JobType": job.job_type,
        "JobCreationDate": job.created,
        "ServicesLastAccessed": [service_node(s) for s in page],
        "JobCompletionDate": _completion(job),
        **tail,
        "Error": _error_node(job),
    }


@action("GetServiceLastAccessedDetailsWithEntities")
async def get_service_last_accessed_details_with_entities(
    svc: IamService, caller: Principal, p: Params
) -> Node:
    """GetServiceLastAccessedDetailsWithEntities: one page of who could use a service."""
    job_id = _job_id(p)
    namespace = p.req(
        "ServiceNamespace",
        min_len=1,
        max_len=64,
        pattern=NAMESPACE,
        pattern_text=NAMESPACE_TEXT,
    )
    marker, max_items = _page_params(p)
    p.check()
    job, entities = await advisor_for(svc).get_with_entities(caller, job_id, namespace)
    if job.status == IN_PROGRESS:
        entities = []
    page, tail = paginate(entities, entity_order, marker, max_items)
    return {
        "JobStatus": job.status,
        "JobCreationDate": job.created,
        "JobCompletionDate": _completion(job),
        "EntityDetailsList": [entity_node(e) for e in page],
        **tail,
        "Error": _error_node(job),
    }
