"""Service: last-used tracking of access keys, written behind the request path.

Every authenticated request calls :meth:`KeyUsageTracker.record` (a dict update, no I/O).
The app's background task calls :meth:`KeyUsageTracker.flush` every ``[tracking]
flush_seconds``; a flush writes one record per key with ``bump=False``, so it never
invalidates caches. A failed flush keeps the pending entries for the next round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from broker.clock import iso8601
from broker.service.txn import encode
from broker.store.base import Put, Store, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyUse:
    """One use of an access key."""

    account_id: str
    access_key_id: str
    when: datetime
    service: str
    region: str


class KeyUsageTracker:
    """Collects the latest use of each access key and flushes them in batches."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[str, KeyUse] = {}

    def record(self, use: KeyUse) -> None:
        """Remember ``use`` as the latest for its key (cheap, synchronous)."""
        self._pending[use.access_key_id] = use

    async def flush(self) -> int:
        """Write pending uses to the store; return how many were written."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        by_account: dict[str, dict[str, Put | None]] = {}
        for use in pending.values():
            doc = {"time": iso8601(use.when), "service": use.service, "region": use.region}
            by_account.setdefault(use.account_id, {})[f"akused/{use.access_key_id}"] = Put(
                encode(doc)
            )
        written = 0
        for account, writes in by_account.items():
            try:
                await self._store.commit(account, writes, bump=False)
                written += len(writes)
            except StoreError as exc:
                log.warning("last-used flush failed for one account: %s", type(exc).__name__)
                for use in pending.values():
                    if use.account_id == account:
                        self._pending.setdefault(use.access_key_id, use)
        return written
