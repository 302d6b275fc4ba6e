"""Service: the account registry, first-start bootstrap and ``broker account create``.

Accounts are listed in the global namespace (``account/<id>``). Bootstrap of an empty store
is claimed with one create-if-absent record (``bootstrap``), so when several nodes start
together on one Redis exactly one of them creates the first account. Access key ids the
broker mints encode their account (``core.ids``); a key id supplied from outside (the
``BROKER_ROOT_ACCESS_KEY_ID`` automation path) may not, so it gets a ``keyalias/<id>``
record in the global namespace that the authenticator consults on a miss.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from broker.clock import Clock, iso8601
from broker.core import ids
from broker.errors import EntityAlreadyExistsError, UnavailableError
from broker.service.iam import IamService, NewAccessKey
from broker.service.txn import Txn, read, scan, transact
from broker.store.base import GLOBAL_NS, Store


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What bootstrap did: ``created`` holds the new root key when this node created it."""

    account_id: str
    created: NewAccessKey | None


class AccountService:
    """Creates and lists accounts."""

    def __init__(
        self,
        store: Store,
        iam: IamService,
        clock: Clock,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._store = store
        self._iam = iam
        self._clock = clock
        self._rng = rng

    async def list_accounts(self) -> list[str]:
        """Return every account id, sorted."""
        return [str(d["id"]) for d in await scan(self._store, GLOBAL_NS, "account/")]

    async def create_account(
        self,
        account_id: str | None = None,
        *,
        root_access_key_id: str | None = None,
        root_secret_access_key: str | None = None,
    ) -> NewAccessKey:
        """Register a new account and create its root user with one access key."""
        account = account_id or ids.new_account_id(self._rng)
        created = iso8601(self._clock.now())

        async def register(txn: Txn) -> None:
            if await txn.get(f"account/{account}") is not None:
                raise EntityAlreadyExistsError(f"Account {account} already exists.")
            txn.put(f"account/{account}", {"id": account, "created": created})
            if root_access_key_id is not None:
                if ids.account_from_access_key_id(root_access_key_id) != account:
                    txn.put(f"keyalias/{root_access_key_id}", {"account": account})

        await transact(self._store, GLOBAL_NS, register)
        return await self._iam.create_account(
            account,
            root_access_key_id=root_access_key_id,
            root_secret_access_key=root_secret_access_key,
        )

    async def bootstrap(
        self,
        account_id: str | None,
        root_access_key_id: str | None,
        root_secret_access_key: str | None,
    ) -> BootstrapResult:
        """Create the first account if the store has none (exactly once across nodes)."""
        marker = await read(self._store, GLOBAL_NS, "bootstrap")
        if marker is not None:
            return BootstrapResult(str(marker["account"]), None)
        account = account_id
        if account is None and root_access_key_id:
            account = ids.account_from_access_key_id(root_access_key_id)
        account = account or ids.new_account_id(self._rng)

        async def claim(txn: Txn) -> str | None:
            existing = await txn.get("bootstrap")
            if existing is not None:
                return str(existing["account"])
            txn.put("bootstrap", {"account": account, "at": iso8601(self._clock.now())})
            return None

        winner = await transact(self._store, GLOBAL_NS, claim)
        if winner is not None:
            return BootstrapResult(winner, None)
        try:
            key = await self.create_account(
                account,
                root_access_key_id=root_access_key_id or None,
                root_secret_access_key=root_secret_access_key or None,
            )
        except UnavailableError:
            raise
        return BootstrapResult(account, key)
