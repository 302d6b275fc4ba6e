"""Store layer: ``RedisStore``, the shared backend for several broker nodes (redis.asyncio).

Key design (the namespace is the Redis Cluster hash tag, so one namespace lives in one slot
and a commit is a single-slot Lua script)::

    <prefix>:{<ns>}:r:<key>   string: "<version>|<expires_at text or empty>|<value bytes>"
    <prefix>:{<ns>}:idx       sorted set of the namespace's listed keys, all score 0, for
                              ordered prefix scans with ZRANGEBYLEX (byte order of the key)

A record is one string rather than a hash: a hash whose value is longer than Redis's
``hash-max-listpack-value`` (64 bytes by default) switches to a hashtable and costs about
200 bytes more per record, which matters for the millions of short-lived session records.
Records written with ``Put(listed=False)`` (point-lookup only, such as a temporary access key
id's owner) have no index entry.
    <prefix>:{<ns>}:gen       integer generation
    <prefix>:nsset            set of namespaces that were ever written

``<prefix>:nsset`` is the one key outside the namespace slots: in a Cluster it lives in another
slot, so the commit script cannot touch it. It is therefore added to (SADD, idempotent) in the
same round trip *before* the commit script runs, and never removed from: it is a superset of
the namespaces holding records, and :meth:`RedisStore.namespaces` filters out the empty ones.

A commit is ONE Lua script: it checks every expected version, then applies every write
(``SET``, with ``PXAT`` when the record expires, ``ZADD``/``ZREM`` on the index),
``INCR`` s the generation when asked and ``PUBLISH`` es ``"<ns> <gen>"`` on ``<prefix>:gen``.
All arguments are validated before the script runs, and the script only writes after every
check passed, so a commit is all or nothing. The script declares its flags (``#!lua``), so the
server refuses it up front when out of memory instead of stopping half way; Redis 7 or later
is needed for that.

When Redis reclaims an expired record (``PEXPIREAT``) its index entry stays behind; scans skip
such entries and remove them with a small script that re-checks the record atomically.

Every call is bounded by ``asyncio.timeout(timeout)``; connection errors, timeouts and Redis
errors become :class:`StoreUnavailable`. A commit that timed out may still have been applied
(the server may run it after the client stopped waiting), as with any networked store; the
caller sees ``StoreUnavailable`` and retries or reports 503. Error messages never include the
URL, which may carry a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from broker.store.base import (
    DEFAULT_TIMEOUT_SECONDS,
    Record,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    Write,
    check_commit_args,
)

_SCAN_BATCH = 256
"""Index entries fetched per round trip by an unbounded scan."""

_FIELDS_PER_KEY = 6
"""ARGV entries per key in the commit script: member, expect, op, value, exp, exp_ms."""

_COMMIT_LUA = """#!lua
-- KEYS[1] index, KEYS[2] generation, KEYS[2 + i] record string of key i
-- ARGV[1] ns, ARGV[2] channel, ARGV[3] bump ('1'/'0'), ARGV[4] n, then per key i
-- (base b = 4 + (i - 1) * 6): member, expected version or '-', op ('p' listed put,
-- 'u' unlisted put, 'd' delete or '-'), value, expires_at text or '', expires_at in ms
local function version_of(rk)
  local head = redis.call('GETRANGE', rk, 0, 23)
  if head == '' then return 0 end
  return tonumber(string.match(head, '^(%d+)|'))
end
local n = tonumber(ARGV[4])
for i = 1, n do
  local b = 4 + (i - 1) * 6
  local want = ARGV[b + 2]
  if want ~= '-' then
    if version_of(KEYS[2 + i]) ~= tonumber(want) then
      return {'conflict', ARGV[b + 1]}
    end
  end
end
for i = 1, n do
  local b = 4 + (i - 1) * 6
  local op = ARGV[b + 3]
  local rk = KEYS[2 + i]
  if op == 'p' or op == 'u' then
    local version = version_of(rk) + 1
    local packed = version .. '|' .. ARGV[b + 5] .. '|' .. ARGV[b + 4]
    if ARGV[b + 5] == '' then
      redis.call('SET', rk, packed)
    else
      redis.call('SET', rk, packed, 'PXAT', ARGV[b + 6])
    end
    if op == 'p' then
      redis.call('ZADD', KEYS[1], 0, ARGV[b + 1])
    else
      redis.call('ZREM', KEYS[1], ARGV[b + 1])
    end
  elseif op == 'd' then
    redis.call('DEL', rk)
    redis.call('ZREM', KEYS[1], ARGV[b + 1])
  end
end
local gen
if ARGV[3] == '1' then
  gen = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. gen)
else
  gen = tonumber(redis.call('GET', KEYS[2]) or '0')
end
return {'ok', gen}
"""

_PRUNE_LUA = """#!lua
-- KEYS[1] index, KEYS[1 + i] record hash of member ARGV[i]
local removed = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[1 + i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


class RedisStore:
    """A ``Store`` in a Redis server shared by broker nodes (see ``broker.store.base``).

    ``channel`` names the pub/sub channel that carries ``"<ns> <generation>"`` after every
    bumping commit, for nodes that drop cached state when a generation moves.
    """

    backend = "redis"

    def __init__(self, client: Redis, *, timeout: float, prefix: str) -> None:
        """Wrap a client; use :meth:`open` instead of calling this directly."""
        _check_prefix(prefix)
        self._client = client
        self._timeout = timeout
        self.prefix = prefix
        self.channel = f"{prefix}:gen"
        self._nsset = f"{prefix}:nsset".encode()
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._prune_script = client.register_script(_PRUNE_LUA)
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        prefix: str = "broker",
    ) -> RedisStore:
        """Connect to the Redis at ``url`` and check that it answers.

        Raises :class:`StoreUnavailable` when it does not answer within ``timeout``, and
        ``ValueError`` for a malformed URL or prefix.
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        _check_prefix(prefix)
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # No hidden retries: the call timeout is the whole budget, and a retried commit
            # could be applied twice. Services decide whether to retry.
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        store = cls(client, timeout=timeout, prefix=prefix)
        try:
            await store.ping()
        except BaseException:
            await store.close()
            raise
        return store

    # -- key names -------------------------------------------------------------------------

    def _base(self, ns: str) -> str:
        _check_ns(ns)
        return f"{self.prefix}:{{{ns}}}:"

    def _record_key(self, base: str, key: str) -> bytes:
        return (base + "r:" + key).encode()

    # -- plumbing --------------------------------------------------------------------------

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Bound the enclosed calls by the timeout and map failures to StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable("redis store is closed")
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except TimeoutError as exc:
            raise StoreUnavailable("redis store call timed out") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis store unavailable: {type(exc).__name__}") from exc

    async def _fetch(self, base: str, keys: Sequence[str]) -> list[Record | None]:
        """Read the records of ``keys`` with one MGET (one slot, so one snapshot)."""
        if not keys:
            return []
        rows = await self._client.mget([self._record_key(base, key) for key in keys])
        return [_record(key, row) for key, row in zip(keys, rows, strict=True)]

    # -- Store -----------------------------------------------------------------------------

    async def get(self, ns: str, key: str) -> Record | None:
        """Return the record at ``key`` in ``ns``, or ``None`` when absent."""
        base = self._base(ns)
        async with self._guard():
            row = await self._client.get(self._record_key(base, key))
        return _record(key, row)

    async def get_many(self, ns: str, keys: Sequence[str]) -> list[Record | None]:
        """Return the records at ``keys`` (same order; ``None`` for absent ones)."""
        base = self._base(ns)
        wanted = list(keys)
        if not wanted:
            return []
        unique = list(dict.fromkeys(wanted))
        async with self._guard():
            records = await self._fetch(base, unique)
        found = dict(zip(unique, records, strict=True))
        return [found[key] for key in wanted]

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
        base = self._base(ns)
        async with self._guard():
            return await self._scan(base, prefix, start_after, limit)

    async def _scan(
        self, base: str, prefix: str, start_after: str | None, limit: int | None
    ) -> list[Record]:
        if limit == 0:
            return []
        idx = (base + "idx").encode()
        if start_after is not None and start_after >= prefix:
            low = b"(" + start_after.encode()
        else:
            low = b"[" + prefix.encode()
        # No UTF-8 string contains the byte 0xFF, so this bounds every key with the prefix.
        high = b"(" + prefix.encode() + b"\xff"
        found: list[Record] = []
        while True:
            want = _SCAN_BATCH if limit is None else limit - len(found)
            members = await self._client.zrangebylex(idx, low, high, start=0, num=want)
            if not members:
                return found
            keys = [_text(member) for member in members]
            records = await self._fetch(base, keys)
            stale = [key for key, record in zip(keys, records, strict=True) if record is None]
            found.extend(record for record in records if record is not None)
            if stale:
                await self._prune(base, idx, stale)
            if len(members) < want or (limit is not None and len(found) >= limit):
                return found
            low = b"(" + _raw(members[-1])

    async def _prune(self, base: str, idx: bytes, stale: list[str]) -> None:
        """Drop index entries whose record Redis reclaimed (re-checked atomically)."""
        keys = [idx, *(self._record_key(base, key) for key in stale)]
        await self._eval(self._prune_script.sha, _PRUNE_LUA, keys, [k.encode() for k in stale])

    async def _eval(
        self, sha: str, source: str, keys: Sequence[bytes], args: Sequence[bytes | str]
    ) -> object:
        try:
            return await self._client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._client.script_load(source)
            return await self._client.evalsha(sha, len(keys), *keys, *args)

    async def commit(
        self,
        ns: str,
        writes: Mapping[str, Write],
        *,
        expect: Mapping[str, int] | None = None,
        bump: bool = True,
    ) -> int:
        """Atomically check ``expect`` and apply ``writes``; return the namespace generation."""
        base = self._base(ns)
        expected = dict(expect or {})
        planned = dict(writes)
        check_commit_args(planned, expected)
        keys: list[bytes] = [(base + "idx").encode(), (base + "gen").encode()]
        args: list[bytes | str] = [ns, self.channel, "1" if bump else "0", ""]
        names = list(dict.fromkeys([*expected, *planned]))
        for key in names:
            keys.append(self._record_key(base, key))
            want = str(expected[key]) if key in expected else "-"
            args.extend([key, want, *_write_args(planned, key)])
        args[3] = str(len(names))
        sha = self._commit_script.sha
        async with self._guard():
            if any(write is not None for write in planned.values()):
                # nsset lives outside the namespace's slot; add to it first (see module doc).
                pipe = self._client.pipeline(transaction=False)
                pipe.sadd(self._nsset, ns.encode())
                pipe.evalsha(sha, len(keys), *keys, *args)
                added, result = await pipe.execute(raise_on_error=False)
                if isinstance(added, BaseException):
                    raise added
                if isinstance(result, NoScriptError):
                    result = await self._eval(sha, _COMMIT_LUA, keys, args)
                elif isinstance(result, BaseException):
                    raise result
            else:
                result = await self._eval(sha, _COMMIT_LUA, keys, args)
        return _commit_result(result)

    async def generation(self, ns: str) -> int:
        """Return the namespace's generation (0 if it never had a bumping commit)."""
        base = self._base(ns)
        async with self._guard():
            raw = await self._client.get((base + "gen").encode())
        return 0 if raw is None else int(raw)

    async def namespaces(self) -> list[str]:
        """Return every namespace that holds at least one record, sorted."""
        async with self._guard():
            members = await self._client.smembers(self._nsset)
            names = sorted(_text(member) for member in members)
            live: list[str] = []
            for ns in names:
                if await self._scan(self._base(ns), "", None, 1):
                    live.append(ns)
        return live

    async def follow_generations(
        self,
        on_event: Callable[[str, int], None],
        on_resync: Callable[[], Awaitable[None]],
        *,
        retry_seconds: float = 0.5,
    ) -> None:
        """Deliver every node's generation changes to ``on_event(ns, generation)``.

        Runs until cancelled. Pub/sub delivers at most once, so after every (re)subscription
        ``on_resync()`` is awaited to catch up on what was published while unsubscribed; a
        lost connection is retried every ``retry_seconds``.
        """
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await on_resync()
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self._timeout / 2
                    )
                    if message is None or message.get("type") != "message":
                        continue
                    ns, _, gen = _text(message["data"]).partition(" ")
                    if gen.isdigit():
                        on_event(ns, int(gen))
            except (RedisError, OSError, StoreError):
                await asyncio.sleep(retry_seconds)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def ping(self) -> None:
        """Return when Redis answers PING; raise :class:`StoreUnavailable` otherwise."""
        async with self._guard():
            await self._client.ping()

    async def close(self) -> None:
        """Close the connection pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.aclose()
        except (TimeoutError, RedisError, OSError):
            pass


def _check_prefix(prefix: str) -> None:
    if not prefix or any(ch in prefix for ch in "{}") or prefix != prefix.strip():
        raise ValueError("redis key prefix must be non-empty, without braces or edge spaces")


def _check_ns(ns: str) -> None:
    # Braces would move or split the hash tag and let two namespaces share key names.
    if not ns or "{" in ns or "}" in ns:
        raise ValueError("namespace must be non-empty and contain no braces")


def _write_args(planned: Mapping[str, Write], key: str) -> list[bytes | str]:
    """Return the op, value, exp text and exp ms of ``key`` for the commit script."""
    if key not in planned:
        return ["-", b"", "", ""]
    write = planned[key]
    if write is None:
        return ["d", b"", "", ""]
    op = "p" if write.listed else "u"
    if write.expires_at is None:
        return [op, write.value, "", ""]
    expires_at = float(write.expires_at)
    # Round the deadline up: Redis must never drop a record before its expires_at.
    return [op, write.value, repr(expires_at), str(math.ceil(expires_at * 1000))]


def _commit_result(result: object) -> int:
    if not isinstance(result, list) or len(result) != 2:
        raise StoreUnavailable("unexpected reply from the commit script")
    tag, payload = result
    if tag == b"conflict" and isinstance(payload, bytes):
        raise VersionConflict(payload.decode())
    if tag == b"ok" and isinstance(payload, int):
        return payload
    raise StoreUnavailable("unexpected reply from the commit script")


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record(key: str, packed: bytes | str | None) -> Record | None:
    """Unpack ``"<version>|<expires_at>|<value>"`` (see the module docstring)."""
    if packed is None:
        return None
    raw = _raw(packed)
    first = raw.index(b"|")
    second = raw.index(b"|", first + 1)
    expires_at = raw[first + 1 : second]
    return Record(
        key=key,
        value=raw[second + 1 :],
        version=int(raw[:first]),
        expires_at=float(expires_at) if expires_at else None,
    )
