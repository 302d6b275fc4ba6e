"""Store layer: ``SqliteStore``, the embedded default backend (one file, WAL mode).

All database work runs on one dedicated thread (a single-worker executor) that owns the
``sqlite3`` connection, so the event loop never blocks on disk. Commits start with
``BEGIN IMMEDIATE``: the write lock is taken before the expected versions are read, which
serializes writers across connections and across broker processes sharing the file. A busy
timeout makes a writer wait for the lock instead of failing, up to the call timeout.

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
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
        """Atomically check ``expect`` and apply ``writes``; return the namespace generation."""
        planned = dict(writes)
        expected = dict(expect or {})
        check_commit_args(planned, expected)

        def job(conn: sqlite3.Connection, deadline: float) -> int:
            conn.execute("BEGIN IMMEDIATE")
            for key, version in expected.items():
                row = conn.execute(
                    "SELECT version FROM records WHERE ns = ? AND key = ?", (ns, key)
                ).fetchone()
                if (0 if row is None else int(row[0])) != version:
                    raise VersionConflict(key)
            for key, write in planned.items():
                if write is None:
                    conn.execute("DELETE FROM records WHERE ns = ? AND key = ?", (ns, key))
                else:
                    expires_at = None if write.expires_at is None else float(write.expires_at)
                    conn.execute(_UPSERT, (ns, key, write.value, expires_at))
            if bump:
                conn.execute(
                    "INSERT INTO generations (ns, gen) VALUES (?, 1) "
                    "ON CONFLICT (ns) DO UPDATE SET gen = generations.gen + 1",
                    (ns,),
                )
            generation = _generation(conn, ns)
            if time.monotonic() > deadline:
                raise StoreUnavailable("sqlite commit passed its deadline; rolled back")
            conn.execute("COMMIT")
            return generation

        return await self._run(job)

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
                await loop.run_in_executor(self._executor, self._conn.close)
        except (TimeoutError, sqlite3.Error):
            pass
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)


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
