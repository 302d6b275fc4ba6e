"""API: ``GetAccountSummary``, ``GenerateCredentialReport`` and ``GetCredentialReport``.

The three IAM actions register into ``broker.api.iam.IAM_ACTIONS`` when this module is
imported. None takes parameters. ``SummaryMap`` renders as ``<entry><key>..</key><value>..``
items; the credential report's ``Content`` is the CSV as a base64 blob, with ``ReportFormat``
``text/csv`` and ``GeneratedTime``.

The report service is built once per ``IamService`` from that service's store, keyring, clock,
authorizer and generations, as ``broker.api.mfa`` does for MFA devices.
"""

from __future__ import annotations

import base64
import weakref

from broker.api.iam import action
from broker.api.query import Entries, Node, Params
from broker.core.model import Principal
from broker.service.iam import IamService
from broker.service.reports import REPORT_FORMAT, ReportService

_SERVICES: weakref.WeakKeyDictionary[IamService, ReportService] = weakref.WeakKeyDictionary()


def reports_for(svc: IamService) -> ReportService:
    """Return the report service sharing ``svc``'s store, keyring, clock and caches."""
    found = _SERVICES.get(svc)
    if found is None:
        found = ReportService(svc._store, svc._keyring, svc._clock, svc._authz, svc._generations)
        _SERVICES[svc] = found
    return found


@action("GetAccountSummary")
async def get_account_summary(svc: IamService, caller: Principal, p: Params) -> Node:
    p.check()
    summary = await reports_for(svc).account_summary(caller)
    return {"SummaryMap": Entries(sorted(summary.items()))}


@action("GenerateCredentialReport")
async def generate_credential_report(svc: IamService, caller: Principal, p: Params) -> Node:
    p.check()
    state = await reports_for(svc).generate(caller)
    return {"State": state}


@action("GetCredentialReport")
async def get_credential_report(svc: IamService, caller: Principal, p: Params) -> Node:
    p.check()
    report = await reports_for(svc).get(caller)
    return {
        "Content": base64.b64encode(report.content).decode("ascii"),
        "ReportFormat": REPORT_FORMAT,
        "GeneratedTime": report.generated,
    }
