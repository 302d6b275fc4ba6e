"""Service: service-last-accessed tracking of IAM users and roles, written behind the request path.

The API listener calls :meth:`AccessTracker.record` once per authenticated request that reached
its action's handler, allowed or not (a dict update, no I/O). The app's background task calls
:meth:`AccessTracker.flush` every ``[tracking] flush_seconds`` (and once more on shutdown); a
flush merges the pending data into the records below with read-modify-write transactions that
never bump the account generation, so caches are never invalidated by bookkeeping. A failed
flush keeps its pending data for the next round.

Records (per account, JSON; the layout is shared with the access advisor and the findings):

================================  ==========================================================
key                               record
================================  ==========================================================
``accessed/user/<name lower>``    ``{"<namespace>": {"time": iso8601, "region": str,
``accessed/role/<name lower>``    "actions": {"<ActionName>": {"time": iso8601,
                                  "region": str}}}}``: the latest call per service and action
``rlused/<role name lower>``      ``{"time": iso8601, "region": str}``: the role's last use (its
                                  assumption, or any call made by one of its sessions)
================================  ==========================================================

What counts, and for whom:

* An IAM user's calls, made with its long-term access key or with its ``GetSessionToken``
  sessions, count for ``accessed/user/<name>``.
* A role session's calls count for ``accessed/role/<role name>`` and refresh ``rlused/<role>``.
* ``AssumeRole``, ``AssumeRoleWithWebIdentity`` and ``AssumeRoleWithSAML`` that succeed refresh
  ``rlused/`` of the role assumed (as well as counting as an ``sts`` call of their caller).
* The root user, federated users (``GetFederationToken``) and unsigned callers are not tracked.
* Every authenticated attempt counts, whether the handler then allowed it or not, as IAM's
  "last accessed" reports the last time an authenticated entity *attempted* to use a service;
  requests that fail authentication are not recorded. Only a *successful* ``AssumeRole*``
  counts as a use of the role it names.

Times have second precision (``YYYY-MM-DDTHH:MM:SSZ``), so later-wins merging compares text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from broker.clock import iso8601
from broker.core.arn import parse_arn
from broker.core.model import Principal, PrincipalKind
from broker.errors import BrokerError
from broker.service.txn import Doc, Txn, transact
from broker.store.base import Store, StoreError

log = logging.getLogger(__name__)

ACCESSED = "accessed"
ROLE_LAST_USED = "rlused"

DEFAULT_REGION = "us-east-1"
"""Region recorded for calls that carry none (unsigned ``AssumeRoleWithWebIdentity``)."""

FLUSH_BATCH_RECORDS = 100
"""Records merged per transaction during a flush."""

ASSUME_ACTIONS = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
"""STS actions whose success is a use of the role named by their ``RoleArn``."""


def accessed_key(kind: str, name: str) -> str:
    """Return the key of the ``accessed/`` record of a ``user`` or ``role`` named ``name``."""
    return f"{ACCESSED}/{kind}/{name.lower()}"


def role_last_used_key(role_name: str) -> str:
    """Return the key of the ``rlused/`` record of role ``role_name``."""
    return f"{ROLE_LAST_USED}/{role_name.lower()}"


def tracked_entity(principal: Principal) -> tuple[str, str] | None:
    """Return ``("user", user name)`` or ``("role", role name)`` for a tracked caller, else None.

    The role name of a role session comes from its ARN
    (``arn:aws:sts::ACCT:assumed-role/ROLE/SESSION``).
    """
    if principal.kind is PrincipalKind.USER:
        return ("user", principal.name) if principal.name else None
    if principal.kind is PrincipalKind.ASSUMED_ROLE:
        arn = parse_arn(principal.arn)
        if arn is None:
            return None
        parts = arn.resource.split("/")
        if len(parts) < 3 or parts[0] != "assumed-role" or not parts[1]:
            return None
        return "role", parts[1]
    return None


def assumed_role(role_arn: str | None) -> tuple[str, str] | None:
    """Return ``(account, role name)`` of a role ARN (``arn:aws:iam::ACCT:role/path/NAME``)."""
    if not role_arn:
        return None
    arn = parse_arn(role_arn)
    if arn is None or arn.service != "iam" or not arn.resource.startswith("role/"):
        return None
    if len(arn.account) != 12 or not arn.account.isdigit():
        return None
    name = arn.resource.rsplit("/", 1)[1]
    return (arn.account, name) if name else None


def _later(time: object, current: object) -> bool:
    """True when ``time`` is at least as late as ``current`` (ties: the newer data wins)."""
    return isinstance(time, str) and (not isinstance(current, str) or time >= current)


def merge_last_used(doc: Doc | None, delta: Doc) -> Doc:
    """Merge two ``rlused/`` documents (``{"time", "region"}``); the later one wins."""
    if doc is None or _later(delta.get("time"), doc.get("time")):
        return {"time": delta.get("time"), "region": delta.get("region")}
    return {"time": doc["time"], "region": doc.get("region")}


def merge_accessed(doc: Doc | None, delta: Doc) -> Doc:
    """Merge ``delta`` into an ``accessed/`` document; per service and per action, later wins.

    Neither argument is changed. Entries of ``doc`` with an unexpected shape are dropped.
    """
    out: Doc = {}
    for ns, entry in (doc or {}).items():
        if isinstance(entry, dict):
            actions = entry.get("actions")
            out[ns] = {
                "time": entry.get("time"),
                "region": entry.get("region"),
                "actions": {
                    a: dict(v)
                    for a, v in (actions.items() if isinstance(actions, dict) else ())
                    if isinstance(v, dict)
                },
            }
    for ns, entry in delta.items():
        mine = out.setdefault(ns, {"time": None, "region": None, "actions": {}})
        if _later(entry.get("time"), mine.get("time")):
            mine["time"], mine["region"] = entry["time"], entry.get("region")
        for action, use in entry.get("actions", {}).items():
            known = mine["actions"].get(action)
            if known is None or _later(use.get("time"), known.get("time")):
                mine["actions"][action] = {"time": use.get("time"), "region": use.get("region")}
    return out


def _merge(key: str, doc: Doc | None, delta: Doc) -> Doc:
    if key.startswith(ROLE_LAST_USED + "/"):
        return merge_last_used(doc, delta)
    return merge_accessed(doc, delta)


class AccessTracker:
    """Collects the latest service and action use of each user and role; flushes in batches."""

    def __init__(self, store: Store, batch_records: int = FLUSH_BATCH_RECORDS) -> None:
        self._store = store
        self._batch = max(1, batch_records)
        # (account, record key) -> pending document in the record's own shape.
        self._pending: dict[tuple[str, str], Doc] = {}

    @property
    def pending(self) -> int:
        """Number of records with data waiting for the next flush."""
        return len(self._pending)

    def record(
        self,
        principal: Principal,
        service: str,
        action: str,
        region: str,
        when: datetime,
        role_arn: str | None = None,
    ) -> None:
        """Remember one authenticated attempt (cheap, synchronous; never raises on odd input).

        ``service`` is the service namespace (``iam``, ``sts``, ``access-analyzer``), ``action``
        the action name (``ListUsers``), ``region`` the signing region. ``role_arn`` is the
        request's ``RoleArn`` parameter: pass it only for a successful ``AssumeRole*`` call, where
        it names the role that was used.
        """
        stamp = iso8601(when)
        region = region or DEFAULT_REGION
        entity = tracked_entity(principal)
        if entity is not None and service:
            kind, name = entity
            doc = self._pending.setdefault((principal.account_id, accessed_key(kind, name)), {})
            entry = doc.setdefault(service, {"time": stamp, "region": region, "actions": {}})
            if _later(stamp, entry["time"]):
                entry["time"], entry["region"] = stamp, region
            known = entry["actions"].get(action)
            if action and (known is None or _later(stamp, known["time"])):
                entry["actions"][action] = {"time": stamp, "region": region}
            if kind == "role":
                self._role_used(principal.account_id, name, stamp, region)
        if service == "sts" and action in ASSUME_ACTIONS:
            target = assumed_role(role_arn)
            if target is not None:
                self._role_used(target[0], target[1], stamp, region)

    def _role_used(self, account: str, role: str, stamp: str, region: str) -> None:
        key = (account, role_last_used_key(role))
        known = self._pending.get(key)
        if known is None or _later(stamp, known.get("time")):
            self._pending[key] = {"time": stamp, "region": region}

    def _restore(self, items: Iterable[tuple[tuple[str, str], Doc]]) -> None:
        """Put unwritten data back, merged with anything recorded since."""
        for ident, delta in items:
            newer = self._pending.get(ident)
            self._pending[ident] = delta if newer is None else _merge(ident[1], delta, newer)

    async def flush(self) -> int:
        """Merge pending data into the store; return how many records were written.

        Each batch of up to ``batch_records`` records of one account is one transaction
        (read, merge, write; retried on a race with another node's flush) committed with
        ``bump=False``. A batch that fails stays pending.
        """
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        by_account: dict[str, list[tuple[str, Doc]]] = {}
        for (account, key), delta in pending.items():
            by_account.setdefault(account, []).append((key, delta))
        written = 0
        for account, items in by_account.items():
            for start in range(0, len(items), self._batch):
                batch = items[start : start + self._batch]
                try:
                    written += await self._write(account, batch)
                except (StoreError, BrokerError) as exc:
                    log.warning(
                        "last-accessed flush failed for one account: %s", type(exc).__name__
                    )
                    self._restore(((account, key), delta) for key, delta in batch)
        return written

    async def _write(self, account: str, batch: list[tuple[str, Doc]]) -> int:
        keys = [key for key, _ in batch]

        async def fn(txn: Txn) -> int:
            txn.bump = False  # bookkeeping only: nothing cached derives from it
            current = await txn.get_many(keys)
            for (key, delta), doc in zip(batch, current, strict=True):
                txn.put(key, _merge(key, doc, delta))
            return len(batch)

        return await transact(self._store, account, fn)
