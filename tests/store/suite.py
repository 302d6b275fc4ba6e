"""Store tests: the conformance suite, written once against the ``Store`` protocol.

``StoreSuite`` holds the tests; ``test_conformance.py`` collects them by subclassing it, and
the ``store`` / ``backend`` / ``durable_backend`` fixtures of ``conftest.py`` run them on
every backend. Each test starts from an empty store.
"""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from broker.store.base import Put, Record, Store, StoreUnavailable, VersionConflict
from tests.store.conftest import StoreBackend

NS = "111122223333"
OTHER = "444455556666"
FAR_FUTURE = 4102444800.123456
"""An ``expires_at`` (2100-01-01 plus a fraction) that no backend reclaims during a test."""


def keys_of(records: list[Record]) -> list[str]:
    """Return the keys of ``records`` in order."""
    return [record.key for record in records]


def byte_order(keys: list[str]) -> list[str]:
    """Return ``keys`` in the order the store promises: UTF-8 byte order."""
    return sorted(keys, key=lambda key: key.encode())


async def put_all(store: Store, ns: str, keys: list[str]) -> None:
    """Create ``keys`` (value = the key's bytes) in one commit."""
    await store.commit(ns, {key: Put(key.encode()) for key in keys})


class StoreSuite:
    """Conformance tests every backend passes; subclass it to collect them."""

    # -- reads -----------------------------------------------------------------------------

    async def test_absent_records_read_as_none(self, store: Store) -> None:
        assert await store.get(NS, "user/alice") is None
        assert await store.get_many(NS, ["a", "b"]) == [None, None]
        assert await store.get_many(NS, []) == []
        assert await store.scan(NS, "") == []

    async def test_created_record_reads_back_at_version_one(self, store: Store) -> None:
        await store.commit(NS, {"user/alice": Put(b'{"name":"alice"}')}, expect={"user/alice": 0})
        assert await store.get(NS, "user/alice") == Record("user/alice", b'{"name":"alice"}', 1)

    async def test_get_many_keeps_order_duplicates_and_gaps(self, store: Store) -> None:
        await put_all(store, NS, ["a", "b", "c"])
        got = await store.get_many(NS, ["c", "missing", "a", "c"])
        assert [None if r is None else r.key for r in got] == ["c", None, "a", "c"]
        assert got[0] == Record("c", b"c", 1)

    async def test_get_many_over_many_keys(self, store: Store) -> None:
        keys = [f"k/{i:05d}" for i in range(1200)]
        await put_all(store, NS, keys[::2])
        got = await store.get_many(NS, keys)
        assert [r is not None for r in got] == [i % 2 == 0 for i in range(1200)]
        assert got[1198] == Record("k/01198", b"k/01198", 1)

    async def test_namespaces_are_isolated(self, store: Store) -> None:
        await store.commit(NS, {"user/alice": Put(b"1")})
        await store.commit(OTHER, {"user/alice": Put(b"2"), "user/bob": Put(b"3")})
        rec = await store.get(NS, "user/alice")
        assert rec is not None and rec.value == b"1"
        assert keys_of(await store.scan(NS, "user/")) == ["user/alice"]
        assert keys_of(await store.scan(OTHER, "user/")) == ["user/alice", "user/bob"]
        assert await store.get(NS, "user/bob") is None

    # -- scans -----------------------------------------------------------------------------

    async def test_scan_orders_by_utf8_bytes(self, store: Store) -> None:
        # U+E000 sorts before U+1F600 in UTF-8 (and code points) but after it in UTF-16.
        keys = ["b", "a", "B", "é", "\ue000", "\U0001f600", "a/", "a0", "", " ", "\uffff"]
        await put_all(store, NS, random.Random(7).sample(keys, len(keys)))
        assert keys_of(await store.scan(NS, "")) == byte_order(keys)

    async def test_scan_respects_prefix_boundaries(self, store: Store) -> None:
        keys = [
            "use", "user", "user/a", "user/a/b", "user/ab", "user/b",
            "user0", "userx", "usex", "user\u00e9",
        ]  # fmt: skip
        await put_all(store, NS, keys)
        assert keys_of(await store.scan(NS, "user/a")) == ["user/a", "user/a/b", "user/ab"]
        assert keys_of(await store.scan(NS, "user/a/")) == ["user/a/b"]
        assert keys_of(await store.scan(NS, "user/")) == [
            "user/a", "user/a/b", "user/ab", "user/b",
        ]  # fmt: skip
        assert keys_of(await store.scan(NS, "user")) == byte_order(
            [k for k in keys if k.startswith("user")]
        )
        assert keys_of(await store.scan(NS, "userx")) == ["userx"]
        assert keys_of(await store.scan(NS, "usery")) == []
        assert keys_of(await store.scan(NS, "")) == byte_order(keys)

    async def test_scan_prefix_ending_in_highest_code_point(self, store: Store) -> None:
        top = "\U0010ffff"
        keys = ["k", f"k{top}", f"k{top}a", f"k{top}{top}", "l", f"{top}", f"{top}x"]
        await put_all(store, NS, keys)
        assert keys_of(await store.scan(NS, f"k{top}")) == [f"k{top}", f"k{top}a", f"k{top}{top}"]
        assert keys_of(await store.scan(NS, top)) == [top, f"{top}x"]

    async def test_scan_pages_with_start_after_and_limit(self, store: Store) -> None:
        keys = [f"item/{i:03d}" for i in range(25)]
        await put_all(store, NS, keys + ["itemz", "iteh"])
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            page = keys_of(await store.scan(NS, "item/", start_after=after, limit=10))
            if not page:
                break
            pages.append(page)
            after = page[-1]
        assert [len(page) for page in pages] == [10, 10, 5]
        assert [key for page in pages for key in page] == keys

    async def test_scan_start_after_outside_or_between_keys(self, store: Store) -> None:
        await put_all(store, NS, ["item/1", "item/3", "item/5", "other"])
        # Before the prefix: the whole range.
        assert keys_of(await store.scan(NS, "item/", start_after="a")) == [
            "item/1", "item/3", "item/5",
        ]  # fmt: skip
        # A key that does not exist: resume after where it would be.
        assert keys_of(await store.scan(NS, "item/", start_after="item/2")) == [
            "item/3", "item/5",
        ]  # fmt: skip
        # Exclusive of the key itself.
        assert keys_of(await store.scan(NS, "item/", start_after="item/3")) == ["item/5"]
        # Past the prefix's range.
        assert await store.scan(NS, "item/", start_after="item0") == []
        assert await store.scan(NS, "item/", start_after="item/5") == []

    async def test_scan_limit_edges(self, store: Store) -> None:
        await put_all(store, NS, ["a", "b", "c"])
        assert await store.scan(NS, "", limit=0) == []
        assert keys_of(await store.scan(NS, "", limit=1)) == ["a"]
        assert keys_of(await store.scan(NS, "", limit=99)) == ["a", "b", "c"]
        with pytest.raises(ValueError):
            await store.scan(NS, "", limit=-1)

    async def test_scan_matches_a_model_on_random_data(self, store: Store) -> None:
        rng = random.Random(20240601)
        alphabet = ["a", "b", "/", "é", "\U0001f600", "\ue000", "z"]
        model: dict[str, bytes] = {}
        for _ in range(60):
            batch: dict[str, Put | None] = {}
            for _ in range(rng.randint(1, 6)):
                key = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                if key in model and rng.random() < 0.3:
                    batch[key] = None
                else:
                    batch[key] = Put(rng.randbytes(rng.randint(0, 8)))
            await store.commit(NS, batch)
            for key, write in batch.items():
                if write is None:
                    model.pop(key, None)
                else:
                    model[key] = write.value
        ordered = byte_order(list(model))
        for prefix in ["", "a", "b/", "é", "\U0001f600", "\ue000a", "zz", "q"]:
            for start_after in [None, "a", "b", "\ue000", "é/"]:
                for limit in [None, 1, 3]:
                    expected = [
                        k
                        for k in ordered
                        if k.startswith(prefix)
                        and (start_after is None or k.encode() > start_after.encode())
                    ][:limit]
                    got = await store.scan(NS, prefix, start_after=start_after, limit=limit)
                    assert keys_of(got) == expected, (prefix, start_after, limit)
                    assert [r.value for r in got] == [model[k] for k in expected]

    # -- commits ---------------------------------------------------------------------------

    async def test_create_if_absent_conflicts_when_present(self, store: Store) -> None:
        await store.commit(NS, {"role/admin": Put(b"first")}, expect={"role/admin": 0})
        generation = await store.generation(NS)
        with pytest.raises(VersionConflict) as caught:
            await store.commit(NS, {"role/admin": Put(b"second")}, expect={"role/admin": 0})
        assert caught.value.key == "role/admin"
        assert await store.get(NS, "role/admin") == Record("role/admin", b"first", 1)
        assert await store.generation(NS) == generation

    async def test_versioned_update_grows_version_and_rejects_stale(self, store: Store) -> None:
        await store.commit(NS, {"k": Put(b"v1")})
        await store.commit(NS, {"k": Put(b"v2")}, expect={"k": 1})
        await store.commit(NS, {"k": Put(b"v3")})  # unconditional writes count too
        assert await store.get(NS, "k") == Record("k", b"v3", 3)
        for stale in (0, 1, 2, 4):
            with pytest.raises(VersionConflict):
                await store.commit(NS, {"k": Put(b"lost")}, expect={"k": stale})
        assert await store.get(NS, "k") == Record("k", b"v3", 3)

    async def test_failed_multi_key_commit_writes_nothing(self, store: Store) -> None:
        await store.commit(NS, {"a": Put(b"a1"), "b": Put(b"b1"), "gone": Put(b"g1")})
        generation = await store.generation(NS)
        with pytest.raises(VersionConflict) as caught:
            await store.commit(
                NS,
                {"a": Put(b"a2"), "b": Put(b"b2"), "c": Put(b"c1"), "gone": None},
                expect={"a": 1, "b": 2},
            )
        assert caught.value.key == "b"
        assert await store.get_many(NS, ["a", "b", "c", "gone"]) == [
            Record("a", b"a1", 1),
            Record("b", b"b1", 1),
            None,
            Record("gone", b"g1", 1),
        ]
        assert await store.generation(NS) == generation

    async def test_concurrent_commits_succeed_or_conflict_one_by_one(self, store: Store) -> None:
        # Many commits in flight at once (a backend may group them into one transaction):
        # each create-if-absent of the same key but one conflicts, the others are independent,
        # and a conflicting commit writes none of its other keys.
        await store.commit(NS, {"taken": Put(b"x")})
        generation = await store.generation(NS)

        async def claim(i: int) -> str:
            writes = {f"own/{i:03d}": Put(b"%d" % i), "claim": Put(b"%d" % i)}
            try:
                await store.commit(NS, writes, expect={"claim": 0})
            except VersionConflict as exc:
                return exc.key
            return "won"

        async def independent(i: int) -> int:
            return await store.commit(NS, {f"free/{i:03d}": Put(b"f")})

        async def doomed() -> str:
            try:
                await store.commit(NS, {"never": Put(b"n")}, expect={"taken": 0})
            except VersionConflict as exc:
                return exc.key
            return "won"

        outcomes = await asyncio.gather(
            *(claim(i) for i in range(20)), *(independent(i) for i in range(20)), doomed()
        )
        claims, frees, last = outcomes[:20], outcomes[20:40], outcomes[40]
        assert claims.count("won") == 1 and claims.count("claim") == 19
        assert last == "taken"
        winner = claims.index("won")
        owns = await store.scan(NS, "own/")
        assert keys_of(owns) == [f"own/{winner:03d}"]
        assert await store.get(NS, "claim") == Record("claim", b"%d" % winner, 1)
        assert len(await store.scan(NS, "free/")) == 20
        assert await store.get(NS, "never") is None
        # Every successful commit bumped the generation once and saw its own bump.
        assert await store.generation(NS) == generation + 21
        assert len(set(frees)) == 20
        assert all(isinstance(g, int) and g > generation for g in frees)

    async def test_expect_guards_records_that_are_not_written(self, store: Store) -> None:
        await store.commit(NS, {"policy/p": Put(b"doc")})
        await store.commit(NS, {"attach/u": Put(b"p")}, expect={"policy/p": 1, "attach/u": 0})
        await store.commit(NS, {"policy/p": Put(b"doc2")})
        with pytest.raises(VersionConflict) as caught:
            await store.commit(NS, {"attach/v": Put(b"p")}, expect={"policy/p": 1})
        assert caught.value.key == "policy/p"
        assert await store.get(NS, "attach/v") is None
        with pytest.raises(VersionConflict):
            await store.commit(NS, {"attach/v": Put(b"p")}, expect={"missing": 1})

    async def test_delete_is_idempotent_and_recreate_restarts_versions(self, store: Store) -> None:
        await store.commit(NS, {"absent": None})
        await store.commit(NS, {"absent": None}, expect={"absent": 0})
        await store.commit(NS, {"k": Put(b"1")})
        await store.commit(NS, {"k": Put(b"2")})
        await store.commit(NS, {"k": None}, expect={"k": 2})
        assert await store.get(NS, "k") is None
        assert await store.scan(NS, "") == []
        await store.commit(NS, {"k": None})
        with pytest.raises(VersionConflict):
            await store.commit(NS, {"k": None}, expect={"k": 2})
        await store.commit(NS, {"k": Put(b"again")}, expect={"k": 0})
        assert await store.get(NS, "k") == Record("k", b"again", 1)

    async def test_generations_bump_per_namespace(self, store: Store) -> None:
        assert await store.generation(NS) == 0
        assert await store.commit(NS, {"a": Put(b"1")}) == 1
        assert await store.commit(NS, {"a": Put(b"2")}, bump=False) == 1
        assert await store.generation(NS) == 1
        assert await store.commit(NS, {"a": None}) == 2
        assert await store.commit(NS, {}) == 3  # a bare bump
        assert await store.commit(NS, {}, bump=False) == 3
        assert await store.generation(OTHER) == 0
        assert await store.commit(OTHER, {"a": Put(b"1")}, bump=False) == 0
        assert await store.generation(OTHER) == 0
        with pytest.raises(VersionConflict):
            await store.commit(NS, {"a": Put(b"x")}, expect={"a": 5})
        assert await store.generation(NS) == 3

    async def test_expires_at_round_trips(self, store: Store) -> None:
        await store.commit(NS, {"session/s1": Put(b"s", expires_at=FAR_FUTURE)})
        record = await store.get(NS, "session/s1")
        assert record == Record("session/s1", b"s", 1, FAR_FUTURE)
        assert await store.scan(NS, "session/") == [record]
        assert await store.get_many(NS, ["session/s1"]) == [record]
        await store.commit(NS, {"session/s1": Put(b"s2", expires_at=FAR_FUTURE + 60)})
        assert await store.get(NS, "session/s1") == Record("session/s1", b"s2", 2, FAR_FUTURE + 60)
        # A write without expires_at makes the record permanent again.
        await store.commit(NS, {"session/s1": Put(b"s3")})
        assert await store.get(NS, "session/s1") == Record("session/s1", b"s3", 3, None)

    async def test_namespaces_lists_only_those_with_records(self, store: Store) -> None:
        assert await store.namespaces() == []
        await store.commit(OTHER, {"a": Put(b"1")})
        await store.commit(NS, {"a": Put(b"1"), "b": Put(b"2")})
        await store.commit("global", {}, expect={"x": 0})  # a bump alone holds no record
        assert await store.namespaces() == sorted([NS, OTHER])
        await store.commit(NS, {"a": None, "b": None})
        assert await store.namespaces() == [OTHER]

    async def test_values_are_arbitrary_bytes(self, store: Store) -> None:
        values = {
            "all": bytes(range(256)),
            "nul": b"\x00",
            "nuls": b"a\x00b\x00",
            "latin": b"\xff\xfe\xe9",
            "empty": b"",
            "crlf": b"\r\n*1\r\n$4\r\nPING\r\n",
        }
        await store.commit(NS, {key: Put(value) for key, value in values.items()})
        for key, value in values.items():
            record = await store.get(NS, key)
            assert record is not None and record.value == value
        scanned = {r.key: r.value for r in await store.scan(NS, "")}
        assert scanned == values

    async def test_unicode_and_punctuation_keys(self, store: Store) -> None:
        keys = [
            "user/jürgen", "user/日本", "user/\U0001f600", "user/a b", "user/a:b",
            "user/*", "user/?", "user/[x]", "user/%41", "user/new\nline", "r:idx",
        ]  # fmt: skip
        await store.commit(NS, {key: Put(key.encode("utf-8")) for key in keys})
        for key in keys:
            assert await store.get(NS, key) == Record(key, key.encode(), 1)
        assert keys_of(await store.scan(NS, "user/")) == byte_order(keys[:-1])
        assert keys_of(await store.scan(NS, "user/日")) == ["user/日本"]
        assert keys_of(await store.scan(NS, "user/*")) == ["user/*"]

    async def test_commit_rejects_malformed_arguments(self, store: Store) -> None:
        with pytest.raises(TypeError):
            await store.commit(NS, {"k": Put("text")})  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.commit(NS, {"k": Put(b"v")}, expect={"k": -1})
        with pytest.raises(ValueError):
            await store.commit(NS, {"k": Put(b"v", expires_at=math.nan)})
        with pytest.raises(ValueError):
            await store.commit(NS, {"k": Put(b"v", expires_at=math.inf)})
        assert await store.get(NS, "k") is None
        assert await store.generation(NS) == 0

    # -- lifecycle -------------------------------------------------------------------------

    async def test_ping_answers(self, store: Store) -> None:
        await store.ping()

    async def test_close_is_idempotent_and_ends_service(self, store: Store) -> None:
        await store.commit(NS, {"k": Put(b"v")})
        await store.close()
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.get(NS, "k")
        with pytest.raises(StoreUnavailable):
            await store.commit(NS, {"k": Put(b"w")})
        with pytest.raises(StoreUnavailable):
            await store.ping()

    async def test_data_persists_across_reopen(self, durable_backend: StoreBackend) -> None:
        first = await durable_backend.open()
        await first.commit(NS, {"user/alice": Put(b"\x00a", expires_at=FAR_FUTURE)})
        await first.commit(NS, {"user/alice": Put(b"\x00b", expires_at=FAR_FUTURE)})
        await first.commit(OTHER, {"user/bob": Put(b"b")}, bump=False)
        await first.close()
        second = await durable_backend.open()
        assert await second.get(NS, "user/alice") == Record("user/alice", b"\x00b", 2, FAR_FUTURE)
        assert keys_of(await second.scan(OTHER, "")) == ["user/bob"]
        assert await second.generation(NS) == 2
        assert await second.generation(OTHER) == 0
        assert await second.namespaces() == sorted([NS, OTHER])
        await second.commit(NS, {"user/alice": Put(b"c")}, expect={"user/alice": 2})
