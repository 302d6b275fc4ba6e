"""Fixtures for end-to-end tests: real broker processes on SQLite and on a real Redis."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker_proc import BrokerProcess
from tests.support.redis_server import RedisServer


def master_key() -> str:
    """A fresh base64 master key for Redis-backed brokers."""
    return base64.b64encode(os.urandom(32)).decode()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sqlite_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker on the embedded SQLite store, with its own data directory."""
    broker = BrokerProcess(tmp_path / "data").start()
    yield broker
    broker.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test alone (so the test may kill or restart it)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_broker(tmp_path: Path, private_redis: RedisServer) -> Iterator[BrokerProcess]:
    """A broker on the redis store (its own Redis server)."""
    broker = BrokerProcess(
        tmp_path / "data",
        store="redis",
        redis_url=private_redis.url,
        env={"BROKER_MASTER_KEY": master_key()},
    ).start()
    yield broker
    broker.stop()


@pytest.fixture(params=["sqlite", "redis"])
def broker(request: pytest.FixtureRequest) -> BrokerProcess:
    """A broker on each backend in turn."""
    name = "sqlite_broker" if request.param == "sqlite" else "redis_broker"
    result: BrokerProcess = request.getfixturevalue(name)
    return result
