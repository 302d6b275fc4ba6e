"""Store layer: ``MemoryStore``, an in-process backend for tests and single-shot tools.

It keeps every namespace in a dict plus a sorted key list, so scans are ordered like the
durable backends (UTF-8 byte order, which is code-point order for ``str``). Nothing survives
the process. Each call yields once to the event loop before it does its work, the way real I/O
would, so read-check-commit races in callers show up in tests; the work itself never awaits,
which makes every commit atomic.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from broker.store.base import (
    Put,
    Record,
    StoreUnavailable,
    VersionConflict,
    Write,
    check_commit_args,
)


@dataclass(slots=True)
class _Namespace:
    """The records of one namespace, with their keys kept sorted for scans."""

    records: dict[str, Record] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    def put(self, record: Record) -> None:
        if record.key not in self.records:
            bisect.insort(self.keys, record.key)
        self.records[record.key] = record

    def delete(self, key: str) -> None:
        if self.records.pop(key, None) is not None:
            index = bisect.bisect_left(self.keys, key)
            del self.keys[index]


class MemoryStore:
    """A ``Store`` held in process memory (see ``broker.store.base`` for the guarantees)."""

    backend = "memory"

    def __init__(self) -> None:
        self._spaces: dict[str, _Namespace] = {}
        self._generations: dict[str, int] = {}
        self._closed = False

    async def _enter(self) -> None:
        # Yield like real I/O would; check closed state after the yield so that a close()
        # that ran meanwhile is honoured.
        await asyncio.sleep(0)
        if self._closed:
            raise StoreUnavailable("memory store is closed")

    async def get(self, ns: str, key: str) -> Record | None:
        """Return the record at ``key`` in ``ns``, or ``None`` when absent."""
        await self._enter()
        space = self._spaces.get(ns)
        return None if space is None else space.records.get(key)

    async def get_many(self, ns: str, keys: Sequence[str]) -> list[Record | None]:
        """Return the records at ``keys`` (same order; ``None`` for absent ones)."""
        await self._enter()
        space = self._spaces.get(ns)
        if space is None:
            return [None] * len(keys)
        return [space.records.get(key) for key in keys]

    async def scan(
        self,
        ns: str,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Return records whose key starts with ``prefix``, ordered by key."""
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        await self._enter()
        space = self._spaces.get(ns)
        if space is None or limit == 0:
            return []
        if start_after is not None and start_after >= prefix:
            index = bisect.bisect_right(space.keys, start_after)
        else:
            index = bisect.bisect_left(space.keys, prefix)
        found: list[Record] = []
        for key in space.keys[index:]:
            if not key.startswith(prefix):
                break
            found.append(space.records[key])
            if limit is not None and len(found) >= limit:
                break
        return found

    async def commit(
        self,
        ns: str,
        writes: Mapping[str, Write],
        *,
        expect: Mapping[str, int] | None = None,
        bump: bool = True,
    ) -> int:
        """Atomically check ``expect`` and apply ``writes``; return the namespace generation."""
        check_commit_args(writes, expect or {})
        await self._enter()
        space = self._spaces.get(ns)
        for key, version in (expect or {}).items():
            current = None if space is None else space.records.get(key)
            if (0 if current is None else current.version) != version:
                raise VersionConflict(key)
        if writes:
            if space is None:
                space = self._spaces.setdefault(ns, _Namespace())
            self._apply(space, writes)
            if not space.records:
                del self._spaces[ns]
        if bump:
            self._generations[ns] = self._generations.get(ns, 0) + 1
        return self._generations.get(ns, 0)

    @staticmethod
    def _apply(space: _Namespace, writes: Mapping[str, Write]) -> None:
        for key, write in writes.items():
            if write is None:
                space.delete(key)
                continue
            old = space.records.get(key)
            version = 1 if old is None else old.version + 1
            space.put(Record(key, write.value, version, _expiry(write)))

    async def generation(self, ns: str) -> int:
        """Return the namespace's generation (0 if it never had a bumping commit)."""
        await self._enter()
        return self._generations.get(ns, 0)

    async def namespaces(self) -> list[str]:
        """Return every namespace that holds at least one record, sorted."""
        await self._enter()
        return sorted(ns for ns, space in self._spaces.items() if space.records)

    async def sweep(self, now: float) -> int:
        """Delete records whose ``expires_at`` is before ``now``; return how many went."""
        await self._enter()
        removed = 0
        for ns in list(self._spaces):
            space = self._spaces[ns]
            stale = [
                key
                for key, record in space.records.items()
                if record.expires_at is not None and record.expires_at < now
            ]
            for key in stale:
                space.delete(key)
            removed += len(stale)
            if not space.records:
                del self._spaces[ns]
        return removed

    async def ping(self) -> None:
        """Return at once unless the store was closed."""
        await self._enter()

    async def close(self) -> None:
        """Refuse further calls (the data stays in memory). Idempotent."""
        self._closed = True


def _expiry(write: Put) -> float | None:
    return None if write.expires_at is None else float(write.expires_at)
