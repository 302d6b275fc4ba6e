"""Service: last-used tracking of access keys, written behind the request path.

Every authenticated request calls :meth:`KeyUsageTracker.record` (a dict update, no I/O).
The app's background task calls :meth:`KeyUsageTracker.flush` every ``[tracking]
flush_seconds``; a flush writes one record per key with ``bump=False``, so it never
invalidates caches. A failed flush keeps the pending entries for the next round.

``akused/<AKID>`` holds ``{"time", "service", "region"}`` of the key's last use. For a root
user's access key it also holds the last use for an action outside the setup set of
``broker.service.rootguard`` (fields ``outside_setup_time`` and ``outside_setup_action``),
which the start-up warning reads. Those fields must survive later setup-only uses, so root
keys' records are read, merged and written with a version check (root keys are few; other
keys' records are written blind, as before).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from broker.clock import iso8601
from broker.service.rootguard import OUTSIDE_SETUP_ACTION, OUTSIDE_SETUP_TIME, is_setup_action
from broker.service.txn import Doc, decode, encode
from broker.store.base import Put, Store, StoreError, VersionConflict, Write

log = logging.getLogger(__name__)

ROOT_MERGE_ATTEMPTS = 3
"""Read-merge-write attempts per flush for root keys' records racing another node's flush."""


@dataclass(frozen=True, slots=True)
class KeyUse:
    """One use of an access key: when, for which ``service`` and ``action``, and whose key."""

    account_id: str
    access_key_id: str
    when: datetime
    service: str
    region: str
    action: str = ""
    root: bool = False


class KeyUsageTracker:
    """Collects the latest use of each access key and flushes them in batches."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[str, KeyUse] = {}
        self._outside: dict[str, KeyUse] = {}

    def record(self, use: KeyUse) -> None:
        """Remember ``use`` as the latest for its key (cheap, synchronous)."""
        self._pending[use.access_key_id] = use
        if use.root and not is_setup_action(use.service, use.action):
            self._outside[use.access_key_id] = use

    async def flush(self) -> int:
        """Write pending uses to the store; return how many were written."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        outside, self._outside = self._outside, {}
        by_account: dict[str, list[KeyUse]] = {}
        for use in pending.values():
            by_account.setdefault(use.account_id, []).append(use)
        written = 0
        for account, uses in by_account.items():
            try:
                written += await self._flush_account(account, uses, outside)
            except StoreError as exc:
                log.warning("last-used flush failed for one account: %s", type(exc).__name__)
                for use in uses:
                    self._pending.setdefault(use.access_key_id, use)
                    late = outside.get(use.access_key_id)
                    if late is not None:
                        self._outside.setdefault(use.access_key_id, late)
        return written

    async def _flush_account(
        self, account: str, uses: list[KeyUse], outside: dict[str, KeyUse]
    ) -> int:
        plain: dict[str, Write] = {}
        roots: list[KeyUse] = []
        for use in uses:
            if use.root:
                roots.append(use)
            else:
                plain[f"akused/{use.access_key_id}"] = Put(encode(_last_used(use)))
        if not roots:
            await self._store.commit(account, plain, bump=False)
            return len(plain)
        keys = [f"akused/{use.access_key_id}" for use in roots]
        for attempt in range(ROOT_MERGE_ATTEMPTS):
            records = await self._store.get_many(account, keys)
            writes = dict(plain)
            expect: dict[str, int] = {}
            for key, use, rec in zip(keys, roots, records, strict=True):
                prior = decode(rec.value) if rec is not None else None
                expect[key] = rec.version if rec is not None else 0
                doc = _merge_root(prior, use, outside.get(use.access_key_id))
                writes[key] = Put(encode(doc))
            try:
                await self._store.commit(account, writes, expect=expect, bump=False)
            except VersionConflict:
                if attempt + 1 == ROOT_MERGE_ATTEMPTS:
                    raise
                continue
            return len(writes)
        raise AssertionError("unreachable")  # pragma: no cover


def _last_used(use: KeyUse) -> Doc:
    return {"time": iso8601(use.when), "service": use.service, "region": use.region}


def _merge_root(prior: Doc | None, use: KeyUse, outside: KeyUse | None) -> Doc:
    """The root key's new ``akused`` record: the last use, and the last use outside setup."""
    doc = _last_used(use)
    if prior is not None and prior.get(OUTSIDE_SETUP_TIME):
        doc[OUTSIDE_SETUP_TIME] = prior[OUTSIDE_SETUP_TIME]
        doc[OUTSIDE_SETUP_ACTION] = prior.get(OUTSIDE_SETUP_ACTION, "")
    if outside is not None:
        when = iso8601(outside.when)
        # Times render with a fixed width in UTC, so text order is time order.
        if str(doc.get(OUTSIDE_SETUP_TIME, "")) <= when:
            doc[OUTSIDE_SETUP_TIME] = when
            doc[OUTSIDE_SETUP_ACTION] = f"{outside.service}:{outside.action}"
    return doc
