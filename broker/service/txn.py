"""Service helper: optimistic read-check-write transactions over the ``Store`` protocol.

A transaction function reads records through a :class:`Txn` (each read becomes an expected
version), stages writes, and :func:`transact` commits them atomically. When another writer got
there first the store raises ``VersionConflict`` and the whole function runs again on fresh
data, so quotas and cross-record invariants hold under races between broker processes.
Store errors are mapped to ``BrokerError`` here, once.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from broker.errors import ConcurrentModificationError, UnavailableError
from broker.store.base import Put, Store, StoreUnavailable, VersionConflict, Write

T = TypeVar("T")
MAX_ATTEMPTS = 50

Doc = dict[str, Any]
"""A decoded JSON record."""


def encode(doc: Doc) -> bytes:
    """Serialize a record compactly."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(value: bytes) -> Doc:
    """Deserialize a record."""
    doc = json.loads(value)
    assert isinstance(doc, dict)
    return doc


class Txn:
    """Reads and staged writes of one attempt of a transaction in one namespace."""

    def __init__(self, store: Store, ns: str) -> None:
        self.store = store
        self.ns = ns
        self._expect: dict[str, int] = {}
        self._cache: dict[str, Doc | None] = {}
        self._writes: dict[str, Write] = {}
        self.bump = True

    async def get(self, key: str) -> Doc | None:
        """Read ``key`` (staged writes win); the version read must still hold at commit."""
        if key in self._writes:
            w = self._writes[key]
            return None if w is None else decode(w.value)
        if key in self._cache:
            return self._cache[key]
        rec = await self.store.get(self.ns, key)
        self._expect[key] = 0 if rec is None else rec.version
        doc = None if rec is None else decode(rec.value)
        self._cache[key] = doc
        return doc

    async def get_many(self, keys: Sequence[str]) -> list[Doc | None]:
        """Read several keys in one round trip."""
        missing = [k for k in keys if k not in self._cache and k not in self._writes]
        if missing:
            recs = await self.store.get_many(self.ns, missing)
            for key, rec in zip(missing, recs, strict=True):
                self._expect[key] = 0 if rec is None else rec.version
                self._cache[key] = None if rec is None else decode(rec.value)
        return [await self.get(k) for k in keys]

    def put(
        self, key: str, doc: Doc, *, expires_at: float | None = None, listed: bool = True
    ) -> None:
        """Stage a create/replace of ``key`` (``listed=False``: see ``Put``)."""
        self._writes[key] = Put(encode(doc), expires_at, listed)

    def expect_absent(self, key: str) -> None:
        """Require ``key`` not to exist at commit, without reading it first.

        The commit fails with ``VersionConflict`` (and :func:`transact` retries) when it
        exists: a create-if-absent in one round trip.
        """
        self._expect[key] = 0

    def delete(self, key: str) -> None:
        """Stage a delete of ``key``."""
        self._writes[key] = None

    async def commit(self) -> int:
        """Apply the staged writes if every read still holds."""
        if not self._writes:
            return 0
        return await self.store.commit(self.ns, self._writes, expect=self._expect, bump=self.bump)


async def transact(
    store: Store,
    ns: str,
    fn: Callable[[Txn], Awaitable[T]],
    *,
    on_commit: Callable[[str, int], None] | None = None,
) -> T:
    """Run ``fn`` in a transaction on ``ns``, retrying on write races.

    ``on_commit(ns, generation)`` is called after a successful commit that bumped the
    generation (caches use it to drop derived state at once).
    """
    for attempt in range(MAX_ATTEMPTS):
        txn = Txn(store, ns)
        try:
            result = await fn(txn)
            gen = await txn.commit()
        except VersionConflict:
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))  # noqa: S311
            continue
        except StoreUnavailable:
            raise UnavailableError() from None
        if on_commit is not None and gen:
            on_commit(ns, gen)
        return result
    raise ConcurrentModificationError(
        "The request was rejected because multiple requests to change this object "
        "were submitted simultaneously. Wait a few minutes and submit your request again."
    )


async def read(store: Store, ns: str, key: str) -> Doc | None:
    """Read one record outside a transaction, mapping store failures."""
    try:
        rec = await store.get(ns, key)
    except StoreUnavailable:
        raise UnavailableError() from None
    return None if rec is None else decode(rec.value)


async def read_many(store: Store, ns: str, keys: Sequence[str]) -> list[Doc | None]:
    """Read several records outside a transaction."""
    if not keys:
        return []
    try:
        recs = await store.get_many(ns, keys)
    except StoreUnavailable:
        raise UnavailableError() from None
    return [None if r is None else decode(r.value) for r in recs]


async def scan(store: Store, ns: str, prefix: str) -> list[Doc]:
    """Read every record under ``prefix`` (ordered by key)."""
    try:
        recs = await store.scan(ns, prefix)
    except StoreUnavailable:
        raise UnavailableError() from None
    return [decode(r.value) for r in recs]
