"""Store tests: fixtures that give each test an empty store on every backend.

``backend`` is parametrized over ``memory``, ``sqlite`` (a file in the test's tmp dir) and
``redis`` (the session's shared server, isolated by a unique key prefix per test instead of
FLUSHALL). A backend can open several clients of the same data, which the persistence and
race tests use; ``store`` is the first such client.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from broker.store.base import Store
from broker.store.memory import MemoryStore
from broker.store.redis import RedisStore
from broker.store.sqlite import SqliteStore
from tests.support.redis_server import RedisServer

ALL_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
DURABLE_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


class StoreBackend:
    """Opens clients of one backend's data for one test, and closes them afterwards.

    Every client opened by one ``StoreBackend`` sees the same data: the same SQLite file, or
    the same Redis server and key prefix. ``memory`` has a single client, returned each time.
    """

    def __init__(
        self,
        name: str,
        *,
        sqlite_path: Path | None = None,
        redis_url: str | None = None,
        redis_prefix: str | None = None,
    ) -> None:
        self.name = name
        self.sqlite_path = sqlite_path
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self._memory: MemoryStore | None = None
        self._opened: list[Store] = []

    @property
    def durable(self) -> bool:
        """True when data outlives a client (so close and reopen keeps it)."""
        return self.name != "memory"

    async def open(self) -> Store:
        """Open another client of this backend's data."""
        store: Store
        match self.name:
            case "memory":
                if self._memory is None:
                    self._memory = MemoryStore()
                store = self._memory
            case "sqlite":
                assert self.sqlite_path is not None
                store = await SqliteStore.open(self.sqlite_path)
            case "redis":
                assert self.redis_url is not None and self.redis_prefix is not None
                store = await RedisStore.open(self.redis_url, prefix=self.redis_prefix)
            case _:
                raise AssertionError(f"unknown backend {self.name}")
        self._opened.append(store)
        return store

    async def aclose(self) -> None:
        """Close every client opened here and drop this test's Redis keys."""
        for store in self._opened:
            await store.close()
        if self.redis_url is not None and self.redis_prefix is not None:
            client = Redis.from_url(self.redis_url)
            try:
                names = [name async for name in client.scan_iter(match=f"{self.redis_prefix}:*")]
                if names:
                    await client.unlink(*names)
            finally:
                await client.aclose()


async def _make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    name = str(request.param)
    if name == "sqlite":
        # A directory that does not exist yet, so the store creates it (mode 0700).
        return StoreBackend(name, sqlite_path=tmp_path / "data" / "broker.db")
    if name == "redis":
        server = request.getfixturevalue("redis_server")
        assert isinstance(server, RedisServer)
        prefix = f"t{uuid.uuid4().hex[:16]}"
        return StoreBackend(name, redis_url=server.url, redis_prefix=prefix)
    return StoreBackend(name)


@pytest.fixture(params=ALL_BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreBackend]:
    """Every backend in turn, each with no data."""
    handle = await _make_backend(request, tmp_path)
    try:
        yield handle
    finally:
        await handle.aclose()


@pytest.fixture(params=DURABLE_BACKENDS)
async def durable_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreBackend]:
    """The backends whose data survives closing every client (sqlite and redis)."""
    handle = await _make_backend(request, tmp_path)
    try:
        yield handle
    finally:
        await handle.aclose()


@pytest.fixture
async def store(backend: StoreBackend) -> Store:
    """An empty store on the current backend (closed by ``backend`` at the end)."""
    return await backend.open()
