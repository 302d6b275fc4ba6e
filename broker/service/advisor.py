"""Service: the access advisor (IAM's service last accessed reports) and last-accessed reads.

``GenerateServiceLastAccessedDetails`` takes the ARN of a user, group, role or managed policy
(customer-managed or AWS-managed) and builds a report, stored as a job record; the two ``Get``
actions read it back by job id. The report lists one entry per service namespace the subject's
*identity* policies allow (permissions boundaries, session and resource policies are not
considered, as on AWS):

* a user: its inline and attached policies and those of its groups; a group, a role: their
  inline and attached policies; a policy: its default version;
* every namespace named in the ``Action`` element of an ``Allow`` statement; wildcards in the
  namespace part (``*``, ``*:*``, ``i*:Get*``) and ``NotAction`` statements are expanded over
  the namespaces this broker serves (:data:`BROKER_NAMESPACES`), since nothing is known about
  others. Namespaces the broker does not serve (``s3``, ``ec2``) are listed but were never
  accessed through it.

Whose use counts: a user's or role's own calls; for a group, its members' calls; for a policy,
the calls of the users it is attached to (directly or through a group) and of the roles it is
attached to. The use data are the write-behind ``accessed/`` records of
:mod:`broker.service.access_tracking` (so a call shows up after the next flush).

At ``ACTION_LEVEL``, ``iam`` and ``sts`` entries also list their *tracked actions*: every action
this broker serves in that namespace that the policies allow, with the last use of each (if
any). Reports are computed when generated (the job is ``COMPLETED`` at once; ``FAILED`` if
computing it failed unexpectedly) and kept for :data:`JOB_RETENTION_SECONDS`.

Ordering: services by namespace; tracked actions by name; entities (``...WithEntities``) most
recent use first, never-used entities last, ties by ARN.

Records (per account): ``aajob/<job id>``: the computed report (expires; written without
bumping the generation). ``accessed/`` and ``rlused/`` are read, never written, here.

:func:`last_accessed` gives other features (policy findings) every tracked entity's data.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.clock import iso8601
from broker.core.arn import AWS_MANAGED_ACCOUNT, parse_arn
from broker.core.model import Principal
from broker.core.policy import Glob, PolicyKind, parse_policy
from broker.errors import BrokerError, InvalidInputError, NoSuchEntityError, UnavailableError
from broker.service.access_tracking import ACCESSED, ROLE_LAST_USED, accessed_key
from broker.service.iam import GROUP, POLICY, ROLE, USER, entity_key
from broker.service.managed import BY_ARN as AWS_POLICIES
from broker.service.scoped import AccountScopedService
from broker.service.txn import Doc, Txn, decode, read, read_many
from broker.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

BROKER_NAMESPACES = ("access-analyzer", "iam", "sts")
"""Service namespaces this broker serves (wildcards expand over these)."""

TRACKED_ACTION_NAMESPACES = ("iam", "sts")
"""Namespaces whose actions are reported one by one at ``ACTION_LEVEL``."""

GRANULARITIES = ("SERVICE_LEVEL", "ACTION_LEVEL")
"""``AccessAdvisorUsageGranularityType`` values (``SERVICE_LEVEL`` is the default)."""

JOB_RETENTION_SECONDS = 24 * 3600
"""How long a generated report stays readable (its record then expires)."""

JOB = "aajob"
COMPLETED, FAILED, IN_PROGRESS = "COMPLETED", "FAILED", "IN_PROGRESS"

_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

SERVICE_NAMES: dict[str, str] = {
    "access-analyzer": "IAM Access Analyzer",
    "acm": "AWS Certificate Manager",
    "apigateway": "Amazon API Gateway",
    "athena": "Amazon Athena",
    "autoscaling": "Amazon EC2 Auto Scaling",
    "cloudformation": "AWS CloudFormation",
    "cloudfront": "Amazon CloudFront",
    "cloudtrail": "AWS CloudTrail",
    "cloudwatch": "Amazon CloudWatch",
    "codebuild": "AWS CodeBuild",
    "codecommit": "AWS CodeCommit",
    "codepipeline": "AWS CodePipeline",
    "config": "AWS Config",
    "dynamodb": "Amazon DynamoDB",
    "ec2": "Amazon EC2",
    "ecr": "Amazon Elastic Container Registry",
    "ecs": "Amazon Elastic Container Service",
    "eks": "Amazon Elastic Kubernetes Service",
    "elasticache": "Amazon ElastiCache",
    "elasticloadbalancing": "Elastic Load Balancing",
    "events": "Amazon EventBridge",
    "glue": "AWS Glue",
    "iam": "AWS Identity and Access Management",
    "kinesis": "Amazon Kinesis",
    "kms": "AWS Key Management Service",
    "lambda": "AWS Lambda",
    "logs": "Amazon CloudWatch Logs",
    "organizations": "AWS Organizations",
    "rds": "Amazon RDS",
    "route53": "Amazon Route 53",
    "s3": "Amazon S3",
    "secretsmanager": "AWS Secrets Manager",
    "sns": "Amazon SNS",
    "sqs": "Amazon SQS",
    "ssm": "AWS Systems Manager",
    "states": "AWS Step Functions",
    "sts": "AWS Security Token Service",
}
"""Display names (``ServiceName``) of common namespaces; others show their namespace."""


def service_name(namespace: str) -> str:
    """Return AWS's display name of ``namespace`` (the namespace itself when unknown)."""
    return SERVICE_NAMES.get(namespace, namespace)


# -- what policies allow (pure) ---------------------------------------------------------------


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


@dataclass(slots=True)
class ServiceGrant:
    """What the statements of a set of policies allow within one namespace.

    ``rules`` are ``(negated, patterns)``: an ``Action`` list (the action is allowed when a
    pattern matches) or a ``NotAction`` list (allowed when none matches). Patterns are the
    policy's own, lower-cased, matched against ``namespace:action``.
    """

    namespace: str
    rules: list[tuple[bool, tuple[Glob, ...]]] = field(default_factory=list)

    def allows(self, action: str) -> bool:
        """True when some statement allows ``action`` (a name like ``ListUsers``)."""
        full = f"{self.namespace}:{action.lower()}"
        for negated, globs in self.rules:
            hit = any(g.match(full) for g in globs)
            if hit != negated:
                return True
        return False


def _namespace_part(pattern: str) -> str:
    return pattern.split(":", 1)[0] if ":" in pattern else pattern


def _covers_namespace(pattern: str, namespace: str) -> bool:
    """True when ``pattern`` matches every action of ``namespace`` (``*``, ``ns:*``, ``i*:*``)."""
    if pattern == "*":
        return True
    ns_part, _, action_part = pattern.partition(":")
    return action_part == "*" and Glob.compile(ns_part).match(namespace)


def allowed_services(documents: Iterable[str]) -> dict[str, ServiceGrant]:
    """Return, per namespace, what the ``Allow`` statements of ``documents`` allow.

    Documents that do not parse as identity policies are skipped (they were validated when
    written). See the module docstring for the expansion rules.
    """
    grants: dict[str, ServiceGrant] = {}

    def grant(ns: str) -> ServiceGrant:
        return grants.setdefault(ns, ServiceGrant(ns))

    for text in documents:
        try:
            policy = parse_policy(text, PolicyKind.IDENTITY)
        except BrokerError:
            continue
        for st in policy.statements:
            if st.is_deny:
                continue
            if st.actions is not None:
                patterns = [a.lower() for a in st.actions]
                by_ns: dict[str, list[str]] = {}
                for p in patterns:
                    ns_part = _namespace_part(p)
                    if _has_wildcard(ns_part):
                        matcher = Glob.compile(ns_part)
                        for ns in BROKER_NAMESPACES:
                            if matcher.match(ns):
                                by_ns.setdefault(ns, []).append(p)
                    elif ns_part:
                        by_ns.setdefault(ns_part, []).append(p)
                for ns, found in by_ns.items():
                    grant(ns).rules.append((False, tuple(Glob.compile(p) for p in found)))
            elif st.not_actions is not None:
                excluded = [a.lower() for a in st.not_actions]
                for ns in BROKER_NAMESPACES:
                    if any(_covers_namespace(p, ns) for p in excluded):
                        continue
                    grant(ns).rules.append((True, tuple(Glob.compile(p) for p in excluded)))
    return grants


def _inverted(time: str) -> str:
    """A text that sorts in the opposite order of the ISO 8601 ``time``."""
    return time.translate(str.maketrans("0123456789", "9876543210"))


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionAccess:
    """A tracked action of a report (``TrackedActionLastAccessed``); ``None`` when never used."""

    name: str
    entity: str | None
    time: str | None
    region: str | None


@dataclass(frozen=True, slots=True)
class ServiceAccessReport:
    """One ``ServiceLastAccessed`` entry; ``actions`` is ``None`` unless tracked at ACTION_LEVEL."""

    namespace: str
    name: str
    last: str | None
    entity: str | None
    region: str | None
    total: int
    actions: tuple[ActionAccess, ...] | None


@dataclass(frozen=True, slots=True)
class EntityAccessReport:
    """One ``EntityDetails`` entry: who could have used the service, and when it last did."""

    arn: str
    name: str
    type: str  # USER | ROLE | GROUP
    id: str
    path: str
    last: str | None


@dataclass(frozen=True, slots=True)
class AccessJob:
    """A stored report as the ``Get`` actions show it."""

    job_id: str
    status: str
    job_type: str
    created: str
    completed: str | None
    services: tuple[ServiceAccessReport, ...]
    error: tuple[str, str] | None  # (Code, Message) when FAILED


@dataclass(frozen=True, slots=True)
class ServiceAccess:
    """A tracked entity's last use of one service namespace (from its ``accessed/`` record).

    ``actions`` maps action names (``ListUsers``) to ``(time, region)``.
    """

    namespace: str
    time: str
    region: str
    actions: Mapping[str, tuple[str, str]]


@dataclass(frozen=True, slots=True)
class EntityAccess:
    """Everything tracked about one IAM user or role.

    ``kind`` is ``user`` or ``role``; ``name`` is the *lower-cased* name (records are keyed by
    it: look the entity up with ``entity_key(kind, name)``). ``services`` maps namespaces to
    their last use. ``role_last_used`` is ``(time, region)`` of a role's last use (assumption or
    a call by one of its sessions), ``None`` for users and for roles never used.
    """

    kind: str
    name: str
    services: Mapping[str, ServiceAccess]
    role_last_used: tuple[str, str] | None = None


def _service_access(ns: str, entry: object) -> ServiceAccess | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("time"), str):
        return None
    actions: dict[str, tuple[str, str]] = {}
    raw = entry.get("actions")
    for name, use in raw.items() if isinstance(raw, dict) else ():
        if isinstance(use, dict) and isinstance(use.get("time"), str):
            actions[str(name)] = (use["time"], str(use.get("region") or ""))
    return ServiceAccess(ns, entry["time"], str(entry.get("region") or ""), actions)


def parse_accessed(kind: str, name: str, doc: Doc | None) -> EntityAccess:
    """Turn an ``accessed/<kind>/<name>`` document (or ``None``) into an :class:`EntityAccess`."""
    services: dict[str, ServiceAccess] = {}
    for ns, entry in (doc or {}).items():
        found = _service_access(str(ns), entry)
        if found is not None:
            services[found.namespace] = found
    return EntityAccess(kind, name.lower(), services)


async def last_accessed(store: Store, account_id: str) -> dict[tuple[str, str], EntityAccess]:
    """Return the tracked last-accessed data of every user and role of ``account_id``.

    The result maps ``(kind, lower-cased name)`` (kind ``user`` or ``role``) to an
    :class:`EntityAccess` built from the ``accessed/`` records and, for roles, the
    ``rlused/`` records (a role assumed but never used for a call appears with no services and
    its ``role_last_used`` set). Entities never used are absent. Data reach the store with each
    tracking flush (``[tracking] flush_seconds``), so the last seconds of use may be missing.
    Records of deleted entities may linger until a new entity of the same name replaces them;
    join the result with the entity records. Raises ``UnavailableError`` when the store is
    unreachable.
    """
    try:
        accessed = await store.scan(account_id, f"{ACCESSED}/")
        used = await store.scan(account_id, f"{ROLE_LAST_USED}/")
    except StoreUnavailable:
        raise UnavailableError() from None
    out: dict[tuple[str, str], EntityAccess] = {}
    for rec in accessed:
        parts = rec.key.split("/", 2)
        if len(parts) != 3 or parts[1] not in (USER, ROLE):
            continue
        out[(parts[1], parts[2])] = parse_accessed(parts[1], parts[2], decode(rec.value))
    for rec in used:
        name = rec.key.split("/", 1)[1]
        doc = decode(rec.value)
        if not isinstance(doc.get("time"), str):
            continue
        when = (doc["time"], str(doc.get("region") or ""))
        known = out.get((ROLE, name))
        services = known.services if known is not None else {}
        out[(ROLE, name)] = EntityAccess(ROLE, name, services, when)
    return out


# -- the subject of a report ------------------------------------------------------------------


@dataclass(slots=True)
class _Subject:
    """What a report is about: the policy documents that count and the entities whose use does."""

    documents: list[str]
    entities: list[tuple[str, Doc]]  # (USER | ROLE, entity record)


class AdvisorService(AccountScopedService):
    """The service last accessed reports of every account the broker hosts."""

    # -- GenerateServiceLastAccessedDetails --------------------------------------------------

    async def generate(
        self,
        caller: Principal,
        arn: str,
        granularity: str,
        catalogue: Mapping[str, Sequence[str]],
    ) -> str:
        """GenerateServiceLastAccessedDetails: compute and store a report; return its job id.

        ``catalogue`` lists, per namespace, the action names the broker serves (the tracked
        actions of an ``ACTION_LEVEL`` report).
        """
        if granularity not in GRANULARITIES:
            raise InvalidInputError(f"Invalid Granularity {granularity}.")
        kind, name = self._parse_subject_arn(caller, arn)
        await self._allow(caller, "iam:GenerateServiceLastAccessedDetails", arn)
        account = caller.account_id
        subject = await self._subject(account, kind, name, arn)
        job_id = str(uuid.UUID(bytes=self._rng(16), version=4))
        created = iso8601(self._clock.now())
        doc: Doc = {
            "id": job_id,
            "arn": arn,
            "type": granularity,
            "created": created,
        }
        try:
            services, entities = await self._compute(account, subject, granularity, catalogue)
        except BrokerError:
            raise  # a store outage: nothing is stored, the caller retries
        except Exception:
            log.error("account=%s access report failed", account, exc_info=True)
            doc.update(
                status=FAILED,
                completed=iso8601(self._clock.now()),
                error=["ServiceFailure", "The report could not be generated."],
                services=[],
                entities={},
            )
        else:
            doc.update(
                status=COMPLETED,
                completed=iso8601(self._clock.now()),
                error=None,
                services=services,
                entities=entities,
            )
        expires = self._clock.now().timestamp() + JOB_RETENTION_SECONDS
        doc["expires"] = expires

        async def fn(txn: Txn) -> None:
            txn.bump = False  # reports never change what a cache derives
            txn.put(f"{JOB}/{job_id}", doc, expires_at=expires)

        await self._tx(account, fn)
        return job_id

    @staticmethod
    def _parse_subject_arn(caller: Principal, arn: str) -> tuple[str, str]:
        """Return ``(kind, name)`` of a user, group, role or policy ARN (``InvalidInput``)."""
        parsed = parse_arn(arn)
        invalid = InvalidInputError(f"ARN {arn} is not valid.")
        if parsed is None or parsed.service != "iam" or parsed.region:
            raise invalid
        kind = parsed.resource.split("/", 1)[0]
        if kind not in (USER, GROUP, ROLE, POLICY) or "/" not in parsed.resource:
            raise invalid
        name = parsed.resource.rsplit("/", 1)[1]
        if not name:
            raise invalid
        if parsed.account == AWS_MANAGED_ACCOUNT and kind == POLICY:
            return kind, name
        if len(parsed.account) != 12 or not parsed.account.isdigit():
            raise invalid
        if parsed.account != caller.account_id:
            raise NoSuchEntityError(f"The entity {arn} cannot be found.")
        return kind, name

    async def _subject(self, account: str, kind: str, name: str, arn: str) -> _Subject:
        if kind == POLICY:
            return await self._policy_subject(account, arn)
        doc = await read(self._store, account, entity_key(kind, name))
        if doc is None or doc["arn"] != arn:
            raise NoSuchEntityError(f"The {kind} with name {name} cannot be found.")
        if kind == USER:
            groups = await read_many(self._store, account, [f"{GROUP}/{g}" for g in doc["groups"]])
            holders = [doc, *(g for g in groups if g is not None)]
            return _Subject(await self._documents(account, holders), [(USER, doc)])
        if kind == ROLE:
            return _Subject(await self._documents(account, [doc]), [(ROLE, doc)])
        members = await read_many(self._store, account, [f"{USER}/{m}" for m in doc["members"]])
        users = [(USER, u) for u in members if u is not None]
        return _Subject(await self._documents(account, [doc]), users)

    async def _policy_subject(self, account: str, arn: str) -> _Subject:
        missing = NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
        aws = AWS_POLICIES.get(arn)
        if aws is not None:
            document = aws.document
            attachments = await read(self._store, account, f"awspolicy/{aws.name}") or {}
        else:
            doc = await read(self._store, account, entity_key(POLICY, arn.rsplit("/", 1)[1]))
            if doc is None or doc["arn"] != arn:
                raise missing
            document = doc["versions"][doc["default"]]["doc"]
            attachments = doc
        att: Mapping[str, list[str]] = attachments.get("attachments", {})
        groups = await read_many(self._store, account, [f"{GROUP}/{g}" for g in att.get(GROUP, [])])
        user_names: list[str] = list(att.get(USER, []))
        for group in groups:
            if group is not None:
                user_names += [m for m in group["members"] if m not in user_names]
        users = await read_many(self._store, account, [f"{USER}/{u}" for u in user_names])
        roles = await read_many(self._store, account, [f"{ROLE}/{r}" for r in att.get(ROLE, [])])
        entities = [(USER, u) for u in users if u is not None]
        entities += [(ROLE, r) for r in roles if r is not None]
        return _Subject([document], entities)

    async def _documents(self, account: str, holders: Sequence[Doc]) -> list[str]:
        """The inline and attached (default version) policy documents of ``holders``."""
        out: list[str] = []
        arns: list[str] = []
        for holder in holders:
            out += list(holder.get("inline", {}).values())
            arns += [a for a in holder.get("attached", []) if a not in arns]
        own = [a for a in arns if a not in AWS_POLICIES]
        docs = await read_many(
            self._store, account, [entity_key(POLICY, a.rsplit("/", 1)[1]) for a in own]
        )
        out += [AWS_POLICIES[a].document for a in arns if a in AWS_POLICIES]
        for arn, doc in zip(own, docs, strict=True):
            if doc is not None and doc["arn"] == arn:
                out.append(doc["versions"][doc["default"]]["doc"])
        return out

    async def _compute(
        self,
        account: str,
        subject: _Subject,
        granularity: str,
        catalogue: Mapping[str, Sequence[str]],
    ) -> tuple[list[Doc], dict[str, list[Doc]]]:
        """Build the stored form of a report: its services and, per namespace, its entities."""
        grants = allowed_services(subject.documents)
        records = await read_many(
            self._store,
            account,
            [accessed_key(kind, doc["name"]) for kind, doc in subject.entities],
        )
        uses = [
            (kind, doc, parse_accessed(kind, doc["name"], rec))
            for (kind, doc), rec in zip(subject.entities, records, strict=True)
        ]
        services: list[Doc] = []
        entities: dict[str, list[Doc]] = {}
        for ns in sorted(grants):
            last: tuple[str, str, str] | None = None  # (time, entity ARN, region)
            total = 0
            listed: list[Doc] = []
            for kind, doc, use in uses:
                found = use.services.get(ns)
                listed.append(
                    {
                        "arn": doc["arn"],
                        "name": doc["name"],
                        "type": kind.upper(),
                        "id": doc["id"],
                        "path": doc["path"],
                        "last": found.time if found is not None else None,
                    }
                )
                if found is None:
                    continue
                total += 1
                if last is None or (found.time, doc["arn"]) > (last[0], last[1]):
                    last = (found.time, doc["arn"], found.region)
            entry: Doc = {
                "ns": ns,
                "name": service_name(ns),
                "last": last[0] if last else None,
                "entity": last[1] if last else None,
                "region": last[2] if last else None,
                "total": total,
                "actions": None,
            }
            if granularity == "ACTION_LEVEL" and ns in TRACKED_ACTION_NAMESPACES:
                entry["actions"] = self._tracked_actions(ns, grants[ns], catalogue, uses)
            services.append(entry)
            entities[ns] = listed
        return services, entities

    @staticmethod
    def _tracked_actions(
        ns: str,
        grant: ServiceGrant,
        catalogue: Mapping[str, Sequence[str]],
        uses: Sequence[tuple[str, Doc, EntityAccess]],
    ) -> list[Doc]:
        out: list[Doc] = []
        for action in sorted(set(catalogue.get(ns, ()))):
            if not grant.allows(action):
                continue
            best: tuple[str, str, str] | None = None  # (time, entity ARN, region)
            for _, doc, use in uses:
                found = use.services.get(ns)
                hit = found.actions.get(action) if found is not None else None
                if hit is not None and (best is None or (hit[0], doc["arn"]) > best[:2]):
                    best = (hit[0], doc["arn"], hit[1])
            out.append(
                {
                    "name": action,
                    "entity": best[1] if best else None,
                    "time": best[0] if best else None,
                    "region": best[2] if best else None,
                }
            )
        return out

    # -- GetServiceLastAccessedDetails(WithEntities) -----------------------------------------

    async def _job(self, caller: Principal, job_id: str) -> Doc:
        missing = NoSuchEntityError(f"The job with ID {job_id} cannot be found.")
        if not _JOB_ID.fullmatch(job_id):
            raise missing
        doc = await read(self._store, caller.account_id, f"{JOB}/{job_id}")
        if doc is None or float(doc.get("expires", 0)) <= self._clock.now().timestamp():
            raise missing
        return doc

    async def get(self, caller: Principal, job_id: str) -> AccessJob:
        """GetServiceLastAccessedDetails: the report of job ``job_id`` of the caller's account."""
        await self._allow(caller, "iam:GetServiceLastAccessedDetails", "*")
        doc = await self._job(caller, job_id)
        return _view(doc)

    async def get_with_entities(
        self, caller: Principal, job_id: str, namespace: str
    ) -> tuple[AccessJob, list[EntityAccessReport]]:
        """GetServiceLastAccessedDetailsWithEntities: who could have used ``namespace``.

        Entities come most recent use first; a namespace not in the report has none.
        """
        await self._allow(caller, "iam:GetServiceLastAccessedDetailsWithEntities", "*")
        doc = await self._job(caller, job_id)
        listed = doc.get("entities", {}).get(namespace.lower(), [])
        out = [
            EntityAccessReport(e["arn"], e["name"], e["type"], e["id"], e["path"], e.get("last"))
            for e in listed
        ]
        out.sort(key=entity_order)
        return _view(doc), out


def entity_order(entity: EntityAccessReport) -> str:
    """Sort key of entities: most recent use first, never-used last, then by ARN."""
    if entity.last is None:
        return "1/" + entity.arn
    return "0/" + _inverted(entity.last) + "/" + entity.arn


def _view(doc: Doc) -> AccessJob:
    services = tuple(
        ServiceAccessReport(
            namespace=s["ns"],
            name=s["name"],
            last=s.get("last"),
            entity=s.get("entity"),
            region=s.get("region"),
            total=int(s.get("total", 0)),
            actions=None
            if s.get("actions") is None
            else tuple(
                ActionAccess(a["name"], a.get("entity"), a.get("time"), a.get("region"))
                for a in s["actions"]
            ),
        )
        for s in doc.get("services", [])
    )
    error = doc.get("error")
    return AccessJob(
        job_id=doc["id"],
        status=doc["status"],
        job_type=doc["type"],
        created=doc["created"],
        completed=doc.get("completed"),
        services=services,
        error=(str(error[0]), str(error[1])) if error else None,
    )
