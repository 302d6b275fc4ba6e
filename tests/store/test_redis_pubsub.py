"""Redis pushes generation changes to every node (pub/sub), and catches up after a loss."""

from __future__ import annotations

import asyncio
import uuid

from broker.store.base import Put
from broker.store.redis import RedisStore
from tests.support.redis_server import RedisServer


async def test_generation_changes_reach_another_client(redis_server: RedisServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = await RedisStore.open(redis_server.url, prefix=prefix)
    reader = await RedisStore.open(redis_server.url, prefix=prefix)
    events: list[tuple[str, int]] = []
    resyncs = 0
    subscribed = asyncio.Event()

    async def resync() -> None:
        nonlocal resyncs
        resyncs += 1
        subscribed.set()

    task = asyncio.create_task(
        reader.follow_generations(lambda ns, g: events.append((ns, g)), resync)
    )
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        gen = await writer.commit("111111111111", {"user/a": Put(b"{}")})
        await writer.commit("111111111111", {"akused/x": Put(b"{}")}, bump=False)
        gen2 = await writer.commit("222222222222", {"user/b": Put(b"{}")})
        for _ in range(100):
            if len(events) >= 2:
                break
            await asyncio.sleep(0.02)
        assert events == [("111111111111", gen), ("222222222222", gen2)]
        assert resyncs == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.close()
        await reader.close()


async def test_resubscribes_and_resyncs_after_the_server_returns() -> None:
    server = RedisServer().start()
    try:
        store = await RedisStore.open(server.url, prefix="p")
        resyncs = 0

        async def resync() -> None:
            nonlocal resyncs
            resyncs += 1

        task = asyncio.create_task(
            store.follow_generations(lambda ns, g: None, resync, retry_seconds=0.05)
        )
        for _ in range(100):
            if resyncs:
                break
            await asyncio.sleep(0.02)
        assert resyncs == 1
        server.kill()
        await asyncio.sleep(0.3)
        server.restart()
        for _ in range(250):
            if resyncs >= 2:
                break
            await asyncio.sleep(0.02)
        assert resyncs >= 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
    finally:
        server.stop()
