"""Service helper: per-namespace generations that tell node-local caches when to drop state.

Every bumping commit to an account increases its generation in the store. A node learns of
new generations two ways: at once from its own commits (:meth:`Generations.observe`), and
from other nodes' commits through the store's pub/sub where it has one (Redis:
:meth:`Generations.advance`), and within ``poll_seconds`` by polling
(:meth:`Generations.poll`, run by the app in the background; a slow safety net when pub/sub
is available). A cache entry remembers the generation it was built under and is used only
while that is still the current one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from broker.store.base import Store, StoreUnavailable


class Generations:
    """The latest generation this node knows for each namespace it has cached state of."""

    def __init__(self, store: Store, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._known: dict[str, int] = {}
        self._monotonic = monotonic
        self._last_sync = monotonic()

    def current(self, ns: str) -> int | None:
        """Return the known generation of ``ns``, or ``None`` if it is not watched yet."""
        return self._known.get(ns)

    def observe(self, ns: str, generation: int) -> None:
        """Record that ``ns`` reached ``generation`` (never moves backwards)."""
        if generation > self._known.get(ns, -1):
            self._known[ns] = generation

    def advance(self, ns: str, generation: int) -> None:
        """Like :meth:`observe`, but only for namespaces already watched (pub/sub events)."""
        known = self._known.get(ns)
        if known is not None and generation > known:
            self._known[ns] = generation

    async def watch(self, ns: str) -> int:
        """Start watching ``ns`` (one store read the first time) and return its generation."""
        gen = self._known.get(ns)
        if gen is None:
            gen = await self._store.generation(ns)
            self.observe(ns, gen)
            gen = self._known[ns]
        return gen

    async def poll(self) -> None:
        """Refresh every watched namespace from the store (errors leave the old values)."""
        started = self._monotonic()
        for ns in list(self._known):
            try:
                self.observe(ns, await self._store.generation(ns))
            except StoreUnavailable:
                return
        self._last_sync = started

    def staleness(self, now: float) -> float:
        """Seconds since the last poll that reached the store for every watched namespace."""
        return max(0.0, now - self._last_sync)
