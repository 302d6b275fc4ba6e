"""Service: an account's unused-access and credential-hygiene findings (``broker policy findings``).

:meth:`AccountFindings.account_findings` reads one account's records through the store
interface and reports, as plain dictionaries ready for JSON:

==========================================  ====================================================
issue code                                  when
==========================================  ====================================================
``UNUSED_ACCESS_KEY``                       an access key last used more than N days ago
``ACCESS_KEY_UNUSED_SINCE_CREATION``        an access key never used (with its age in days;
                                            ``exceedsThreshold`` when older than N days)
``ACCESS_KEY_ROTATION``                     an active key older than :data:`ROTATION_DAYS`
``UNUSED_PASSWORD``                         a console password unused for N days (or never
                                            used and set more than N days ago)
``ROLE_NEVER_ASSUMED``                      a role with no ``rlused/`` record
``UNUSED_ROLE``                             a role last used more than N days ago
``UNUSED_PERMISSION``                       services a user's or role's policies allow that
                                            it never used (or not for N days)
``USER_POLICY_ATTACHED_DIRECTLY``           inline or managed policies on a user, not a group
``ROOT_ACCESS_KEY_PRESENT``                 the root user has access keys
``ROOT_USER_WITHOUT_MFA``                   the root user has no MFA device
``ADMIN_USER_WITHOUT_MFA``                  a user allowed ``*`` on ``*`` (AdministratorAccess
                                            or an equivalent statement) with no MFA device
==========================================  ====================================================

Each finding carries ``issueCode``, ``findingType`` (Access Analyzer's unused-access type
where one exists: ``UnusedIAMUserAccessKey``, ``UnusedIAMUserPassword``, ``UnusedIAMRole``,
``UnusedPermission``; otherwise ``CredentialHygiene``), ``severity`` (``SECURITY_WARNING``,
``WARNING`` or ``SUGGESTION``), ``resource`` (an ARN), ``resourceType``, ``findingDetails`` and
``details``. Records written by other features (``login/``, ``pwused/``, ``rlused/``,
``accessed/``) are read by key; an absent record means "never".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.clock import Clock, iso8601
from broker.core.arn import root_arn
from broker.core.policy import Glob, PolicyKind, parse_policy
from broker.errors import MalformedPolicyError, NoSuchEntityError
from broker.service.managed import BY_ARN as AWS_POLICIES
from broker.service.txn import Doc, read, read_many, scan
from broker.store.base import Store

DEFAULT_UNUSED_DAYS = 90
"""Default threshold of ``--unused-days`` (Access Analyzer's default tracking period)."""

ROTATION_DAYS = 90
"""Age after which an active access key should be rotated (IAM best practice)."""

KNOWN_SERVICES = ("access-analyzer", "iam", "sts")
"""Services the broker serves: the ones a wildcard service prefix is expanded to."""

_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class _Entity:
    """A user or role with every policy document that applies to it."""

    kind: str  # "user" | "role"
    doc: Doc
    documents: tuple[str, ...]


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _days(now: datetime, then: datetime) -> int:
    return max(0, int((now - then).total_seconds() // _DAY))


def _finding(
    code: str,
    finding_type: str,
    severity: str,
    resource: str,
    resource_type: str,
    text: str,
    **details: object,
) -> Doc:
    return {
        "issueCode": code,
        "findingType": finding_type,
        "severity": severity,
        "resource": resource,
        "resourceType": resource_type,
        "findingDetails": text,
        "details": details,
    }


def allowed_services(documents: Iterable[str]) -> tuple[list[str], bool]:
    """Return the service prefixes the documents' ``Allow`` statements grant, sorted, and
    whether any statement allows everything (``*`` action on ``*`` resource, no condition).

    A wildcard prefix (``*``, ``i*``) is expanded to the matching :data:`KNOWN_SERVICES`;
    ``NotAction`` statements are not expanded (they allow an open-ended set).
    """
    services: set[str] = set()
    admin = False
    for text in documents:
        try:
            policy = parse_policy(text, PolicyKind.IDENTITY)
        except MalformedPolicyError:
            continue
        for st in policy.statements:
            if st.effect != "Allow" or st.actions is None:
                continue
            for action in st.actions:
                prefix = action.partition(":")[0].lower() if action != "*" else "*"
                if "*" in prefix or "?" in prefix:
                    glob = Glob.compile(prefix)
                    services.update(s for s in KNOWN_SERVICES if glob.match(s))
                else:
                    services.add(prefix)
            wide_action = any(a in ("*", "*:*") for a in st.actions)
            if wide_action and "*" in (st.resources or ()) and not st.conditions:
                admin = True
    return sorted(services), admin


class AccountFindings:
    """Computes one account's findings from its records (read-only)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def account_findings(self, account: str, unused_days: int = DEFAULT_UNUSED_DAYS) -> Doc:
        """Return ``{"account", "generated", "unusedDays", "findings": [...]}``.

        Raises :class:`NoSuchEntityError` when the account does not exist.
        """
        acct = await read(self._store, account, "account")
        if acct is None:
            raise NoSuchEntityError(f"The account {account} does not exist.")
        now = self._clock.now()
        out: list[Doc] = []
        out += await self._root(account, acct, now, unused_days)
        users = await scan(self._store, account, "user/")
        groups = {g["name"].lower(): g for g in await scan(self._store, account, "group/")}
        roles = await scan(self._store, account, "role/")
        for user in users:
            entity = await self._entity(account, "user", user, groups)
            out += await self._user(account, entity, now, unused_days)
            out += await self._permissions(account, entity, now, unused_days)
        for role in roles:
            entity = await self._entity(account, "role", role, {})
            out += await self._role(account, role, now, unused_days)
            out += await self._permissions(account, entity, now, unused_days)
        return {
            "account": account,
            "generated": iso8601(now),
            "unusedDays": unused_days,
            "findings": out,
        }

    # -- gathering -------------------------------------------------------------------------

    async def _documents(self, account: str, holders: Sequence[Doc]) -> tuple[str, ...]:
        texts: list[str] = []
        arns: list[str] = []
        for holder in holders:
            texts += [str(d) for d in (holder.get("inline") or {}).values()]
            arns += [a for a in holder.get("attached") or () if a not in arns]
        own = [a for a in arns if a not in AWS_POLICIES]
        docs = await read_many(
            self._store, account, [f"policy/{a.rsplit('/', 1)[1].lower()}" for a in own]
        )
        for arn in arns:
            if arn in AWS_POLICIES:
                texts.append(AWS_POLICIES[arn].document)
        for arn, doc in zip(own, docs, strict=True):
            if doc is not None and doc.get("arn") == arn:
                texts.append(str(doc["versions"][doc["default"]]["doc"]))
        return tuple(texts)

    async def _entity(self, account: str, kind: str, doc: Doc, groups: dict[str, Doc]) -> _Entity:
        holders = [doc]
        if kind == "user":
            holders += [groups[g.lower()] for g in doc.get("groups") or () if g.lower() in groups]
        return _Entity(kind, doc, await self._documents(account, holders))

    # -- checks ----------------------------------------------------------------------------

    async def _root(self, account: str, acct: Doc, now: datetime, unused_days: int) -> list[Doc]:
        out: list[Doc] = []
        arn = root_arn(account)
        keys = list(acct.get("root_keys") or ())
        if keys:
            recs = await read_many(self._store, account, [f"akey/{k}" for k in keys])
            present = [r for r in recs if r is not None]
            if present:
                out.append(
                    _finding(
                        "ROOT_ACCESS_KEY_PRESENT",
                        "CredentialHygiene",
                        "SECURITY_WARNING",
                        arn,
                        "AWS::IAM::Root",
                        "The root user has access keys. Delete them and use IAM users or roles "
                        "for programmatic access.",
                        accessKeyIds=[r["id"] for r in present],
                    )
                )
                for rec in present:
                    out += await self._key(account, arn, "AWS::IAM::Root", rec, now, unused_days)
        if not acct.get("mfa"):
            out.append(
                _finding(
                    "ROOT_USER_WITHOUT_MFA",
                    "CredentialHygiene",
                    "SECURITY_WARNING",
                    arn,
                    "AWS::IAM::Root",
                    "The root user has no MFA device. Enable MFA for the root user.",
                )
            )
        return out

    async def _key(
        self,
        account: str,
        owner_arn: str,
        owner_type: str,
        rec: Doc,
        now: datetime,
        unused_days: int,
    ) -> list[Doc]:
        """Findings of one access key: rotation, and never used or unused for N days."""
        out: list[Doc] = []
        akid = str(rec["id"])
        created = _parse_time(rec.get("created"))
        age = _days(now, created) if created is not None else 0
        active = rec.get("status") == "Active"
        if active and age > ROTATION_DAYS:
            out.append(
                _finding(
                    "ACCESS_KEY_ROTATION",
                    "CredentialHygiene",
                    "WARNING",
                    owner_arn,
                    owner_type,
                    f"The access key {akid} is {age} days old. Rotate access keys at least "
                    f"every {ROTATION_DAYS} days.",
                    accessKeyId=akid,
                    created=rec.get("created"),
                    ageDays=age,
                )
            )
        used = await read(self._store, account, f"akused/{akid}")
        last = _parse_time(used.get("time")) if used is not None else None
        if last is None:
            out.append(
                _finding(
                    "ACCESS_KEY_UNUSED_SINCE_CREATION",
                    "UnusedIAMUserAccessKey",
                    "WARNING" if age >= unused_days else "SUGGESTION",
                    owner_arn,
                    owner_type,
                    f"The access key {akid} was never used since its creation {age} days ago.",
                    accessKeyId=akid,
                    status=rec.get("status"),
                    created=rec.get("created"),
                    ageDays=age,
                    exceedsThreshold=age >= unused_days,
                )
            )
        elif _days(now, last) >= unused_days:
            idle = _days(now, last)
            out.append(
                _finding(
                    "UNUSED_ACCESS_KEY",
                    "UnusedIAMUserAccessKey",
                    "WARNING",
                    owner_arn,
                    owner_type,
                    f"The access key {akid} was last used {idle} days ago.",
                    accessKeyId=akid,
                    status=rec.get("status"),
                    lastAccessed=iso8601(last),
                    daysUnused=idle,
                )
            )
        return out

    async def _user(
        self, account: str, entity: _Entity, now: datetime, unused_days: int
    ) -> list[Doc]:
        user = entity.doc
        arn = str(user["arn"])
        lower = str(user["name"]).lower()
        out: list[Doc] = []
        keys = list(user.get("keys") or ())
        recs = await read_many(self._store, account, [f"akey/{k}" for k in keys])
        for rec in recs:
            if rec is not None:
                out += await self._key(account, arn, "AWS::IAM::User", rec, now, unused_days)
        login = await read(self._store, account, f"login/{lower}")
        if login is not None:
            used = await read(self._store, account, f"pwused/{lower}")
            last = _parse_time(used.get("time")) if used is not None else None
            since = _parse_time(login.get("created"))
            if last is not None and _days(now, last) >= unused_days:
                out.append(
                    _finding(
                        "UNUSED_PASSWORD",
                        "UnusedIAMUserPassword",
                        "WARNING",
                        arn,
                        "AWS::IAM::User",
                        f"The console password of {user['name']} was last used "
                        f"{_days(now, last)} days ago.",
                        lastAccessed=iso8601(last),
                        daysUnused=_days(now, last),
                    )
                )
            elif last is None and since is not None and _days(now, since) >= unused_days:
                out.append(
                    _finding(
                        "UNUSED_PASSWORD",
                        "UnusedIAMUserPassword",
                        "WARNING",
                        arn,
                        "AWS::IAM::User",
                        f"The console password of {user['name']} was never used since it was "
                        f"set {_days(now, since)} days ago.",
                        lastAccessed=None,
                        created=login.get("created"),
                        daysUnused=_days(now, since),
                    )
                )
        inline = sorted(user.get("inline") or {})
        attached = list(user.get("attached") or ())
        if inline or attached:
            out.append(
                _finding(
                    "USER_POLICY_ATTACHED_DIRECTLY",
                    "CredentialHygiene",
                    "SUGGESTION",
                    arn,
                    "AWS::IAM::User",
                    f"The user {user['name']} has policies attached directly. Grant "
                    "permissions through groups instead.",
                    inlinePolicies=inline,
                    attachedPolicies=attached,
                )
            )
        _, admin = allowed_services(entity.documents)
        if admin and not user.get("mfa"):
            out.append(
                _finding(
                    "ADMIN_USER_WITHOUT_MFA",
                    "CredentialHygiene",
                    "SECURITY_WARNING",
                    arn,
                    "AWS::IAM::User",
                    f"The user {user['name']} is allowed every action on every resource and "
                    "has no MFA device. Enable MFA for this user.",
                )
            )
        return out

    async def _role(self, account: str, role: Doc, now: datetime, unused_days: int) -> list[Doc]:
        arn = str(role["arn"])
        used = await read(self._store, account, f"rlused/{str(role['name']).lower()}")
        last = _parse_time(used.get("time")) if used is not None else None
        created = _parse_time(role.get("created"))
        age = _days(now, created) if created is not None else 0
        if last is None:
            return [
                _finding(
                    "ROLE_NEVER_ASSUMED",
                    "UnusedIAMRole",
                    "WARNING" if age >= unused_days else "SUGGESTION",
                    arn,
                    "AWS::IAM::Role",
                    f"The role {role['name']} was never used since its creation {age} days ago.",
                    created=role.get("created"),
                    ageDays=age,
                    exceedsThreshold=age >= unused_days,
                )
            ]
        idle = _days(now, last)
        if idle < unused_days:
            return []
        return [
            _finding(
                "UNUSED_ROLE",
                "UnusedIAMRole",
                "WARNING",
                arn,
                "AWS::IAM::Role",
                f"The role {role['name']} was last used {idle} days ago.",
                lastAccessed=iso8601(last),
                daysUnused=idle,
            )
        ]

    async def _permissions(
        self, account: str, entity: _Entity, now: datetime, unused_days: int
    ) -> list[Doc]:
        services, _ = allowed_services(entity.documents)
        if not services:
            return []
        name = str(entity.doc["name"])
        accessed = await read(self._store, account, f"accessed/{entity.kind}/{name.lower()}")
        unused: list[Doc] = []
        for service in services:
            data = (accessed or {}).get(service)
            last = _parse_time(data.get("time")) if isinstance(data, dict) else None
            if last is None:
                unused.append({"serviceNamespace": service, "lastAccessed": None})
            elif _days(now, last) >= unused_days:
                unused.append({"serviceNamespace": service, "lastAccessed": iso8601(last)})
        if not unused:
            return []
        listed = ", ".join(u["serviceNamespace"] for u in unused)
        return [
            _finding(
                "UNUSED_PERMISSION",
                "UnusedPermission",
                "SUGGESTION",
                str(entity.doc["arn"]),
                "AWS::IAM::User" if entity.kind == "user" else "AWS::IAM::Role",
                f"The {entity.kind} {name} is allowed services it has not used: {listed}. "
                "Remove the permissions it does not need.",
                services=unused,
            )
        ]


__all__ = [
    "DEFAULT_UNUSED_DAYS",
    "KNOWN_SERVICES",
    "ROTATION_DAYS",
    "AccountFindings",
    "allowed_services",
]
