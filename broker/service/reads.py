"""Service helper: a per-node cache of single-record reads, valid for one account generation.

IAM read actions (GetUser, GetRole, ...) and the entity look-ups that precede every write
read one record by key. While the account's generation has not moved, the record has not
changed (every bumping commit moves it), so the bytes read last time are still right. The
generation is taken *before* the store read, so an entry never claims a newer generation than
its data. Transactions never use this cache: they read the store and check versions.
"""

from __future__ import annotations

from broker.errors import UnavailableError
from broker.metrics import RECORD_CACHE
from broker.service.cache import Generations
from broker.service.txn import Doc, decode
from broker.store.base import Store, StoreUnavailable

DEFAULT_MAX_ENTRIES = 50_000


class RecordCache:
    """Read-through cache of ``(namespace, key) -> record`` keyed by generation."""

    def __init__(
        self, store: Store, generations: Generations, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self._store = store
        self._generations = generations
        self._max = max_entries
        self._entries: dict[tuple[str, str], tuple[int, bytes | None]] = {}

    async def get(self, ns: str, key: str) -> Doc | None:
        """Return the record's document (``None`` when absent), from cache when still valid."""
        gen = self._generations.current(ns)
        RECORD_CACHE.lookups += 1
        if gen is not None:
            hit = self._entries.get((ns, key))
            if hit is not None and hit[0] == gen:
                return None if hit[1] is None else decode(hit[1])
        RECORD_CACHE.misses += 1
        try:
            rec = await self._store.get(ns, key)
        except StoreUnavailable:
            raise UnavailableError() from None
        value = None if rec is None else rec.value
        if gen is not None:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[(ns, key)] = (gen, value)
        return None if value is None else decode(value)
