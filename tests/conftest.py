"""Test fixtures shared by every test folder.

``redis_server`` is one real ``redis-server`` for the whole session, started on a free
loopback port by ``tests.support.redis_server``. Tests that kill, pause or restart Redis start
a private ``RedisServer`` instead, so the shared one stays healthy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A running ``redis-server`` shared by the session; stopped at the end."""
    with RedisServer() as server:
        yield server
