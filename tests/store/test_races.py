"""Store tests: races between clients doing read-check-commit loops on the same records.

Each test opens two clients of one backend (two ``SqliteStore`` on one file, two
``RedisStore`` connection pools on one server; ``memory`` has a single client, raced by
interleaved tasks) and runs competing tasks with ``asyncio.gather``. Versioned commits must
let exactly the allowed number of them win, however the tasks interleave.
"""

from __future__ import annotations

import asyncio
import json

from broker.store.base import Put, Store, VersionConflict
from tests.store.conftest import StoreBackend
from tests.store.suite import NS, keys_of

TASKS = 20
MAX_ATTEMPTS = 200
"""Bound on retries per task, so a store that never settles fails instead of hanging."""


async def _clients(backend: StoreBackend) -> tuple[Store, Store]:
    return await backend.open(), await backend.open()


async def append_if_short(store: Store, key: str, item: int, cap: int) -> bool:
    """Append ``item`` to the JSON list at ``key`` unless it already has ``cap`` items."""
    for _ in range(MAX_ATTEMPTS):
        record = await store.get(NS, key)
        items: list[int] = [] if record is None else json.loads(record.value)
        if len(items) >= cap:
            return False
        try:
            await store.commit(
                NS,
                {key: Put(json.dumps([*items, item]).encode())},
                expect={key: 0 if record is None else record.version},
            )
        except VersionConflict:
            continue
        return True
    raise AssertionError("the store never let this task settle")


async def test_only_three_appends_fit(backend: StoreBackend) -> None:
    first, second = await _clients(backend)
    results = await asyncio.gather(
        *(append_if_short((first, second)[i % 2], "list", i, 3) for i in range(TASKS))
    )
    winners = sorted(i for i, won in enumerate(results) if won)
    assert len(winners) == 3
    record = await first.get(NS, "list")
    assert record is not None and sorted(json.loads(record.value)) == winners
    assert record.version == 3


async def test_only_one_create_if_absent_wins(backend: StoreBackend) -> None:
    first, second = await _clients(backend)

    async def create(i: int) -> bool:
        store = (first, second)[i % 2]
        try:
            await store.commit(NS, {"role/admin": Put(str(i).encode())}, expect={"role/admin": 0})
        except VersionConflict:
            return False
        return True

    results = await asyncio.gather(*(create(i) for i in range(TASKS)))
    assert results.count(True) == 1
    record = await second.get(NS, "role/admin")
    assert record is not None and record.version == 1
    assert record.value == str(results.index(True)).encode()


async def test_quota_across_records_holds(backend: StoreBackend) -> None:
    """At most 2 access keys per user: a counter record guards the creation of key records."""
    first, second = await _clients(backend)
    owner = "user/alice/keys"

    async def create_key(i: int) -> bool:
        store = (first, second)[i % 2]
        for _ in range(MAX_ATTEMPTS):
            record = await store.get(NS, owner)
            held: list[str] = [] if record is None else json.loads(record.value)
            if len(held) >= 2:
                return False
            key_id = f"key/AKIA{i:016d}"
            try:
                await store.commit(
                    NS,
                    {key_id: Put(b"{}"), owner: Put(json.dumps([*held, key_id]).encode())},
                    expect={owner: 0 if record is None else record.version, key_id: 0},
                )
            except VersionConflict:
                continue
            return True
        raise AssertionError("the store never let this task settle")

    results = await asyncio.gather(*(create_key(i) for i in range(TASKS)))
    assert results.count(True) == 2
    created = keys_of(await first.scan(NS, "key/"))
    record = await second.get(NS, owner)
    assert record is not None and sorted(json.loads(record.value)) == created
    assert len(created) == 2


async def test_concurrent_bumps_each_get_their_own_generation(backend: StoreBackend) -> None:
    first, second = await _clients(backend)
    generations = await asyncio.gather(
        *((first, second)[i % 2].commit(NS, {f"k/{i}": Put(b"v")}) for i in range(TASKS))
    )
    assert sorted(generations) == list(range(1, TASKS + 1))
    assert await first.generation(NS) == TASKS
    assert len(await second.scan(NS, "k/")) == TASKS
