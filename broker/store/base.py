"""Store layer: the record-oriented protocol every backend implements.

The broker keeps all durable state as small JSON records addressed by a *namespace* (an
account id, or ``"global"`` for broker-wide records) and a *key* inside it (``"user/alice"``).
Business rules live in ``broker.service``; a store only guarantees the following.

Guarantees (checked by ``tests/store/suite.py`` on every backend):

* **Versioned records.** Every record has an integer ``version`` that starts at 1 on creation
  and grows by one on every write. Version ``0`` means "absent" in expectations.
* **Atomic multi-record commit.** :meth:`Store.commit` applies all ``writes`` of one namespace
  together, and only if every record named in ``expect`` has the expected version (0 = must not
  exist). Otherwise nothing is written and :class:`VersionConflict` is raised. Two clients (or two
  broker processes sharing one Redis) racing on the same records can never both win: this is
  what makes quota checks ("at most 2 access keys") safe. Services retry on conflict.
* **Idempotent delete.** Deleting an absent record is not an error (unless it is in ``expect``).
* **Ordered scans.** :meth:`Store.scan` returns records whose key starts with ``prefix`` in
  byte order of the key, after ``start_after`` when given, at most ``limit`` of them.
  Records written with ``Put(listed=False)`` may be left out (point reads always see them).
* **Generations.** Each namespace has a generation counter that every commit with
  ``bump=True`` (the default) increases. Nodes cache derived state (compiled policies, key
  lookups) per generation and drop it when the generation moves.
* **Expiry is advisory.** A record may carry ``expires_at`` (UTC epoch seconds). Backends may
  reclaim expired records (Redis ``PEXPIREAT``, SQLite sweep) but the service decides expiry
  with its own clock; reads may still return an expired record.
* **Timeouts.** Every call either completes or raises :class:`StoreUnavailable` within the
  backend's ``timeout`` (default :data:`DEFAULT_TIMEOUT_SECONDS`).
* **Untrusted.** Secrets reach a store only sealed by ``broker.core.keyring``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_TIMEOUT_SECONDS = 0.5
"""Default per-call timeout of a store operation (spec F1)."""

GLOBAL_NS = "global"
"""Namespace of broker-wide records (account registry, bootstrap marker)."""

MAX_EXPIRES_AT = 1e12
"""Largest accepted ``expires_at`` (epoch seconds, year 33658): anything above is a bug."""


class StoreError(Exception):
    """Base of the store's own exceptions; services map them to ``BrokerError``."""


class VersionConflict(StoreError):
    """Raised by :meth:`Store.commit` when an expected version does not hold."""

    def __init__(self, key: str) -> None:
        super().__init__(f"version conflict on {key!r}")
        self.key = key


class StoreUnavailable(StoreError):
    """Raised when the backend cannot be reached or does not answer in time."""


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record as read back."""

    key: str
    value: bytes
    version: int
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Put:
    """A write of ``value`` (JSON bytes), optionally expiring at ``expires_at`` (epoch s).

    ``listed=False`` marks a point-lookup record: backends may leave it out of
    :meth:`Store.scan` (Redis keeps no index entry for it, saving memory per record).
    """

    value: bytes
    expires_at: float | None = None
    listed: bool = True


Write = Put | None
"""A value in :meth:`Store.commit`'s ``writes``: ``Put`` to create/replace, ``None`` to delete."""


class Store(Protocol):
    """Durable, versioned, namespaced records (see the module docstring for guarantees)."""

    backend: str
    """Short backend name: ``memory``, ``sqlite`` or ``redis``."""

    async def get(self, ns: str, key: str) -> Record | None:
        """Return the record at ``key`` in ``ns``, or ``None`` when absent."""
        ...

    async def get_many(self, ns: str, keys: Sequence[str]) -> list[Record | None]:
        """Return the records at ``keys`` (same order; ``None`` for absent ones)."""
        ...

    async def scan(
        self,
        ns: str,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Return records whose key starts with ``prefix``, ordered by key."""
        ...

    async def commit(
        self,
        ns: str,
        writes: Mapping[str, Write],
        *,
        expect: Mapping[str, int] | None = None,
        bump: bool = True,
    ) -> int:
        """Atomically check ``expect`` and apply ``writes``; return the namespace generation.

        ``expect`` maps keys to the version they must have (0: must be absent). Keys written
        but not named in ``expect`` are written unconditionally. Raises
        :class:`VersionConflict` (nothing written) when an expectation fails. With
        ``bump=False`` the generation is left alone (write-behind bookkeeping such as
        last-used times, which never changes what a cache derives).
        """
        ...

    async def generation(self, ns: str) -> int:
        """Return the namespace's generation (0 if it never had a bumping commit)."""
        ...

    async def namespaces(self) -> list[str]:
        """Return every namespace that holds at least one record, sorted."""
        ...

    async def ping(self) -> None:
        """Return when the backend answers; raise :class:`StoreUnavailable` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""
        ...


def check_commit_args(writes: Mapping[str, Write], expect: Mapping[str, int]) -> None:
    """Reject malformed :meth:`Store.commit` arguments before a backend touches anything.

    Every backend calls this first, so a commit can never stop half way on bad input.
    """
    for version in expect.values():
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError("expected versions must be integers >= 0")
    for write in writes.values():
        if write is None:
            continue
        if not isinstance(write, Put) or not isinstance(write.value, bytes):
            raise TypeError("writes must map to Put (with bytes value) or None")
        if not isinstance(write.listed, bool):
            raise TypeError("Put.listed must be a bool")
        if write.expires_at is not None and not (
            math.isfinite(write.expires_at) and 0 <= write.expires_at <= MAX_EXPIRES_AT
        ):
            raise ValueError("expires_at must be a finite epoch time within range")
