"""Benchmark (not a test): API throughput and latency of a real broker against a bare server.

Starts ``broker serve`` (SQLite store, a fresh data directory) and, in a separate process, a bare
aiohttp server answering a fixed small XML body, both on loopback ports. Then it drives a bounded
number of requests at each target with a bounded concurrency from one aiohttp client:

* ``bare``: plain form POSTs to the bare server (the floor: HTTP + aiohttp, no broker work);
* ``sts GetCallerIdentity``: SigV4-signed, root access key;
* ``iam GetUser``: SigV4-signed, root access key, for a user the run creates first.

Every request is signed by botocore's ``SigV4Auth`` before its target's timed phase starts (one
fresh signature per request), so signing cost is in neither the latency nor the throughput figures.
Prints requests/s, p50 and p99 latency in ms, and the broker/bare ratios; exits non-zero if any
request fails. Run it from the repository root::

    .venv/bin/python bench/bench_api.py --requests 2000 --concurrency 16 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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

MAX_REQUESTS = 50_000
MAX_CONCURRENCY = 1_024
MAX_WORKERS = 64
BENCH_USER = "bench-user"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
BARE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:root</Arn>"
    b"<UserId>123456789012</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
    b"<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId>"
    b"</ResponseMetadata></GetCallerIdentityResponse>"
)
STARTUP_TIMEOUT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class PreparedRequest:
    """One POST, ready to send: URL, headers (signature included) and body."""

    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Result:
    """What one target measured."""

    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    first_error: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in ms."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]


# -- the bare server (its own process) ---------------------------------------------------


async def _bare_handler(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=BARE_BODY, content_type="text/xml")


def run_bare_server(port: int) -> None:
    """Serve ``BARE_BODY`` on 127.0.0.1:``port`` until SIGTERM."""
    _install_loop()
    app = web.Application()
    app.router.add_post("/", _bare_handler)
    app.router.add_get("/healthz", _bare_handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def bare_server() -> ChildServers:
    """The bare aiohttp server as a subprocess of this script."""
    port = free_port()
    return ChildServers(str(Path(__file__).resolve()), ["--bare-server", str(port)], port)


# -- request preparation -----------------------------------------------------------------


def sign(url: str, params: dict[str, str], creds: Creds, service: str) -> PreparedRequest:
    """A form POST signed with botocore's SigV4 signer, as an SDK would send it."""
    body = urllib.parse.urlencode(params).encode()
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": FORM_CONTENT_TYPE})
    signer = botocore.auth.SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        service,
        REGION,
    )
    signer.add_auth(req)
    return PreparedRequest(url, {k: str(v) for k, v in req.headers.items()}, body)


def unsigned(url: str, params: dict[str, str]) -> PreparedRequest:
    """A plain form POST."""
    body = urllib.parse.urlencode(params).encode()
    return PreparedRequest(url, {"Content-Type": FORM_CONTENT_TYPE}, body)


def create_bench_user(broker: BrokerProcess, creds: Creds) -> None:
    """Create the IAM user that GetUser reads (once per run, before any timing)."""
    reply = broker.signed(
        {"Action": "CreateUser", "Version": "2010-05-08", "UserName": BENCH_USER}, creds
    )
    if reply.status != 200:
        raise RuntimeError(f"CreateUser failed: {reply.status} {reply.text}")


# -- the driver ---------------------------------------------------------------------------


async def drive(
    session: aiohttp.ClientSession, name: str, requests: Sequence[PreparedRequest], concurrency: int
) -> Result:
    """Send ``requests`` with at most ``concurrency`` in flight; time each one."""
    latencies: list[float] = [0.0] * len(requests)
    errors = 0
    first_error = ""
    position = 0

    async def worker() -> None:
        nonlocal errors, first_error, position
        while position < len(requests):
            index = position
            position += 1
            req = requests[index]
            started = time.perf_counter()
            try:
                async with session.post(req.url, data=req.body, headers=req.headers) as resp:
                    payload = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, payload = 0, repr(exc).encode()
            latencies[index] = (time.perf_counter() - started) * 1000.0
            if status != 200:
                errors += 1
                if not first_error:
                    first_error = f"HTTP {status}: {payload[:300].decode('utf-8', 'replace')}"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    seconds = time.perf_counter() - started
    return Result(name, len(requests), seconds, latencies, errors, first_error)


async def run_targets(
    targets: list[tuple[str, Callable[[], PreparedRequest]]],
    requests: int,
    concurrency: int,
    warmup: int,
) -> list[Result]:
    """Per target, one at a time: prepare (and sign) every request, warm up, then measure.

    Signing happens right before each target's run, so the signatures stay well inside the
    broker's clock-skew window however long an earlier target took.
    """
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=concurrency)
    results: list[Result] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for name, make in targets:
            prepared = [make() for _ in range(warmup + requests)]
            if warmup:
                await drive(session, name, prepared[:warmup], concurrency)
            results.append(await drive(session, name, prepared[warmup:], concurrency))
    return results


def render(results: list[Result], bare: Result) -> str:
    """The results table."""
    lines = [
        f"{'target':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'req/s vs bare':>15}{'p50 vs bare':>13}{'errors':>8}"
    ]
    for r in results:
        rps_ratio = r.rps / bare.rps if bare.rps else 0.0
        p50_ratio = r.percentile(0.50) / bare.percentile(0.50) if bare.percentile(0.50) else 0.0
        lines.append(
            f"{r.name:<24}{r.rps:>10.0f}{r.percentile(0.50):>9.2f}{r.percentile(0.99):>9.2f}"
            f"{rps_ratio:>14.2f}x{p50_ratio:>12.2f}x{r.errors:>8}"
        )
    return "\n".join(lines)


def _install_loop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags (``--bare-server`` is internal: the child process mode)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per target")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--workers", type=int, default=1, help="broker worker processes")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests per target")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    checks = [
        (1 <= args.requests <= MAX_REQUESTS, f"--requests must be 1..{MAX_REQUESTS}"),
        (1 <= args.concurrency <= MAX_CONCURRENCY, f"--concurrency must be 1..{MAX_CONCURRENCY}"),
        (1 <= args.workers <= MAX_WORKERS, f"--workers must be 1..{MAX_WORKERS}"),
        (0 <= args.warmup <= MAX_REQUESTS, f"--warmup must be 0..{MAX_REQUESTS}"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; non-zero exit if any request failed."""
    args = parse_args(argv)
    if args.bare_server is not None:
        run_bare_server(args.bare_server)
        return 0
    _install_loop()
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", workers=args.workers)
        bare = bare_server()
        try:
            broker.start(STARTUP_TIMEOUT_SECONDS)
            bare.start()
            root = broker.root_creds()
            create_bench_user(broker, root)
            url = broker.url + "/"
            sts_params = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
            iam_params = {"Action": "GetUser", "Version": "2010-05-08", "UserName": BENCH_USER}
            targets: list[tuple[str, Callable[[], PreparedRequest]]] = [
                ("bare aiohttp", lambda: unsigned(bare.url, sts_params)),
                ("sts GetCallerIdentity", lambda: sign(url, sts_params, root, "sts")),
                ("iam GetUser", lambda: sign(url, iam_params, root, "iam")),
            ]
            results = asyncio.run(
                run_targets(targets, args.requests, args.concurrency, args.warmup)
            )
        except Exception:
            sys.stderr.write(broker.log()[-4000:])
            raise
        finally:
            bare.stop()
            broker.stop()
    print(
        f"broker: sqlite store, {args.workers} worker(s); {args.requests} timed requests per "
        f"target after {args.warmup} warm-up, concurrency {args.concurrency}; SigV4 signing "
        "done before timing"
    )
    print(render(results, results[0]))
    failed = [r for r in results if r.errors]
    for r in failed:
        print(f"{r.name}: {r.errors} failed requests; first: {r.first_error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
