"""Service base: what every account-scoped use-case service shares.

A store, the master-key sealer, a clock, the authorizer, the generation tracker, randomness,
a per-generation read cache, and two steps: run a transaction in an account (so the local
node learns the new generation at once) and authorize an action.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from broker.clock import Clock
from broker.core.keyring import Keyring
from broker.core.model import Principal
from broker.core.policy import ContextValue
from broker.service.authz import Authorizer
from broker.service.cache import Generations
from broker.service.reads import RecordCache
from broker.service.txn import Txn, transact
from broker.store.base import Store

T = TypeVar("T")


class AccountScopedService:
    """Base of the services whose records live in one account's namespace."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        clock: Clock,
        authz: Authorizer,
        generations: Generations,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._authz = authz
        self._generations = generations
        self._rng = rng
        self._reads = RecordCache(store, generations)

    async def _tx(self, account: str, fn: Callable[[Txn], Awaitable[T]]) -> T:
        """Run ``fn`` as a transaction in ``account``; this node sees the change at once."""
        return await transact(self._store, account, fn, on_commit=self._generations.observe)

    async def _allow(
        self,
        caller: Principal,
        action: str,
        resource: str,
        extra: Mapping[str, ContextValue] | None = None,
    ) -> None:
        """Raise AccessDenied unless ``caller`` may do ``action`` on ``resource``."""
        await self._authz.authorize(caller, action, resource, extra)
