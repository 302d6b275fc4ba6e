"""Store tests: the conformance suite on every backend, then each backend's own promises.

``TestConformance`` collects ``tests/store/suite.py`` (run on memory, sqlite and redis by the
fixtures in ``conftest.py``). The rest checks what only one backend does: SQLite's file modes,
locking and sweep; Redis's key layout, pub/sub and behaviour when the server dies or hangs
(each such test starts a private ``RedisServer``, leaving the shared one alone).
"""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from broker.store.base import Put, Record, Store, StoreUnavailable
from broker.store.memory import MemoryStore
from broker.store.redis import RedisStore
from broker.store.sqlite import SqliteStore, prefix_end
from tests.store.suite import FAR_FUTURE, NS, OTHER, StoreSuite, keys_of
from tests.support.redis_server import RedisServer

FAST_TIMEOUT = 0.3
"""Call timeout for the fault tests, so a hung server is given up on quickly."""


class TestConformance(StoreSuite):
    """The shared suite, collected here."""


# -- memory ------------------------------------------------------------------------------


async def test_memory_sweep_drops_only_expired_records() -> None:
    store = MemoryStore()
    await store.commit(NS, {"old": Put(b"o", expires_at=100.0), "new": Put(b"n", expires_at=300.0)})
    await store.commit(OTHER, {"old": Put(b"o", expires_at=50.0), "keep": Put(b"k")})
    assert await store.sweep(200.0) == 2
    assert keys_of(await store.scan(NS, "")) == ["new"]
    assert keys_of(await store.scan(OTHER, "")) == ["keep"]
    assert await store.sweep(200.0) == 0


# -- sqlite ------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "state" / "broker.db")
    try:
        yield store
    finally:
        await store.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_sqlite_creates_private_files(sqlite_store: SqliteStore) -> None:
    await sqlite_store.commit(NS, {"k": Put(b"v")})
    path = sqlite_store.path
    assert _mode(path.parent) == 0o700
    assert _mode(path) == 0o600
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and _mode(wal) == 0o600


async def test_sqlite_uses_wal_and_the_documented_schema(sqlite_store: SqliteStore) -> None:
    await sqlite_store.commit(NS, {"k": Put(b"v", expires_at=FAR_FUTURE)})
    with sqlite3.connect(sqlite_store.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = raw.execute("SELECT ns, key, value, version, expires_at FROM records").fetchall()
        assert rows == [(NS, "k", b"v", 1, FAR_FUTURE)]
        assert raw.execute("SELECT ns, gen FROM generations").fetchall() == [(NS, 1)]
    raw.close()


async def test_sqlite_sweep_deletes_expired_records(sqlite_store: SqliteStore) -> None:
    await sqlite_store.commit(
        NS, {"old": Put(b"o", expires_at=100.0), "edge": Put(b"e", expires_at=200.0)}
    )
    await sqlite_store.commit(OTHER, {"old": Put(b"o", expires_at=10.0), "keep": Put(b"k")})
    generation = await sqlite_store.generation(NS)
    assert await sqlite_store.sweep(200.0) == 2
    assert keys_of(await sqlite_store.scan(NS, "")) == ["edge"]
    assert keys_of(await sqlite_store.scan(OTHER, "")) == ["keep"]
    assert await sqlite_store.generation(NS) == generation
    assert await sqlite_store.sweep(200.0) == 0


async def test_sqlite_commit_waits_for_a_busy_writer(tmp_path: Path) -> None:
    """A foreign write lock held past the timeout fails the commit, which is never applied."""
    store = await SqliteStore.open(tmp_path / "broker.db", timeout=FAST_TIMEOUT)
    raw = sqlite3.connect(store.path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            await store.commit(NS, {"k": Put(b"blocked")})
        assert await store.get(NS, "k") is None  # readers are not blocked in WAL mode
        raw.execute("ROLLBACK")
        assert await store.get(NS, "k") is None
        # A lock released while the commit waits is simply waited for.
        raw.execute("BEGIN IMMEDIATE")
        pending = asyncio.ensure_future(store.commit(NS, {"k": Put(b"after")}))
        await asyncio.sleep(FAST_TIMEOUT / 6)
        raw.execute("COMMIT")
        assert await pending == 1
        assert await store.get(NS, "k") == Record("k", b"after", 1)
    finally:
        raw.close()
        await store.close()


async def test_sqlite_open_fails_cleanly_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db"
    path.write_bytes(b"this is not an sqlite database, just text" * 100)
    with pytest.raises(StoreUnavailable):
        await SqliteStore.open(path)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("", None),
        ("a", "b"),
        ("user/", "user0"),
        ("\ud7ff", "\ue000"),
        ("k\U0010ffff", "l"),
        ("\U0010ffff\U0010ffff", None),
    ],
)
def test_sqlite_prefix_end(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end


# -- redis -------------------------------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, free to kill, pause and restart."""
    with RedisServer(appendonly=True) as server:
        yield server


@pytest.mark.redis
async def test_redis_key_layout_uses_namespace_hash_tags(redis_server: RedisServer) -> None:
    store = await RedisStore.open(redis_server.url, prefix="layout")
    raw = Redis.from_url(redis_server.url)
    try:
        await store.commit(NS, {"user/alice": Put(b"v", expires_at=FAR_FUTURE)})
        names = sorted(_text(name) for name in await raw.keys("layout:*"))
        assert names == sorted(
            [
                f"layout:{{{NS}}}:gen",
                f"layout:{{{NS}}}:idx",
                f"layout:{{{NS}}}:r:user/alice",
                "layout:nsset",
            ]
        )
        assert await raw.get(f"layout:{{{NS}}}:r:user/alice") == b"1|%s|v" % (
            repr(FAR_FUTURE).encode()
        )
        assert await raw.pexpiretime(f"layout:{{{NS}}}:r:user/alice") == int(FAR_FUTURE * 1000) + 1
        # A second write bumps the version; a point-lookup record gets no index entry.
        await store.commit(NS, {"user/alice": Put(b"w|x")})
        assert await raw.get(f"layout:{{{NS}}}:r:user/alice") == b"2||w|x"
        assert await raw.pexpiretime(f"layout:{{{NS}}}:r:user/alice") == -1
        await store.commit(NS, {"asia/K": Put(b"s", expires_at=FAR_FUTURE, listed=False)})
        assert await raw.zrange(f"layout:{{{NS}}}:idx", 0, -1) == [b"user/alice"]
        rec = await store.get(NS, "asia/K")
        assert rec is not None and (rec.value, rec.version) == (b"s", 1)
        assert rec.expires_at == FAR_FUTURE
        got = await store.get_many(NS, ["user/alice", "asia/K", "nope"])
        assert [r.value if r else None for r in got] == [b"w|x", b"s", None]
        with pytest.raises(ValueError):
            await store.get("bad{ns}", "k")
    finally:
        await raw.delete(*await raw.keys("layout:*"))
        await raw.aclose()
        await store.close()


@pytest.mark.redis
async def test_redis_publishes_generation_changes(redis_server: RedisServer) -> None:
    store = await RedisStore.open(redis_server.url, prefix="pubsub")
    raw = Redis.from_url(redis_server.url)
    pubsub = raw.pubsub()
    try:
        await pubsub.subscribe(store.channel)
        assert store.channel == "pubsub:gen"
        await store.commit(NS, {"a": Put(b"1")})
        await store.commit(NS, {"a": Put(b"2")}, bump=False)
        await store.commit(NS, {"a": None})
        messages: list[bytes] = []
        async with asyncio.timeout(5):
            while len(messages) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    messages.append(message["data"])
        assert messages == [f"{NS} 1".encode(), f"{NS} 2".encode()]
    finally:
        await pubsub.aclose()
        await raw.delete(*await raw.keys("pubsub:*"))
        await raw.aclose()
        await store.close()


@pytest.mark.redis
async def test_redis_reclaimed_records_leave_no_trace(redis_server: RedisServer) -> None:
    """A record Redis expired is gone from reads, scans, the index and namespaces()."""
    store = await RedisStore.open(redis_server.url, prefix="reclaim")
    raw = Redis.from_url(redis_server.url)
    try:
        past = time.time() - 60  # Redis drops a key whose PEXPIREAT is in the past
        await store.commit(NS, {"a": Put(b"1", expires_at=past), "b": Put(b"2", expires_at=past)})
        await store.commit(OTHER, {"x": Put(b"1", expires_at=past), "y": Put(b"2")})
        assert await store.get(NS, "a") is None
        assert await store.scan(NS, "", limit=1) == []
        assert await raw.zcard(f"reclaim:{{{NS}}}:idx") == 0
        assert keys_of(await store.scan(OTHER, "")) == ["y"]
        assert await store.namespaces() == [OTHER]
        await store.commit(NS, {"a": Put(b"3")}, expect={"a": 0})
        assert await store.get(NS, "a") == Record("a", b"3", 1)
    finally:
        await raw.delete(*await raw.keys("reclaim:*"))
        await raw.aclose()
        await store.close()


async def _all_calls_fail(store: Store) -> None:
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: store.get(NS, "k"),
        "get_many": lambda: store.get_many(NS, ["k", "j"]),
        "scan": lambda: store.scan(NS, ""),
        "commit": lambda: store.commit(NS, {"j": Put(b"x")}),
        "generation": lambda: store.generation(NS),
        "namespaces": lambda: store.namespaces(),
        "ping": lambda: store.ping(),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable):
            await call()
            pytest.fail(f"{name} did not raise StoreUnavailable")


@pytest.mark.redis
async def test_redis_dead_server_gives_unavailable_then_recovers(
    private_redis: RedisServer,
) -> None:
    store = await RedisStore.open(private_redis.url, timeout=FAST_TIMEOUT)
    try:
        await store.commit(NS, {"k": Put(b"v")})
        private_redis.kill()
        await _all_calls_fail(store)
        private_redis.restart()
        # The same client object recovers without being reopened.
        await store.ping()
        assert await store.get(NS, "k") == Record("k", b"v", 1)  # appendfsync always
        await store.commit(NS, {"k": Put(b"w")}, expect={"k": 1})
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_hung_server_times_out_then_recovers(private_redis: RedisServer) -> None:
    store = await RedisStore.open(private_redis.url, timeout=FAST_TIMEOUT)
    try:
        await store.commit(NS, {"k": Put(b"v")})
        private_redis.pause()
        try:
            await _all_calls_fail(store)
            # Still frozen: the calls gave up on their own timeout, not on the server.
            assert private_redis.paused
        finally:
            private_redis.resume()
        await store.ping()
        record = await store.get(NS, "k")
        # The commit sent while frozen may run once the server resumes (an unknown outcome).
        assert record is not None and record.value == b"v"
        assert (await store.get_many(NS, ["k"])) == [record]
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_stop_and_restart_keeps_data(private_redis: RedisServer) -> None:
    store = await RedisStore.open(private_redis.url, timeout=FAST_TIMEOUT)
    try:
        await store.commit(NS, {"k": Put(b"v", expires_at=FAR_FUTURE)})
        private_redis.stop()
        with pytest.raises(StoreUnavailable):
            await store.get(NS, "k")
        private_redis.restart()
        assert await store.get(NS, "k") == Record("k", b"v", 1, FAR_FUTURE)
        assert await store.generation(NS) == 1
        assert await store.namespaces() == [NS]
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_open_fails_when_nothing_listens(private_redis: RedisServer) -> None:
    url = private_redis.url
    private_redis.kill()
    with pytest.raises(StoreUnavailable):
        await RedisStore.open(url, timeout=FAST_TIMEOUT)
