"""Benchmark (not a test): STS throughput of a real broker against an aiohttp hello-world server.

Starts ``broker serve`` (SQLite store by default; ``--store redis`` starts a private
``redis-server``) with issuance throttling raised out of the way, and a minimal aiohttp
hello-world server with as many processes, all pinned to the server cores; the client (this
process) is pinned to its own core. Then, per worker count in ``--workers``:

* ``hello``: the GetCallerIdentity requests below, sent to the hello-world server (same bytes on
  the wire; it answers ``Hello, world``): what HTTP and aiohttp alone cost;
* ``AssumeRole``: SigV4-signed with an IAM user's long-term key, one fresh signature per request;
* ``AssumeRoleWithWebIdentity``: unsigned, the same body every time: one RS256 token (valid
  1 h) of the test OIDC issuer (``tests.support.oidc_issuer``, in this process on loopback),
  whose JWKS the broker fetched during the warm-up and then serves from its cache;
* ``GetCallerIdentity (ASIA)``: signed with temporary credentials (the session token in
  ``X-Amz-Security-Token``), so the broker authenticates from the token alone.

Every timed request is signed before its run starts, so signing costs neither throughput nor
latency. The client speaks HTTP/1.1 over ``--concurrency`` keep-alive connections with one
request in flight per connection (``--client raw``, the default: pre-serialized requests written
from an ``asyncio.Protocol``; ``--client aiohttp``: an ``aiohttp.ClientSession``). Each target is
timed ``--repeat`` times and the fastest run kept. The CPU use of the server processes and the
busy share of the server and client cores during each run are read from ``/proc``, so a run whose
client was the bottleneck shows as such.

``--sessions N`` then issues N more sessions (concurrent AssumeRole calls, signed as they go),
reads the broker's resident memory and, on Redis, ``INFO memory`` ``used_memory`` before and
after, and times the targets again. ``--py-spy SECONDS`` records each broker target with
``py-spy record -f raw`` under load and prints the top costs.

The targets of the performance issue are printed next to the numbers (met / MISSED); nothing is
asserted. Exit status 1 if any request failed. Run from the repository root::

    .venv/bin/python bench/bench_sts.py --requests 20000 --workers 1,2
    .venv/bin/python bench/bench_sts.py --store redis --sessions 100000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import functools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import botocore.auth  # noqa: E402
from aiohttp import web  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from bench.children import ChildServers  # noqa: E402
from tests.support.broker_proc import REGION, BrokerProcess, Creds, free_port  # noqa: E402
from tests.support.oidc_issuer import OidcIssuer, trust_policy  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

MAX_REQUESTS = 1_000_000
MAX_SESSIONS = 10_000_000
MAX_CONCURRENCY = 1_024
MAX_WORKERS = 64
STARTUP_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0
SIGNATURE_WINDOW_SECONDS = 900
"""The broker's default clock-skew window: a pre-signed request must be sent within it."""

WEB_ROLE = "bench-web-role"
WEB_CLIENT_ID = "bench-client"
WEB_SUBJECT = "bench-subject"
WEB_TOKEN_SECONDS = 3600
HIGH_LIMIT = "1000000000"
LIMIT_ENV = {
    "BROKER_LIMITS_ISSUE_RPS_PER_PRINCIPAL": HIGH_LIMIT,
    "BROKER_LIMITS_ISSUE_BURST": HIGH_LIMIT,
    "BROKER_LIMITS_ISSUE_RPS_PER_ROLE": HIGH_LIMIT,
}
"""Issuance throttling ([limits]) raised so it never answers Throttling during the bench."""
FEDERATION_ENV = {"BROKER_FEDERATION_ALLOW_HTTP_ISSUERS": "true"}
"""The test issuer listens on plain HTTP on loopback."""

FORM = "application/x-www-form-urlencoded; charset=utf-8"
STS_VERSION = "2011-06-15"
IAM_VERSION = "2010-05-08"
USER = "bench-user"
ROLE = "bench-role"
ROLE_MAX_SESSION_SECONDS = 43200
HELLO_BODY = b"Hello, world"
PROFILE_BATCH = 2000

# Targets of the performance issue (reported against, never asserted).
TARGET_ASSUME_VS_HELLO = 0.35
TARGET_GCI_VS_HELLO = 0.5
TARGET_AFTER_SESSIONS = 0.10  # throughput within 10 % of fresh after many sessions
TARGET_RSS_BYTES_PER_100K = 100 * 1024 * 1024
TARGET_REDIS_BYTES_PER_SESSION = 1024
TARGET_TWO_WORKERS = 1.4

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- results -------------------------------------------------------------------------------


@dataclass
class Result:
    """What one timed run measured."""

    phase: str
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    first_error: str
    server_cpu: float = 0.0  # CPU seconds the server processes used during the run
    server_busy: float = 0.0  # busy share of the server cores (100 = one core), any process
    client_busy: float = 0.0  # busy share of the client core(s), any process
    spread: list[float] = field(default_factory=list)  # req/s of every repeated run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in ms."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[max(1, math.ceil(q * len(ordered))) - 1]

    def cpu_percent(self, seconds: float) -> float:
        return 100.0 * seconds / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunReport:
    """Everything measured for one worker count."""

    workers: int
    server_cores: int
    pinned: bool
    results: list[Result] = field(default_factory=list)
    sessions: int = 0
    fill_seconds: float = 0.0
    fill_errors: int = 0
    rss_before: int = 0
    rss_after: int = 0
    redis_before: int | None = None
    redis_after: int | None = None
    profiles: dict[str, str] = field(default_factory=dict)
    jwks_fetches: int = 0  # JWKS documents the issuer served to the broker (cache misses)

    def get(self, phase: str, name: str) -> Result | None:
        return next((r for r in self.results if r.phase == phase and r.name == name), None)


# -- /proc helpers -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its last ')'.
    return text[text.rfind(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from the parent ids in ``/proc/*/stat``)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children[int(fields[1])].append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (children not waited for excluded)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) clock ticks since boot, from ``/proc/stat``."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            total = sum(ticks)
            out[int(name[3:])] = (total - ticks[3] - ticks[4], total)
    return out


def busy_percent(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cores: set[int] | None
) -> float:
    """Busy share of ``cores`` between two ``core_times`` readings (100 % = one whole core)."""
    share = 0.0
    for core in cores if cores is not None else set(after):
        busy = after[core][0] - before[core][0]
        total = after[core][1] - before[core][1]
        share += 100.0 * busy / total if total > 0 else 0.0
    return share


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident set size of ``pids`` summed (psutil when installed, else ``VmRSS``)."""
    try:
        import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        psutil = None
    total = 0
    for pid in pids:
        if psutil is not None:
            with contextlib.suppress(Exception):
                total += int(psutil.Process(pid).memory_info().rss)
            continue
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def children_named(parent: int, name: str) -> list[int]:
    """Direct children of ``parent`` whose command name is ``name``."""
    out = []
    for pid in process_tree(parent)[1:]:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                out.append(pid)
    return out


def parse_cores(text: str | None) -> set[int] | None:
    if not text:
        return None
    return {int(part) for part in text.split(",") if part.strip()}


def pin(pids: Sequence[int], cores: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cores)


# -- the hello-world server (child processes of this script) --------------------------------


async def _hello(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=HELLO_BODY, content_type="text/plain")


def run_hello_server(port: int) -> None:
    """Serve ``Hello, world`` for any POST or GET on ``/`` (shares the port with siblings)."""
    _install_loop()
    app = web.Application()
    app.router.add_route("*", "/", _hello)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, print=None, access_log=None)


def hello_server(processes: int) -> ChildServers:
    """``processes`` hello-world processes sharing one port (``SO_REUSEPORT``)."""
    port = free_port()
    script = str(Path(__file__).resolve())
    return ChildServers(script, ["--hello-server", str(port)], port, processes, settle=0.3)


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One signed POST: what aiohttp sends, and the same as raw HTTP/1.1 bytes."""

    url: str
    headers: dict[str, str]
    body: bytes
    wire: bytes


def prepare(url: str, params: Mapping[str, str], creds: Creds | None) -> Prepared:
    """A form POST, SigV4-signed for ``sts`` by botocore when ``creds`` are given."""
    body = urllib.parse.urlencode(dict(params)).encode()
    headers = {"Content-Type": FORM}
    if creds is not None:
        req = AWSRequest(method="POST", url=url, data=body, headers=headers)
        signer = botocore.auth.SigV4Auth(
            Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
            "sts",
            REGION,
        )
        signer.add_auth(req)
        headers = {k: str(v) for k, v in req.headers.items()}
    split = urllib.parse.urlsplit(url)
    lines = [f"POST {split.path or '/'} HTTP/1.1", f"Host: {split.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return Prepared(url, headers, body, "\r\n".join(lines).encode("latin-1") + body)


MakeRequest = Callable[[int], Prepared]


def assume_role_request(url: str, user: Creds, role_arn: str, prefix: str) -> MakeRequest:
    def make(i: int) -> Prepared:
        params = {
            "Action": "AssumeRole",
            "Version": STS_VERSION,
            "RoleArn": role_arn,
            "RoleSessionName": f"{prefix}{i}",
        }
        return prepare(url, params, user)

    return make


def web_identity_request(url: str, role_arn: str, token: str) -> MakeRequest:
    """Unsigned AssumeRoleWithWebIdentity: one body, built once, sent for every index."""
    params = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": STS_VERSION,
        "RoleArn": role_arn,
        "RoleSessionName": "bench-web",
        "WebIdentityToken": token,
    }
    prepared = prepare(url, params, None)

    def make(i: int) -> Prepared:
        return prepared

    return make


def caller_identity_request(url: str, session: Creds) -> MakeRequest:
    def make(i: int) -> Prepared:
        return prepare(url, {"Action": "GetCallerIdentity", "Version": STS_VERSION}, session)

    return make


# -- the client -----------------------------------------------------------------------------


Take = Callable[[], "tuple[int, bytes] | None"]
Record = Callable[[int, float, int, bytes], None]


class _Lane(asyncio.Protocol):
    """One keep-alive connection with one request in flight: the next one leaves as soon as the
    previous answer is complete. Parsing is minimal (status line and ``Content-Length``), so the
    client spends its time in the event loop and the kernel, not in HTTP machinery."""

    def __init__(self, take: Take, record: Record, done: asyncio.Future[None]) -> None:
        self._take = take
        self._record = record
        self._done = done
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._need = -1  # bytes of the current answer, once its head is parsed
        self._length = 0
        self._status = 0
        self._index = -1
        self._started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send_next(self) -> None:
        item = self._take()
        if item is None or self._transport is None:
            self._index = -1
            if not self._done.done():
                self._done.set_result(None)
            return
        self._index, wire = item
        self._started = time.perf_counter()
        self._transport.write(wire)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._need < 0:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail(b"response without Content-Length")
                return
            stop = head.find(b"\r\n", at + 2)
            self._length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            self._status = int(head[9:12])
            self._need = end + 4 + self._length
        if len(self._buf) < self._need:
            return
        body = bytes(self._buf[self._need - self._length : self._need])
        del self._buf[: self._need]
        self._need = -1
        self._record(self._index, self._started, self._status, body)
        self.send_next()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _fail(self, why: bytes) -> None:
        if self._index >= 0:
            self._record(self._index, self._started, 0, why)
            self._index = -1
        if self._transport is not None:
            self._transport.close()
        if not self._done.done():
            self._done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(repr(exc).encode() if exc else b"connection closed")


@dataclass
class Meter:
    """CPU readings taken at the start of a timed run."""

    server_pids: Sequence[int]
    server_cores: set[int] | None
    client_cores: set[int] | None
    cpu: float = 0.0
    cores: dict[int, tuple[int, int]] = field(default_factory=dict)
    started: float = 0.0

    def start(self) -> None:
        self.cpu = cpu_seconds(self.server_pids)
        self.cores = core_times()
        self.started = time.perf_counter()

    def stop(self) -> tuple[float, float, float, float]:
        """(seconds, server process CPU seconds, server cores busy %, client cores busy %)."""
        seconds = time.perf_counter() - self.started
        cores = core_times()
        return (
            seconds,
            cpu_seconds(self.server_pids) - self.cpu,
            busy_percent(self.cores, cores, self.server_cores),
            busy_percent(self.cores, cores, self.client_cores),
        )


class Driver:
    """Sends numbered requests over keep-alive connections, one in flight per connection."""

    def __init__(
        self,
        kind: str,
        concurrency: int,
        client_cores: set[int] | None = None,
        server_cores: set[int] | None = None,
    ) -> None:
        self.kind = kind
        self.concurrency = concurrency
        self.client_cores = client_cores
        self.server_cores = server_cores

    def with_concurrency(self, concurrency: int) -> Driver:
        return Driver(self.kind, concurrency, self.client_cores, self.server_cores)

    async def run(
        self,
        phase: str,
        name: str,
        url: str,
        count: int,
        request: Callable[[int], Prepared],
        server_pids: Sequence[int],
        progress: str | None = None,
    ) -> Result:
        """Send requests ``request(0..count-1)``; time each and the whole run."""
        latencies = [0.0] * count
        errors = 0
        first_error = ""
        position = 0
        step = max(count // 10, 1)
        meter = Meter(server_pids, self.server_cores, self.client_cores)

        answered = 0

        def record(index: int, started: float, status: int, payload: bytes) -> None:
            nonlocal errors, first_error, answered
            latencies[index] = (time.perf_counter() - started) * 1000.0
            answered += 1
            if status != 200:
                errors += 1
                if not first_error:
                    first_error = f"HTTP {status}: {payload[:300].decode('utf-8', 'replace')}"
            if progress and (index + 1) % step == 0:
                print(f"  {progress}: {index + 1}/{count}", flush=True)

        def take() -> int | None:
            nonlocal position
            if position >= count:
                return None
            position += 1
            return position - 1

        lanes = min(self.concurrency, count)
        if self.kind == "raw":
            split = urllib.parse.urlsplit(url)
            host, port = split.hostname or "127.0.0.1", split.port or 80
            loop = asyncio.get_running_loop()

            def take_wire() -> tuple[int, bytes] | None:
                index = take()
                return None if index is None else (index, request(index).wire)

            lanes_done: list[asyncio.Future[None]] = []
            protocols: list[_Lane] = []
            for _ in range(lanes):
                done: asyncio.Future[None] = loop.create_future()
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(
                        functools.partial(_Lane, take_wire, record, done), host, port
                    ),
                    CONNECT_TIMEOUT_SECONDS,
                )
                lanes_done.append(done)
                protocols.append(protocol)
            meter.start()
            for protocol in protocols:
                protocol.send_next()
            await asyncio.gather(*lanes_done)
            measured = meter.stop()
            for protocol in protocols:
                protocol.close()
        else:
            connector = aiohttp.TCPConnector(limit=lanes)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

                async def open_one() -> None:
                    async with session.get(url) as resp:  # any answer leaves a pooled connection
                        await resp.read()

                await asyncio.gather(*(open_one() for _ in range(lanes)))

                async def lane_http() -> None:
                    while (index := take()) is not None:
                        req = request(index)
                        started = time.perf_counter()
                        try:
                            async with session.post(
                                req.url, data=req.body, headers=req.headers
                            ) as resp:
                                payload = await resp.read()
                                status = resp.status
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            status, payload = 0, repr(exc).encode()
                        record(index, started, status, payload)

                meter.start()
                await asyncio.gather(*(lane_http() for _ in range(lanes)))
                measured = meter.stop()
        seconds, server_cpu, server_busy, client_busy = measured
        unanswered = count - answered
        if unanswered:
            errors += unanswered
            first_error = first_error or f"{unanswered} requests got no answer"
        return Result(
            phase,
            name,
            count,
            seconds,
            latencies,
            errors,
            first_error,
            server_cpu,
            server_busy,
            client_busy,
        )


async def measure(
    driver: Driver,
    phase: str,
    name: str,
    url: str,
    make: MakeRequest,
    requests: int,
    warmup: int,
    repeat: int,
    server_pids: Sequence[int],
) -> Result:
    """Sign every request first, send the warm-up ones, then time ``repeat`` runs; keep the best.

    On a shared machine other processes only ever slow a run down, so the fastest of a few runs
    is the one closest to what the servers can do; the others are printed for the spread.
    """
    signed = [make(i) for i in range(warmup + requests * repeat)]
    if warmup:
        await driver.run(phase, name, url, warmup, signed.__getitem__, server_pids)
    runs: list[Result] = []
    for k in range(repeat):
        batch = signed[warmup + k * requests : warmup + (k + 1) * requests]
        runs.append(await driver.run(phase, name, url, requests, batch.__getitem__, server_pids))
    best = max(runs, key=lambda r: (r.errors == 0, r.rps))
    best.errors = sum(r.errors for r in runs)
    best.first_error = next((r.first_error for r in runs if r.first_error), "")
    best.spread = [r.rps for r in runs]
    spread = "/".join(f"{r.rps:.0f}" for r in runs)
    print(f"  {render_row(best, None)}  runs: {spread}", flush=True)
    return best


# -- set-up through the API -----------------------------------------------------------------


def call(broker: BrokerProcess, params: dict[str, str], creds: Creds, service: str) -> str:
    reply = broker.signed(params, creds, service=service)
    if reply.status != 200:
        raise RuntimeError(f"{params['Action']} failed: {reply.status} {reply.text[:500]}")
    return reply.text


def xml_text(text: str, tag: str) -> str:
    found = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    if found is None:
        raise RuntimeError(f"no <{tag}> in {text[:300]}")
    return found.group(1)


def set_up(broker: BrokerProcess) -> tuple[Creds, str, Creds]:
    """Create the user (long-term key), the role, and one long session; return all three."""
    root = broker.root_creds()
    acct = broker.account_id()
    allow = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["sts:AssumeRole", "iam:List*"], "Resource": "*"}
            ],
        }
    )
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{acct}:user/{USER}"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )

    def iam(action: str, **params: str) -> str:
        return call(broker, {"Action": action, "Version": IAM_VERSION, **params}, root, "iam")

    iam("CreateUser", UserName=USER)
    iam("PutUserPolicy", UserName=USER, PolicyName="p", PolicyDocument=allow)
    key = iam("CreateAccessKey", UserName=USER)
    user = Creds(xml_text(key, "AccessKeyId"), xml_text(key, "SecretAccessKey"))
    role = iam(
        "CreateRole",
        RoleName=ROLE,
        AssumeRolePolicyDocument=trust,
        MaxSessionDuration=str(ROLE_MAX_SESSION_SECONDS),
    )
    role_arn = xml_text(role, "Arn")
    iam("PutRolePolicy", RoleName=ROLE, PolicyName="p", PolicyDocument=allow)
    # One session for the GetCallerIdentity target, long enough for any --sessions fill.
    params = {
        "Action": "AssumeRole",
        "Version": STS_VERSION,
        "RoleArn": role_arn,
        "RoleSessionName": "bench-identity",
        "DurationSeconds": str(ROLE_MAX_SESSION_SECONDS),
    }
    issued = call(broker, params, user, "sts")
    session = Creds(
        xml_text(issued, "AccessKeyId"),
        xml_text(issued, "SecretAccessKey"),
        xml_text(issued, "SessionToken"),
    )
    return user, role_arn, session


def set_up_web_identity(broker: BrokerProcess, issuer: OidcIssuer) -> str:
    """Register ``issuer`` as an OIDC provider and create a role trusting it; return its ARN.

    The trust policy allows ``sts:AssumeRoleWithWebIdentity`` for ``Federated: <provider>``
    when ``<provider_id>:aud`` equals the bench client id.
    """
    root = broker.root_creds()

    def iam(action: str, **params: str) -> str:
        return call(broker, {"Action": action, "Version": IAM_VERSION, **params}, root, "iam")

    provider = iam(
        "CreateOpenIDConnectProvider", Url=issuer.url, **{"ClientIDList.member.1": WEB_CLIENT_ID}
    )
    provider_arn = xml_text(provider, "OpenIDConnectProviderArn")
    trust = trust_policy(
        provider_arn, {"StringEquals": {f"{issuer.provider_id}:aud": WEB_CLIENT_ID}}
    )
    return xml_text(iam("CreateRole", RoleName=WEB_ROLE, AssumeRolePolicyDocument=trust), "Arn")


def web_identity_token(issuer: OidcIssuer) -> str:
    """One RS256 token for the bench client id, valid for ``WEB_TOKEN_SECONDS``."""
    return issuer.token(WEB_SUBJECT, WEB_CLIENT_ID, alg="RS256", lifetime=WEB_TOKEN_SECONDS)


def warm_web_identity(broker: BrokerProcess, make: MakeRequest) -> None:
    """Send one AssumeRoleWithWebIdentity so the broker fetches and caches the issuer's JWKS."""
    req = make(0)
    reply = broker.request("POST", "/", body=req.body, headers=req.headers)
    if reply.status != 200:
        raise RuntimeError(f"AssumeRoleWithWebIdentity failed: {reply.status} {reply.text[:500]}")


def redis_used_memory(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


# -- py-spy ---------------------------------------------------------------------------------


def py_spy_binary() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


ENTRY_FRAMES = (
    "<module> ",
    "_run_code ",
    "_run_module_as_main ",
    "_serve_worker ",
    "run_app ",
    "main ",
    "serve ",
    "Thread._bootstrap ",
    "Thread._bootstrap_inner ",
    "Thread.run ",
    "BaseProcess._bootstrap ",
    "BaseProcess.run ",
    "spawn_main ",
    "_main ",
)
"""Frames every sample passes through (process and thread entry points): no information."""


def top_costs(raw: str, limit: int = 12) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output.

    Samples of an executor thread waiting for work (leaf ``_worker``) are idle time that py-spy
    cannot tell from work; they are left out and counted separately.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f]
        if not frames:
            continue
        if frames[-1].startswith("_worker (") and "thread.py" in frames[-1]:
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "    (no samples)"
    lines = [f"    {total} busy samples ({idle} idle executor-thread samples left out); self time:"]
    lines += [f"    {100 * n / total:6.1f}%  {f}" for f, n in own.most_common(limit)]
    lines.append("    inclusive time (process and thread entry points left out):")
    picked = [(f, n) for f, n in inclusive.most_common() if not f.startswith(ENTRY_FRAMES)]
    lines += [f"    {100 * n / total:6.1f}%  {f}" for f, n in picked[:limit]]
    return "\n".join(lines)


async def profile_target(
    driver: Driver,
    name: str,
    url: str,
    make: MakeRequest,
    broker_pid: int,
    workers: int,
    seconds: int,
    out_dir: Path,
    server_pids: Sequence[int],
) -> str:
    """Run ``py-spy record -f raw`` on the broker while driving ``make`` requests at it."""
    binary = py_spy_binary()
    if binary is None:
        return "    py-spy is not installed"
    out = out_dir / f"pyspy-{re.sub(r'[^a-z]+', '-', name.lower()).strip('-')}-w{workers}.txt"
    cmd = [binary, "record", "-p", str(broker_pid), "-d", str(seconds), "-f", "raw", "-o", str(out)]
    if workers > 1:
        cmd.append("--subprocesses")
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    batch = 0

    def numbered(i: int) -> Prepared:
        return make(batch * PROFILE_BATCH + i)

    while spy.poll() is None:
        # Requests are signed as they go (they must be fresh); the client has time to spare.
        await driver.run("profile", name, url, PROFILE_BATCH, numbered, server_pids)
        batch += 1
    _, err = spy.communicate()
    if spy.returncode != 0 or not out.exists():
        return f"    py-spy failed: {err.decode(errors='replace')[-500:]}"
    return f"    raw profile: {out}\n" + top_costs(out.read_text())


# -- one configuration ----------------------------------------------------------------------


async def run_config(
    args: argparse.Namespace,
    workers: int,
    driver: Driver,
    client_cores: set[int] | None,
    server_cores: set[int] | None,
    tmp: Path,
) -> RunReport:
    """Start the servers for ``workers``, measure, optionally fill sessions and re-measure."""
    report = RunReport(
        workers,
        len(server_cores) if server_cores else len(os.sched_getaffinity(0)),
        server_cores is not None,
    )
    redis: RedisServer | None = None
    env = dict(LIMIT_ENV)
    if args.store == "redis":
        redis = RedisServer()
        env["BROKER_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    env.update(FEDERATION_ENV)
    broker = BrokerProcess(tmp / f"data-w{workers}", store=args.store, env=env, workers=workers)
    hello = hello_server(workers)
    issuer = OidcIssuer(algorithms=("RS256",))
    own = os.sched_getaffinity(0)
    try:
        if server_cores is not None:
            os.sched_setaffinity(0, server_cores)  # children started now inherit the server cores
        try:
            if redis is not None:
                broker.redis_url = redis.start().url
            broker.start(STARTUP_TIMEOUT_SECONDS)
            hello.start()
        finally:
            os.sched_setaffinity(0, client_cores if client_cores is not None else own)
        assert broker.proc is not None
        broker_pid = broker.proc.pid
        redis_pids = children_named(os.getpid(), "redis-server") if redis else []
        broker_side = process_tree(broker_pid) + redis_pids
        if server_cores is not None:
            pin(broker_side + hello.pids, server_cores)
        user, role_arn, session = set_up(broker)
        issuer.start()  # a thread of this process, on the client core(s): one JWKS fetch per worker
        web_role_arn = set_up_web_identity(broker, issuer)
        url = broker.url + "/"
        hello_url = f"http://127.0.0.1:{hello.port}/"
        web_identity = web_identity_request(url, web_role_arn, web_identity_token(issuer))
        warm_web_identity(broker, web_identity)
        targets: list[tuple[str, str, MakeRequest, list[int]]] = [
            ("hello", hello_url, caller_identity_request(hello_url, session), hello.pids),
            ("AssumeRole", url, assume_role_request(url, user, role_arn, "fresh-"), broker_side),
            ("AssumeRoleWithWebIdentity", url, web_identity, broker_side),
            ("GetCallerIdentity (ASIA)", url, caller_identity_request(url, session), broker_side),
        ]
        print(f"workers={workers}: fresh broker", flush=True)
        for name, target_url, make, pids in targets:
            report.results.append(
                await measure(
                    driver,
                    "fresh",
                    name,
                    target_url,
                    make,
                    args.requests,
                    args.warmup,
                    args.repeat,
                    pids,
                )
            )
        if args.py_spy:
            out_dir = Path(args.py_spy_dir or tempfile.mkdtemp(prefix="bench-sts-pyspy-"))
            out_dir.mkdir(parents=True, exist_ok=True)
            for name, target_url, make, pids in targets[1:]:
                print(f"  profiling {name} for {args.py_spy} s ...", flush=True)
                report.profiles[name] = await profile_target(
                    driver, name, target_url, make, broker_pid, workers, args.py_spy, out_dir, pids
                )
        if args.sessions:
            report.sessions = args.sessions
            report.rss_before = rss_bytes(process_tree(broker_pid))
            if redis is not None:
                report.redis_before = redis_used_memory(redis.url)
            print(f"  issuing {args.sessions} sessions ...", flush=True)
            fill = await driver.with_concurrency(args.fill_concurrency).run(
                "fill",
                "AssumeRole (fill)",
                url,
                args.sessions,
                assume_role_request(url, user, role_arn, "fill-"),
                broker_side,
                progress="issued",
            )
            report.fill_seconds, report.fill_errors = fill.seconds, fill.errors
            if fill.errors:
                print(f"  fill errors: {fill.errors}; first: {fill.first_error}", file=sys.stderr)
            report.rss_after = rss_bytes(process_tree(broker_pid))
            if redis is not None:
                report.redis_after = redis_used_memory(redis.url)
            phase = f"after {args.sessions}"
            for name, target_url, make, pids in targets:
                if name == "AssumeRole":
                    make = assume_role_request(url, user, role_arn, "after-")
                elif name == "AssumeRoleWithWebIdentity":  # a long fill may outlive the first
                    make = web_identity_request(url, web_role_arn, web_identity_token(issuer))
                report.results.append(
                    await measure(
                        driver,
                        phase,
                        name,
                        target_url,
                        make,
                        args.requests,
                        args.warmup,
                        args.repeat,
                        pids,
                    )
                )
        report.jwks_fetches = issuer.jwks_hits
    except Exception:
        sys.stderr.write(broker.log()[-4000:])
        raise
    finally:
        issuer.close()
        hello.stop()
        broker.stop()
        if redis is not None:
            redis.close()
    return report


# -- output ---------------------------------------------------------------------------------

HEADER = (
    f"{'phase':<14}{'target':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs hello':>10}"
    f"{'srv proc':>10}{'srv cores':>11}{'client':>8}{'errors':>8}"
)
CPU_LEGEND = (
    "srv proc: CPU of the server processes; srv cores: busy share of the server cores (any "
    "process, kernel included); client: busy share of the client core; 100% = one core"
)


def render_row(r: Result, hello: Result | None) -> str:
    ratio = f"{r.rps / hello.rps:.2f}x" if hello is not None and hello.rps else "-"
    return (
        f"{r.phase:<14}{r.name:<26}{r.rps:>9.0f}{r.percentile(0.5):>9.2f}"
        f"{r.percentile(0.99):>9.2f}{ratio:>10}{r.cpu_percent(r.server_cpu):>9.0f}%"
        f"{r.server_busy:>10.0f}%{r.client_busy:>7.0f}%{r.errors:>8}"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render_report(report: RunReport) -> Iterator[str]:
    yield f"-- workers={report.workers}"
    yield HEADER
    for r in report.results:
        hello = report.get(r.phase, "hello")
        yield render_row(r, hello if r.name != "hello" else None)
    yield CPU_LEGEND
    yield (
        f"AssumeRoleWithWebIdentity: the issuer served {report.jwks_fetches} JWKS fetch(es) in "
        f"all ({report.workers} worker(s), each with its own cache)"
    )
    for r in report.results:
        if report.pinned and r.server_busy - r.cpu_percent(r.server_cpu) > 25:
            yield (
                f"note: {r.phase} {r.name}: the server cores were {r.server_busy:.0f}% busy, the "
                f"servers used {r.cpu_percent(r.server_cpu):.0f}%: other work shared their cores"
            )
        if report.pinned and r.client_busy >= 90 and r.server_busy < 90 * report.server_cores:
            yield (
                f"note: {r.phase} {r.name}: the client core was {r.client_busy:.0f}% busy while "
                "the server cores had time to spare: this row is client-bound"
            )
    hello = report.get("fresh", "hello")
    assume = report.get("fresh", "AssumeRole")
    gci = report.get("fresh", "GetCallerIdentity (ASIA)")
    yield "targets:"
    if hello and assume:
        x = assume.rps / hello.rps
        yield (
            f"  AssumeRole >= {TARGET_ASSUME_VS_HELLO}x hello: {x:.2f}x "
            f"{verdict(x >= TARGET_ASSUME_VS_HELLO)}"
        )
    if hello and gci:
        x = gci.rps / hello.rps
        yield (
            f"  GetCallerIdentity (ASIA) >= {TARGET_GCI_VS_HELLO}x hello: {x:.2f}x "
            f"{verdict(x >= TARGET_GCI_VS_HELLO)}"
        )
    if report.sessions:
        n = report.sessions
        rate = n / report.fill_seconds if report.fill_seconds else 0.0
        yield (
            f"  issued {n} sessions in {report.fill_seconds:.1f} s ({rate:.0f}/s, "
            f"{report.fill_errors} errors)"
        )
        phase = f"after {n}"
        for name in ("AssumeRole", "AssumeRoleWithWebIdentity", "GetCallerIdentity (ASIA)"):
            fresh, after = report.get("fresh", name), report.get(phase, name)
            if fresh and after and fresh.rps:
                change = after.rps / fresh.rps - 1
                ok = abs(change) <= TARGET_AFTER_SESSIONS or change > 0
                yield (
                    f"  {name} after {n} sessions within 10% of fresh: {after.rps:.0f} vs "
                    f"{fresh.rps:.0f} req/s ({100 * change:+.1f}%) {verdict(ok)}"
                )
        growth = report.rss_after - report.rss_before
        per_100k = growth * 100_000 / n
        yield (
            f"  broker RSS {report.rss_before / 2**20:.1f} MiB -> {report.rss_after / 2**20:.1f} "
            f"MiB: {per_100k / 2**20:+.1f} MiB per 100,000 sessions (<= 100 MB) "
            f"{verdict(per_100k <= TARGET_RSS_BYTES_PER_100K)}"
        )
        if report.redis_before is not None and report.redis_after is not None:
            per = (report.redis_after - report.redis_before) / n
            yield (
                f"  redis used_memory {report.redis_before / 2**20:.1f} MiB -> "
                f"{report.redis_after / 2**20:.1f} MiB: {per:.0f} bytes per session (<= 1 KB) "
                f"{verdict(per <= TARGET_REDIS_BYTES_PER_SESSION)}"
            )
    for name, text in report.profiles.items():
        yield f"py-spy, {name} (workers={report.workers}):"
        yield text


def render_scaling(reports: Sequence[RunReport]) -> Iterator[str]:
    one = next((r for r in reports if r.workers == 1), None)
    two = next((r for r in reports if r.workers == 2), None)
    if one is None or two is None:
        return
    yield "-- scaling, 2 workers vs 1"
    for name in ("hello", "AssumeRole", "AssumeRoleWithWebIdentity", "GetCallerIdentity (ASIA)"):
        a, b = one.get("fresh", name), two.get("fresh", name)
        if a and b and a.rps:
            x = b.rps / a.rps
            mark = f" {verdict(x >= TARGET_TWO_WORKERS)} (>= 1.4x)" if name != "hello" else ""
            yield f"  {name}: {a.rps:.0f} -> {b.rps:.0f} req/s, {x:.2f}x{mark}"


def _install_loop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags (``--hello-server`` is internal: the child process mode)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--workers", default="1", help="broker worker processes; a list runs each")
    parser.add_argument("--requests", type=int, default=20000, help="timed requests per target")
    parser.add_argument("--warmup", type=int, default=2000, help="untimed requests per target")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per target (best kept)")
    parser.add_argument("--concurrency", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw")
    parser.add_argument(
        "--sessions", type=int, default=0, help="sessions to issue, then measure again"
    )
    parser.add_argument(
        "--fill-concurrency", type=int, default=64, help="connections while issuing --sessions"
    )
    parser.add_argument("--client-cores", help="CPU list for the client (default: first core)")
    parser.add_argument("--server-cores", help="CPU list for the servers (default: the others)")
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to the kernel")
    parser.add_argument(
        "--py-spy",
        type=int,
        default=0,
        metavar="SECONDS",
        help="profile each broker target for SECONDS with py-spy",
    )
    parser.add_argument("--py-spy-dir", help="where the raw py-spy profiles go")
    parser.add_argument("--hello-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.worker_counts = [int(w) for w in str(args.workers).split(",")]
    except ValueError:
        parser.error("--workers must be a number or a comma-separated list")
    checks = [
        (1 <= args.requests <= MAX_REQUESTS, f"--requests must be 1..{MAX_REQUESTS}"),
        (0 <= args.warmup <= MAX_REQUESTS, f"--warmup must be 0..{MAX_REQUESTS}"),
        (1 <= args.repeat <= 20, "--repeat must be 1..20"),
        (args.requests * args.repeat <= MAX_REQUESTS, f"--requests x --repeat > {MAX_REQUESTS}"),
        (1 <= args.concurrency <= MAX_CONCURRENCY, f"--concurrency must be 1..{MAX_CONCURRENCY}"),
        (1 <= args.fill_concurrency <= MAX_CONCURRENCY, "--fill-concurrency out of range"),
        (0 <= args.sessions <= MAX_SESSIONS, f"--sessions must be 0..{MAX_SESSIONS}"),
        (all(1 <= w <= MAX_WORKERS for w in args.worker_counts), "--workers out of range"),
        (0 <= args.py_spy <= 600, "--py-spy must be 0..600 seconds"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    return args


def placement(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None, str]:
    """(client cores, server cores, description) from the flags and the cores available."""
    cores = sorted(os.sched_getaffinity(0))
    if args.no_pin:
        return None, None, "not pinned"
    client = parse_cores(args.client_cores) or {cores[0]}
    server = parse_cores(args.server_cores) or (set(cores) - client)
    if not server:
        return None, None, f"not pinned (only core {cores[0]} is available)"
    where = f"client on core(s) {sorted(client)}, servers on core(s) {sorted(server)}"
    return client, server, where


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every configuration and print the tables; exit 1 if any request failed."""
    args = parse_args(argv)
    if args.hello_server is not None:
        run_hello_server(args.hello_server)
        return 0
    _install_loop()
    client_cores, server_cores, where = placement(args)
    print(
        f"broker: {args.store} store; {args.requests} timed requests per target after "
        f"{args.warmup} warm-up; client: {args.client}, {args.concurrency} keep-alive "
        f"connections; {where}; signing before timing",
        flush=True,
    )
    if server_cores is not None and max(args.worker_counts) > len(server_cores):
        print(
            f"warning: {max(args.worker_counts)} workers share {len(server_cores)} server "
            "core(s): worker scaling cannot show here",
            flush=True,
        )
    signal.signal(signal.SIGTERM, _terminate)  # stop the servers on SIGTERM too
    idle_before = core_times()
    time.sleep(1.0)
    background = busy_percent(idle_before, core_times(), None)
    if background > 10:
        print(
            f"warning: the machine was {background:.0f}% busy (all cores) before the run "
            "started: other processes skew the numbers",
            flush=True,
        )
    driver = Driver(args.client, args.concurrency, client_cores, server_cores)
    reports: list[RunReport] = []
    with tempfile.TemporaryDirectory(prefix="broker-bench-sts-") as tmp:
        for workers in args.worker_counts:
            reports.append(
                asyncio.run(
                    run_config(args, workers, driver, client_cores, server_cores, Path(tmp))
                )
            )
    print()
    for report in reports:
        for line in render_report(report):
            print(line)
    for line in render_scaling(reports):
        print(line)
    failed = [r for rep in reports for r in rep.results if r.errors]
    for r in failed:
        print(f"{r.phase} {r.name}: {r.errors} failed; first: {r.first_error}", file=sys.stderr)
    return 1 if failed or any(rep.fill_errors for rep in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
