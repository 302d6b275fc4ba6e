"""Store layer: ``SqliteStore``, the embedded default backend (one file, WAL mode).

All database work runs on one dedicated thread (a single-worker executor) that owns the
``sqlite3`` connection, so the event loop never blocks on disk. Commits start with
``BEGIN IMMEDIATE``: the write lock is taken before the expected versions are read, which
serializes writers across connections and across broker processes sharing the file. A busy
timeout makes a writer wait for the lock instead of failing, up to the call timeout.

Commits are grouped: a commit queues itself, and the store thread applies every commit queued
by then in one ``BEGIN IMMEDIATE ... COMMIT`` transaction, each inside its own ``SAVEPOINT``
(a commit whose expected versions fail rolls back to its savepoint alone and gets
``VersionConflict``; the others go on). One transaction, hence one WAL sync, then covers a
whole burst of concurrent commits (session issuance under load), and no caller hears of
success before the transaction holding its writes is durable (spec F2).

Writers in several processes (``broker serve --workers N``, admin commands) take turns through
an advisory ``flock`` on ``<database>-writer.lock`` before ``BEGIN IMMEDIATE``: a waiting
process wakes the moment the lock is free, where SQLite's own busy handler would sleep in
growing steps (up to 100 ms) and let batches queue for that long.

Every call carries a deadline. The caller stops waiting at the call timeout (and gets
:class:`StoreUnavailable`); the worker thread checks a slightly earlier deadline before it
starts and again just before ``COMMIT``, and rolls back when it has passed, so a call the
caller gave up on is not applied later. Only a ``COMMIT`` that itself outlasts that margin can
succeed after its caller was told it failed, as with any networked store.

The database file is created with mode 0600 and a missing parent directory with mode 0700
(spec E8); SQLite gives its ``-wal`` and ``-shm`` files the database file's mode.

Schema::

    records(ns, key, value BLOB, version INTEGER, expires_at REAL, PRIMARY KEY(ns, key))
        WITHOUT ROWID
    generations(ns PRIMARY KEY, gen INTEGER)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from broker.store.base import (
    DEFAULT_TIMEOUT_SECONDS,
    Record,
    StoreUnavailable,
    VersionConflict,
    Write,
    check_commit_args,
)

T = TypeVar("T")


SCHEMA_VERSION = 1
"""Value of ``PRAGMA user_version`` for the schema this module creates."""

_GET_MANY_CHUNK = 500
"""Keys per ``IN (...)`` query; well under SQLite's bound-parameter limit."""

_WORKER_MARGIN = 0.1
"""Fraction of the call timeout the worker leaves for its answer to reach the caller."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS records (
        ns TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        expires_at REAL,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS generations (
        ns TEXT PRIMARY KEY,
        gen INTEGER NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS records_expires_at
        ON records (expires_at) WHERE expires_at IS NOT NULL""",
)

_SELECT = "SELECT key, value, version, expires_at FROM records"

_UPSERT = """
    INSERT INTO records (ns, key, value, version, expires_at) VALUES (?, ?, ?, 1, ?)
    ON CONFLICT (ns, key) DO UPDATE SET
        value = excluded.value,
        version = records.version + 1,
        expires_at = excluded.expires_at
"""


@dataclass(slots=True)
class _Commit:
    """One queued commit: its arguments, its deadline and the future of its caller."""

    ns: str
    writes: dict[str, Write]
    expect: dict[str, int]
    bump: bool
    deadline: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]

    def settle(self, outcome: int | BaseException) -> None:
        """Hand the outcome to the caller's loop (called on the store thread)."""
        self.loop.call_soon_threadsafe(_settle, self.future, outcome)


def _settle(future: asyncio.Future[int], outcome: int | BaseException) -> None:
    if future.done():  # the caller gave up (timeout or cancellation)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def prefix_end(prefix: str) -> str | None:
    """Return the smallest string greater than every string that starts with ``prefix``.

    ``None`` means there is no such bound (``prefix`` is empty or all U+10FFFF), so a scan
    runs to the end of the namespace. Surrogates are skipped: they cannot be stored as UTF-8.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


class SqliteStore:
    """A ``Store`` in one SQLite file (see ``broker.store.base`` for the guarantees)."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        executor: ThreadPoolExecutor,
        connection: sqlite3.Connection,
        timeout: float,
    ) -> None:
        """Wrap an open connection; use :meth:`open` instead of calling this directly."""
        self.path = path
        self._executor = executor
        self._conn = connection
        self._timeout = timeout
        self._closed = False
        # Commits waiting for the store thread; guarded by the lock because the loop appends
        # and the thread takes. ``_batch_queued``: a batch job is in the executor's queue.
        self._queue: list[_Commit] = []
        self._queue_lock = threading.Lock()
        self._batch_queued = False
        self._writer_fd: int | None = None  # the flock file; opened and used on the store thread

    @classmethod
    async def open(cls, path: Path, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and its schema.

        Raises :class:`StoreUnavailable` when the file cannot be opened or initialized
        within a few call timeouts (another process may hold a long write lock).
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        path = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-sqlite")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(5.0, timeout * 4)):
                connection = await loop.run_in_executor(executor, _connect, path, timeout)
        except (TimeoutError, OSError, sqlite3.Error) as exc:
            executor.shutdown(wait=False, cancel_futures=True)
            raise StoreUnavailable(f"cannot open sqlite store: {type(exc).__name__}") from exc
        return cls(path, executor, connection, timeout)

    async def _run(self, job: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run ``job(connection, deadline)`` on the store thread within the call timeout."""
        if self._closed:
            raise StoreUnavailable("sqlite store is closed")
        # The worker's own deadline comes a little before the caller's, so that a commit the
        # worker lets through normally reaches its caller before the caller gives up.
        deadline = time.monotonic() + self._timeout * (1.0 - _WORKER_MARGIN)
        loop = asyncio.get_running_loop()
        conn = self._conn

        def call() -> T:
            if time.monotonic() > deadline:
                raise StoreUnavailable("sqlite store call expired before it started")
            try:
                return job(conn, deadline)
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreUnavailable(f"sqlite error: {type(exc).__name__}") from exc
            except BaseException:
                _rollback(conn)
                raise

        try:
            async with asyncio.timeout(self._timeout):
                return await loop.run_in_executor(self._executor, call)
        except TimeoutError as exc:
            raise StoreUnavailable("sqlite store call timed out") from exc
        except RuntimeError as exc:
            # The executor refuses work once close() shut it down.
            if self._closed:
                raise StoreUnavailable("sqlite store is closed") from exc
            raise

    async def get(self, ns: str, key: str) -> Record | None:
        """Return the record at ``key`` in ``ns``, or ``None`` when absent."""

        def job(conn: sqlite3.Connection, deadline: float) -> Record | None:
            row = conn.execute(
                f"{_SELECT} WHERE ns = ? AND key = ?",
                (ns, key),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._run(job)

    async def get_many(self, ns: str, keys: Sequence[str]) -> list[Record | None]:
        """Return the records at ``keys`` (same order; ``None`` for absent ones)."""
        wanted = list(keys)
        if not wanted:
            return []

        def job(conn: sqlite3.Connection, deadline: float) -> list[Record | None]:
            unique = list(dict.fromkeys(wanted))
            found: dict[str, Record] = {}
            # One read transaction, so the answer is a snapshot even across chunks.
            conn.execute("BEGIN")
            for start in range(0, len(unique), _GET_MANY_CHUNK):
                chunk = unique[start : start + _GET_MANY_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"{_SELECT} WHERE ns = ? AND key IN ({marks})"  # noqa: S608 -- '?' only
                rows = conn.execute(sql, (ns, *chunk)).fetchall()
                for row in rows:
                    record = _record(row)
                    found[record.key] = record
            conn.execute("COMMIT")
            return [found.get(key) for key in wanted]

        return await self._run(job)

    async def scan(
        self,
        ns: str,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Return records whose key starts with ``prefix``, ordered by key."""
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0:
            return await self._run(lambda conn, deadline: [])
        clauses = ["ns = ?"]
        params: list[object] = [ns]
        if start_after is not None and start_after >= prefix:
            clauses.append("key > ?")
            params.append(start_after)
        else:
            clauses.append("key >= ?")
            params.append(prefix)
        end = prefix_end(prefix)
        if end is not None:
            clauses.append("key < ?")
            params.append(end)
        sql = f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY key"  # noqa: S608
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)

        def job(conn: sqlite3.Connection, deadline: float) -> list[Record]:
            return [_record(row) for row in conn.execute(sql, params).fetchall()]

        return await self._run(job)

    async def commit(
        self,
        ns: str,
        writes: Mapping[str, Write],
        *,
        expect: Mapping[str, int] | None = None,
        bump: bool = True,
    ) -> int:
        """Atomically check ``expect`` and apply ``writes``; return the namespace generation.

        The commit joins the next group transaction of the store thread (module docstring).
        """
        planned = dict(writes)
        expected = dict(expect or {})
        check_commit_args(planned, expected)
        if self._closed:
            raise StoreUnavailable("sqlite store is closed")
        loop = asyncio.get_running_loop()
        item = _Commit(
            ns=ns,
            writes=planned,
            expect=expected,
            bump=bump,
            deadline=time.monotonic() + self._timeout * (1.0 - _WORKER_MARGIN),
            loop=loop,
            future=loop.create_future(),
        )
        with self._queue_lock:
            self._queue.append(item)
            start = not self._batch_queued
            self._batch_queued = True
        if start:
            try:
                self._executor.submit(self._run_batch)
            except RuntimeError as exc:  # the executor refuses work once close() shut it down
                raise StoreUnavailable("sqlite store is closed") from exc
        try:
            async with asyncio.timeout(self._timeout):
                return await item.future
        except TimeoutError as exc:
            raise StoreUnavailable("sqlite store call timed out") from exc

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """On the store thread: hold the cross-process writer lock (see the module docstring)."""
        if self._writer_fd is None:
            self._writer_fd = os.open(
                f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        fcntl.flock(self._writer_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def _run_batch(self) -> None:
        """On the store thread: apply every queued commit in one transaction."""
        try:
            with self._writer_turn():
                self._apply_queued()
        except OSError as exc:  # the lock file cannot be opened or locked
            with self._queue_lock:
                batch, self._queue = self._queue, []
                self._batch_queued = False
            for item in batch:
                item.settle(StoreUnavailable(f"sqlite writer lock: {type(exc).__name__}"))

    def _apply_queued(self) -> None:
        # Taken after the writer lock: commits queued while waiting for it join this batch.
        with self._queue_lock:
            batch, self._queue = self._queue, []
            self._batch_queued = False
        now = time.monotonic()
        live: list[_Commit] = []
        for item in batch:
            if now > item.deadline:
                item.settle(StoreUnavailable("sqlite store call expired before it started"))
            else:
                live.append(item)
        if not live:
            return
        conn = self._conn
        outcomes: list[int | BaseException] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in live:
                conn.execute("SAVEPOINT one_commit")
                try:
                    outcomes.append(_apply(conn, item))
                except VersionConflict as exc:
                    conn.execute("ROLLBACK TO one_commit")
                    outcomes.append(exc)
                conn.execute("RELEASE one_commit")
            if any(
                time.monotonic() > item.deadline
                for item, outcome in zip(live, outcomes, strict=True)
                if not isinstance(outcome, BaseException)
            ):
                raise StoreUnavailable("sqlite commit passed its deadline; rolled back")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            failure: BaseException = StoreUnavailable(f"sqlite error: {type(exc).__name__}")
            outcomes = [failure] * len(live)
        except BaseException as exc:
            _rollback(conn)
            outcomes = [exc] * len(live)
        for item, outcome in zip(live, outcomes, strict=True):
            item.settle(outcome)

    async def generation(self, ns: str) -> int:
        """Return the namespace's generation (0 if it never had a bumping commit)."""
        return await self._run(lambda conn, deadline: _generation(conn, ns))

    async def namespaces(self) -> list[str]:
        """Return every namespace that holds at least one record, sorted."""

        def job(conn: sqlite3.Connection, deadline: float) -> list[str]:
            rows = conn.execute("SELECT DISTINCT ns FROM records ORDER BY ns").fetchall()
            return [str(row[0]) for row in rows]

        return await self._run(job)

    async def sweep(self, now: float) -> int:
        """Delete records whose ``expires_at`` is before ``now``; return how many went.

        Expiry is decided by services with their own clock; this only reclaims space.
        """

        def job(conn: sqlite3.Connection, deadline: float) -> int:
            with self._writer_turn():
                return locked(conn, deadline)

        def locked(conn: sqlite3.Connection, deadline: float) -> int:
            conn.execute("BEGIN IMMEDIATE")
            removed = conn.execute(
                "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at < ?",
                (float(now),),
            ).rowcount
            if time.monotonic() > deadline:
                raise StoreUnavailable("sqlite sweep passed its deadline; rolled back")
            conn.execute("COMMIT")
            return int(removed)

        return await self._run(job)

    async def ping(self) -> None:
        """Return when the database answers; raise :class:`StoreUnavailable` otherwise."""

        def job(conn: sqlite3.Connection, deadline: float) -> None:
            conn.execute("SELECT 1 FROM generations LIMIT 1").fetchall()

        await self._run(job)

    async def close(self) -> None:
        """Close the connection and stop the store thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(5.0, self._timeout * 4)):
                await loop.run_in_executor(self._executor, self._close_on_thread)
        except (TimeoutError, sqlite3.Error):
            pass
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _close_on_thread(self) -> None:
        if self._writer_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._writer_fd)
            self._writer_fd = None
        self._conn.close()


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    """Create the file (0600, parent 0700) if needed, open it and set up the schema."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(parent, 0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    conn = sqlite3.connect(
        path,
        timeout=timeout,
        isolation_level=None,  # explicit BEGIN/COMMIT only
        check_same_thread=True,
    )
    try:
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        # FULL: a commit the caller saw succeed survives power loss (spec F2).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"unsupported schema version {version}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
    except BaseException:
        conn.close()
        raise
    return conn


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _apply(conn: sqlite3.Connection, item: _Commit) -> int:
    """Check one commit's expectations and apply its writes; return the generation."""
    ns = item.ns
    for key, version in item.expect.items():
        row = conn.execute(
            "SELECT version FROM records WHERE ns = ? AND key = ?", (ns, key)
        ).fetchone()
        if (0 if row is None else int(row[0])) != version:
            raise VersionConflict(key)
    for key, write in item.writes.items():
        if write is None:
            conn.execute("DELETE FROM records WHERE ns = ? AND key = ?", (ns, key))
        else:
            expires_at = None if write.expires_at is None else float(write.expires_at)
            conn.execute(_UPSERT, (ns, key, write.value, expires_at))
    if item.bump:
        conn.execute(
            "INSERT INTO generations (ns, gen) VALUES (?, 1) "
            "ON CONFLICT (ns) DO UPDATE SET gen = generations.gen + 1",
            (ns,),
        )
    return _generation(conn, ns)


def _generation(conn: sqlite3.Connection, ns: str) -> int:
    row = conn.execute("SELECT gen FROM generations WHERE ns = ?", (ns,)).fetchone()
    return 0 if row is None else int(row[0])


def _record(row: tuple[object, ...]) -> Record:
    key, value, version, expires_at = row
    assert isinstance(key, str) and isinstance(value, bytes) and isinstance(version, int)
    assert expires_at is None or isinstance(expires_at, int | float)
    return Record(
        key=key,
        value=value,
        version=version,
        expires_at=None if expires_at is None else float(expires_at),
    )
