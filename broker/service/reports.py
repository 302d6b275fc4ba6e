"""Service: account-wide reports (``GetAccountSummary`` and the IAM credential report).

``GetAccountSummary`` counts the account's entities (from the ``count/<kind>`` records the
IAM and OIDC services keep, plus MFA devices and policy attachments) next to the quotas of
``broker.core.limits``, and says whether the root user has MFA and access keys.

The credential report (https://docs.aws.amazon.com/IAM/latest/UserGuide/credential-reports.html)
is a CSV with one row for the root user and one per IAM user. It lives in the account's
``credreport`` record: ``{"state", "generated", "csv" (base64), "build"}``.

- ``GenerateCredentialReport`` answers ``STARTED`` when it starts a build, ``INPROGRESS``
  while one runs (on any node), and ``COMPLETE`` when a report younger than
  :data:`REPORT_MAX_AGE` exists: that report is kept, as AWS regenerates at most every four
  hours.
- The build runs as a background task on the node that received ``Generate``: it marks the
  record ``INPROGRESS``, reads the account, and writes ``COMPLETE`` with the CSV. A build
  abandoned by a node that stopped is taken over by the next ``Generate`` once it is older
  than :data:`BUILD_STALE_AFTER`. Each build carries a random id, so a late writer never
  overwrites a newer build.
- ``GetCredentialReport`` returns the CSV; ``ReportNotPresent`` (410) before the first
  report, ``ReportInProgress`` (404) while a build runs, ``ReportExpired`` (410) once the
  report is older than :data:`REPORT_MAX_AGE`.

Passwords come from the ``login/<user>``, ``pwused/<user>`` and ``pwpolicy`` records
(read by key; absent records mean no password and no policy). Only dates and flags leave
them; a password hash is never copied into the report or the log.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.clock import Clock, iso8601
from broker.core import limits
from broker.core.arn import root_arn
from broker.core.keyring import Keyring
from broker.core.model import Principal
from broker.errors import (
    CredentialReportExpiredError,
    CredentialReportNotPresentError,
    CredentialReportNotReadyError,
)
from broker.service.authz import Authorizer
from broker.service.cache import Generations
from broker.service.scoped import AccountScopedService
from broker.service.txn import Doc, Txn, read, read_many, scan
from broker.store.base import Store

log = logging.getLogger(__name__)

REPORT_KEY = "credreport"
STARTED, INPROGRESS, COMPLETE = "STARTED", "INPROGRESS", "COMPLETE"
REPORT_FORMAT = "text/csv"

REPORT_MAX_AGE = timedelta(hours=4)
"""A report younger than this is kept by Generate; an older one has expired for Get."""

BUILD_STALE_AFTER = timedelta(minutes=2)
"""A build not finished after this long is taken over by the next Generate."""

REPORT_HEADER: tuple[str, ...] = (
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "password_next_rotation",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
    "cert_1_active",
    "cert_1_last_rotated",
    "cert_2_active",
    "cert_2_last_rotated",
)
"""The credential report's columns, exactly as AWS names and orders them."""

ROOT_ROW_USER = "<root_account>"
NOT_APPLICABLE = "N/A"
NO_INFORMATION = "no_information"
NOT_SUPPORTED = "not_supported"

GLOBAL_ENDPOINT_TOKEN_VERSION = 1
"""``GlobalEndpointTokenVersion``: STS tokens here are valid in every region (version 1)."""


@dataclass(frozen=True, slots=True)
class CredentialReport:
    """A finished credential report: the CSV bytes and when it was generated."""

    content: bytes
    generated: datetime


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def report_time(text: object) -> str:
    """Render a stored time as the report does (``2024-05-01T12:00:00+00:00``), else N/A."""
    moment = _parse_time(text)
    if moment is None:
        return NOT_APPLICABLE
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _key_columns(key: Doc | None, used: Doc | None) -> list[str]:
    """The five ``access_key_N_*`` columns of one key slot."""
    if key is None:
        return ["false", NOT_APPLICABLE, NOT_APPLICABLE, NOT_APPLICABLE, NOT_APPLICABLE]
    if used is None:
        return [
            _flag(key.get("status") == "Active"),
            report_time(key.get("created")),
            NOT_APPLICABLE,
            NOT_APPLICABLE,
            NOT_APPLICABLE,
        ]
    return [
        _flag(key.get("status") == "Active"),
        report_time(key.get("created")),
        report_time(used.get("time")),
        str(used.get("region") or NOT_APPLICABLE),
        str(used.get("service") or NOT_APPLICABLE),
    ]


def _keys_columns(keys: Sequence[tuple[Doc, Doc | None]]) -> list[str]:
    """Both key slots: keys ordered by creation time (key 1 is the older)."""
    ordered = sorted(keys, key=lambda pair: (str(pair[0].get("created", "")), pair[0]["id"]))
    out: list[str] = []
    for slot in range(2):
        if slot < len(ordered):
            out += _key_columns(*ordered[slot])
        else:
            out += _key_columns(None, None)
    return out


_CERT_COLUMNS = ["false", NOT_APPLICABLE, "false", NOT_APPLICABLE]
"""No signing certificates exist here."""


def _password_columns(login: Doc | None, used: Doc | None, policy: Doc | None) -> list[str]:
    """``password_enabled`` .. ``password_next_rotation`` of an IAM user."""
    if login is None:
        return ["false", NOT_APPLICABLE, NOT_APPLICABLE, NOT_APPLICABLE]
    changed = login.get("changed") or login.get("created")
    last_used = report_time(used.get("time")) if used is not None else NO_INFORMATION
    rotation = NOT_APPLICABLE
    max_age = policy.get("MaxPasswordAge") if policy is not None else None
    changed_at = _parse_time(changed)
    if isinstance(max_age, int) and not isinstance(max_age, bool) and max_age > 0 and changed_at:
        rotation = report_time(iso8601(changed_at + timedelta(days=max_age)))
    return ["true", last_used, report_time(changed), rotation]


def render_report_csv(rows: Sequence[Sequence[str]]) -> bytes:
    """Render the header and ``rows`` as the report's CSV (UTF-8, ``\\n`` line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_HEADER)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


class ReportService(AccountScopedService):
    """GetAccountSummary and the credential report of every account the broker hosts."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        clock: Clock,
        authz: Authorizer,
        generations: Generations,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        super().__init__(store, keyring, clock, authz, generations, rng)
        self._tasks: set[asyncio.Task[None]] = set()
        self.build_gate: asyncio.Event | None = None
        """When set, builds wait for this event before they start (a seam for observing
        ``INPROGRESS``); ``None`` (the default) lets them run at once."""

    # -- GetAccountSummary -------------------------------------------------------------------

    async def account_summary(self, caller: Principal) -> dict[str, int]:
        """GetAccountSummary: entity counts, quotas and the root user's credential flags."""
        await self._allow(caller, "iam:GetAccountSummary", "*")
        account = caller.account_id
        kinds = ("user", "group", "role", "policy", "iprofile", "oidc")
        docs = await read_many(self._store, account, ["account", *(f"count/{k}" for k in kinds)])
        acct = docs[0] or {}
        counts = {
            k: int(d["n"]) if d is not None else 0 for k, d in zip(kinds, docs[1:], strict=True)
        }
        devices = await scan(self._store, account, "mfa/")
        attached = 0
        for prefix in ("policy/", "awspolicy/"):
            for pol in await scan(self._store, account, prefix):
                attached += sum(len(names) for names in pol.get("attachments", {}).values())
        return {
            "Users": counts["user"],
            "UsersQuota": limits.USERS_PER_ACCOUNT,
            "Groups": counts["group"],
            "GroupsQuota": limits.GROUPS_PER_ACCOUNT,
            "Roles": counts["role"],
            "RolesQuota": limits.ROLES_PER_ACCOUNT,
            "Policies": counts["policy"],
            "PoliciesQuota": limits.POLICIES_PER_ACCOUNT,
            "InstanceProfiles": counts["iprofile"],
            "InstanceProfilesQuota": limits.INSTANCE_PROFILES_PER_ACCOUNT,
            "Providers": counts["oidc"],
            "MFADevices": len(devices),
            "MFADevicesInUse": sum(1 for d in devices if d.get("user") is not None),
            "PolicyVersionsInUse": attached,
            "PolicyVersionsInUseQuota": limits.ATTACHED_POLICIES_PER_ACCOUNT,
            "ServerCertificates": 0,
            "ServerCertificatesQuota": limits.SERVER_CERTIFICATES_PER_ACCOUNT,
            "GroupsPerUserQuota": limits.GROUPS_PER_USER,
            "AttachedPoliciesPerUserQuota": limits.ATTACHED_POLICIES_PER_USER,
            "AttachedPoliciesPerGroupQuota": limits.ATTACHED_POLICIES_PER_GROUP,
            "AttachedPoliciesPerRoleQuota": limits.ATTACHED_POLICIES_PER_ROLE,
            "VersionsPerPolicyQuota": limits.VERSIONS_PER_POLICY,
            "AccessKeysPerUserQuota": limits.ACCESS_KEYS_PER_USER,
            "SigningCertificatesPerUserQuota": limits.SIGNING_CERTIFICATES_PER_USER,
            "UserPolicySizeQuota": limits.USER_INLINE_POLICY_SIZE,
            "GroupPolicySizeQuota": limits.GROUP_INLINE_POLICY_SIZE,
            "RolePolicySizeQuota": limits.ROLE_INLINE_POLICY_SIZE,
            "PolicySizeQuota": limits.MANAGED_POLICY_SIZE,
            "AssumeRolePolicySizeQuota": limits.ASSUME_ROLE_POLICY_SIZE,
            "AccountMFAEnabled": 1 if acct.get("mfa") else 0,
            "AccountAccessKeysPresent": 1 if acct.get("root_keys") else 0,
            "AccountPasswordPresent": 0,
            "AccountSigningCertificatesPresent": 0,
            "GlobalEndpointTokenVersion": GLOBAL_ENDPOINT_TOKEN_VERSION,
        }

    # -- GenerateCredentialReport ------------------------------------------------------------

    async def generate(self, caller: Principal) -> str:
        """GenerateCredentialReport: start a build, or say how the current one stands."""
        await self._allow(caller, "iam:GenerateCredentialReport", "*")
        account = caller.account_id
        now = self._clock.now()
        build = self._rng(8).hex()

        async def fn(txn: Txn) -> str:
            doc = await txn.get(REPORT_KEY)
            if doc is not None:
                at = _parse_time(doc.get("generated"))
                if doc.get("state") == COMPLETE and at is not None and now - at < REPORT_MAX_AGE:
                    return COMPLETE
                if (
                    doc.get("state") in (STARTED, INPROGRESS)
                    and at is not None
                    and now - at < BUILD_STALE_AFTER
                ):
                    return INPROGRESS
            txn.put(
                REPORT_KEY, {"state": STARTED, "generated": iso8601(now), "csv": "", "build": build}
            )
            txn.bump = False  # no cached state derives from the report
            return STARTED

        state = await self._tx(account, fn)
        if state == STARTED:
            task = asyncio.get_running_loop().create_task(self._build(account, build))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return state

    async def _build(self, account: str, build: str) -> None:
        """Build the report of ``account`` for build ``build`` (a background task)."""
        try:
            if self.build_gate is not None:
                await self.build_gate.wait()
            if not await self._advance(account, build, None):
                return
            generated = self._clock.now()
            content = await self.render(account)
            await self._advance(account, build, (content, generated))
        except asyncio.CancelledError:
            raise
        except Exception:
            # The record stays in progress; the next Generate after BUILD_STALE_AFTER restarts.
            log.error("account=%s credential report build failed", account, exc_info=True)

    async def _advance(
        self, account: str, build: str, result: tuple[bytes, datetime] | None
    ) -> bool:
        """Move build ``build`` to INPROGRESS (``result`` None) or COMPLETE; False if superseded."""

        async def fn(txn: Txn) -> bool:
            doc = await txn.get(REPORT_KEY)
            if doc is None or doc.get("build") != build:
                return False
            if result is None:
                doc["state"] = INPROGRESS
            else:
                content, generated = result
                doc["state"] = COMPLETE
                doc["generated"] = iso8601(generated)
                doc["csv"] = base64.b64encode(content).decode("ascii")
            txn.put(REPORT_KEY, doc)
            txn.bump = False
            return True

        return await self._tx(account, fn)

    async def wait_builds(self) -> None:
        """Wait for the builds this node runs (shutdown and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- GetCredentialReport -----------------------------------------------------------------

    async def get(self, caller: Principal) -> CredentialReport:
        """GetCredentialReport: the finished, unexpired report of the caller's account."""
        await self._allow(caller, "iam:GetCredentialReport", "*")
        doc = await read(self._store, caller.account_id, REPORT_KEY)
        if doc is None:
            raise CredentialReportNotPresentError()
        if doc.get("state") != COMPLETE:
            raise CredentialReportNotReadyError()
        generated = _parse_time(doc.get("generated"))
        if generated is None or self._clock.now() - generated >= REPORT_MAX_AGE:
            raise CredentialReportExpiredError()
        return CredentialReport(base64.b64decode(doc["csv"]), generated)

    # -- the report itself -------------------------------------------------------------------

    async def render(self, account: str) -> bytes:
        """Read ``account`` and render its credential report CSV (root row, then users)."""
        acct = await read(self._store, account, "account") or {}
        users = sorted(await scan(self._store, account, "user/"), key=lambda u: u["name"].lower())
        root_keys: list[str] = list(acct.get("root_keys", []))
        user_keys = [list(u.get("keys", [])) for u in users]
        every_key = root_keys + [k for keys in user_keys for k in keys]
        key_docs = await read_many(self._store, account, [f"akey/{k}" for k in every_key])
        used_docs = await read_many(self._store, account, [f"akused/{k}" for k in every_key])
        by_key = {k: (d, u) for k, d, u in zip(every_key, key_docs, used_docs, strict=True)}
        names = [u["name"].lower() for u in users]
        logins = await read_many(self._store, account, [f"login/{n}" for n in names])
        signins = await read_many(self._store, account, [f"pwused/{n}" for n in names])
        policy = await read(self._store, account, "pwpolicy")

        def keys_of(ids: Sequence[str]) -> list[tuple[Doc, Doc | None]]:
            out: list[tuple[Doc, Doc | None]] = []
            for akid in ids:
                key, used = by_key[akid]
                if key is not None:
                    out.append((key, used))
            return out

        rows: list[list[str]] = [
            [
                ROOT_ROW_USER,
                root_arn(account),
                report_time(acct.get("created")),
                NOT_SUPPORTED,
                NOT_SUPPORTED,
                NOT_SUPPORTED,
                NOT_SUPPORTED,
                _flag(bool(acct.get("mfa"))),
                *_keys_columns(keys_of(root_keys)),
                *_CERT_COLUMNS,
            ]
        ]
        for user, ids, login, signin in zip(users, user_keys, logins, signins, strict=True):
            rows.append(
                [
                    str(user["name"]),
                    str(user["arn"]),
                    report_time(user.get("created")),
                    *_password_columns(login, signin, policy),
                    _flag(bool(user.get("mfa"))),
                    *_keys_columns(keys_of(ids)),
                    *_CERT_COLUMNS,
                ]
            )
        return render_report_csv(rows)
