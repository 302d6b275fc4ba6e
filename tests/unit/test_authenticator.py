"""The long-term key cache: known keys follow generations, unknown keys stay cheap."""

from __future__ import annotations

import base64
import datetime as dt
import os

from broker.app import Runtime, build_runtime
from broker.config import load_config
from broker.core import ids
from broker.service.authz import NEGATIVE_TTL_SECONDS
from broker.store.base import Record
from broker.store.memory import MemoryStore


class StepClock:
    """A clock whose monotonic reading only moves when told."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return self.t


class CountingStore(MemoryStore):
    """A MemoryStore that counts reads."""

    reads = 0

    async def get(self, ns: str, key: str) -> Record | None:
        self.reads += 1
        return await super().get(ns, key)


async def _runtime(clock: StepClock, store: MemoryStore | None = None) -> Runtime:
    key = base64.b64encode(os.urandom(32)).decode()
    cfg = load_config(environ={"BROKER_MASTER_KEY": key})
    return await build_runtime(cfg, clock=clock, store=store or MemoryStore())


async def test_unknown_keys_do_not_watch_namespaces() -> None:
    clock = StepClock()
    rt = await _runtime(clock)
    for _ in range(50):
        stranger = ids.new_access_key_id("AKIA", ids.new_account_id())
        assert await rt.authenticator.lookup(stranger) is None
    assert rt.generations._known == {}  # noqa: SLF001 - the property under test
    await rt.close()


async def test_known_key_follows_status_changes_and_unknown_key_expires() -> None:
    clock = StepClock()
    rt = await _runtime(clock)
    root = await rt.accounts.create_account("123456789012")
    entry = await rt.authenticator.lookup(root.access_key_id)
    assert entry is not None and entry.active
    assert entry.principal.arn == "arn:aws:iam::123456789012:root"
    assert rt.generations.current("123456789012") is not None
    caller = entry.principal
    await rt.iam.update_access_key(caller, None, root.access_key_id, "Inactive")
    again = await rt.authenticator.lookup(root.access_key_id)
    assert again is not None and not again.active

    await rt.close()


async def test_unknown_key_is_remembered_for_the_negative_ttl_only() -> None:
    clock = StepClock()
    store = CountingStore()
    rt = await _runtime(clock, store)
    stranger = ids.new_access_key_id("AKIA", "123456789012")
    assert await rt.authenticator.lookup(stranger) is None
    first = store.reads
    assert first > 0
    assert await rt.authenticator.lookup(stranger) is None
    assert store.reads == first  # answered from the negative cache
    clock.t += NEGATIVE_TTL_SECONDS + 0.1
    assert await rt.authenticator.lookup(stranger) is None
    assert store.reads > first  # looked up again once the entry expired
    await rt.close()
