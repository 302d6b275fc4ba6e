"""The per-generation read cache: served from memory until the account changes."""

from __future__ import annotations

from broker.service.cache import Generations
from broker.service.reads import RecordCache
from broker.service.txn import encode
from broker.store.base import Put, Record
from broker.store.memory import MemoryStore


class CountingStore(MemoryStore):
    reads = 0

    async def get(self, ns: str, key: str) -> Record | None:
        self.reads += 1
        return await super().get(ns, key)


async def test_hits_until_the_generation_moves() -> None:
    store = CountingStore()
    gens = Generations(store)
    cache = RecordCache(store, gens)
    await store.commit("acct", {"user/a": Put(encode({"v": 1}))})
    await gens.watch("acct")
    assert await cache.get("acct", "user/a") == {"v": 1}
    assert await cache.get("acct", "user/a") == {"v": 1}
    assert await cache.get("acct", "user/none") is None
    assert await cache.get("acct", "user/none") is None
    assert store.reads == 2  # one per key; the repeats came from memory

    # Another writer changes the record; this node learns the new generation by polling.
    await store.commit("acct", {"user/a": Put(encode({"v": 2})), "user/none": Put(b"{}")})
    assert await cache.get("acct", "user/a") == {"v": 1}  # not yet known here
    await gens.poll()
    assert await cache.get("acct", "user/a") == {"v": 2}
    assert await cache.get("acct", "user/none") == {}


async def test_unwatched_namespaces_are_never_cached() -> None:
    store = CountingStore()
    cache = RecordCache(store, Generations(store))
    await store.commit("other", {"k": Put(encode({"v": 1}))})
    await cache.get("other", "k")
    await store.commit("other", {"k": Put(encode({"v": 2}))})
    assert await cache.get("other", "k") == {"v": 2}
    assert store.reads == 2


async def test_returned_documents_are_private_copies() -> None:
    store = MemoryStore()
    gens = Generations(store)
    cache = RecordCache(store, gens)
    await store.commit("acct", {"user/a": Put(encode({"groups": []}))})
    await gens.watch("acct")
    doc = await cache.get("acct", "user/a")
    assert doc is not None
    doc["groups"].append("mutated")
    assert await cache.get("acct", "user/a") == {"groups": []}
