"""Benchmark (not a test): instance-metadata credential fetches against a bare aiohttp server.

Starts ``broker serve`` (SQLite store, a fresh data directory) with its IMDS listener enabled
through a generated ``config.toml``, creates a role trusting ``ec2.amazonaws.com`` and an
instance profile for the loopback instance, fetches one IMDSv2 token (``PUT
/latest/api/token``, once) and the role's credentials once (so the session is minted before
timing). A bare aiohttp server in a separate process answers every GET with a fixed body of
the same size as the broker's credentials document: the floor that HTTP, aiohttp and the
client alone cost.

Then, per target, from one aiohttp client with a bounded number of requests in flight:

* ``bare aiohttp``: ``GET /latest/meta-data/iam/security-credentials/ROLE`` to the bare server;
* ``imds credentials``: the same GET to the broker's IMDS listener with the token header.

Prints requests/s, p50 and p99 latency in ms, the ratios to the bare server, and whether the
targets hold (throughput at least 0.7x the bare server's, p99 under 5x the target's own p50).
Exits non-zero if any request fails. Run it from the repository root::

    .venv/bin/python bench/bench_imds.py --requests 5000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.children import ChildServers  # noqa: E402
from tests.support.broker_proc import BrokerProcess, free_port  # noqa: E402

MAX_REQUESTS = 200_000
MAX_CONCURRENCY = 1_024
STARTUP_TIMEOUT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 30.0
ACCOUNT = "111122223333"
INSTANCE_ID = "i-0123456789abcdef0"
ROLE = "bench-role"
PROFILE = "bench-profile"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
CREDENTIALS_PATH = f"/latest/meta-data/iam/security-credentials/{ROLE}"
TARGET_RATIO = 0.7
TARGET_TAIL = 5.0
TRUST_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


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


def run_bare_server(port: int, size: int) -> None:
    """Answer every GET on 127.0.0.1:``port`` with ``size`` fixed bytes until SIGTERM."""
    _install_loop()
    body = (b'{"Code":"Success"' + b" " * max(0, size - 18) + b"}")[: max(size, 18)]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def bare_server(size: int) -> ChildServers:
    """The bare aiohttp server (answering ``size`` bytes) as a subprocess of this script."""
    port = free_port()
    args = ["--bare-server", str(port), "--bare-size", str(size)]
    return ChildServers(str(Path(__file__).resolve()), args, port)


# -- set-up ---------------------------------------------------------------------------------


def write_config(path: Path, imds_port: int) -> None:
    path.write_text(
        f'[bootstrap]\naccount_id = "{ACCOUNT}"\n\n'
        f'[imds]\nenabled = true\nhost = "127.0.0.1"\nport = {imds_port}\n\n'
        "[[imds.instances]]\n"
        'source = "127.0.0.1/32"\n'
        f'instance_id = "{INSTANCE_ID}"\n'
        f'instance_profile = "arn:aws:iam::{ACCOUNT}:instance-profile/{PROFILE}"\n'
    )


def create_role(broker: BrokerProcess) -> None:
    """The role and instance profile the listener resolves (once, before any timing)."""
    creds = broker.root_creds()
    calls = [
        {"Action": "CreateRole", "RoleName": ROLE, "AssumeRolePolicyDocument": TRUST_EC2},
        {"Action": "CreateInstanceProfile", "InstanceProfileName": PROFILE},
        {"Action": "AddRoleToInstanceProfile", "InstanceProfileName": PROFILE, "RoleName": ROLE},
    ]
    for params in calls:
        reply = broker.signed({**params, "Version": "2010-05-08"}, creds)
        if reply.status != 200:
            raise RuntimeError(f"{params['Action']} failed: {reply.status} {reply.text}")


async def first_fetch(imds_port: int) -> tuple[str, int]:
    """The IMDSv2 token (PUT once) and the size of the credentials document (minted here)."""
    base = f"http://127.0.0.1:{imds_port}"
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{base}/latest/api/token", headers={TTL_HEADER: "21600"}) as r:
            if r.status != 200:
                raise RuntimeError(f"token PUT failed: {r.status}")
            token = await r.text()
        async with session.get(base + CREDENTIALS_PATH, headers={TOKEN_HEADER: token}) as r:
            body = await r.read()
            if r.status != 200 or b'"Success"' not in body:
                raise RuntimeError(f"credentials GET failed: {r.status} {body[:200]!r}")
    return token, len(body)


# -- the driver ---------------------------------------------------------------------------------


async def drive(
    session: aiohttp.ClientSession,
    name: str,
    url: str,
    headers: dict[str, str],
    count: int,
    concurrency: int,
) -> Result:
    """Send ``count`` GETs with at most ``concurrency`` in flight; time each one."""
    latencies: list[float] = [0.0] * count
    errors = 0
    first_error = ""
    position = 0

    async def worker() -> None:
        nonlocal errors, first_error, position
        while position < count:
            index = position
            position += 1
            started = time.perf_counter()
            try:
                async with session.get(url, headers=headers) as resp:
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
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    seconds = time.perf_counter() - started
    return Result(name, count, seconds, latencies, errors, first_error)


async def run_targets(
    targets: list[tuple[str, str, dict[str, str]]], requests: int, concurrency: int, warmup: int
) -> list[Result]:
    """Per target, one at a time: warm up, then measure."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=concurrency)
    results: list[Result] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for name, url, headers in targets:
            if warmup:
                await drive(session, name, url, headers, warmup, concurrency)
            results.append(await drive(session, name, url, headers, requests, concurrency))
    return results


def render(results: list[Result], bare: Result) -> str:
    """The results table and the target verdicts."""
    lines = [
        f"{'target':<20}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'req/s vs bare':>15}{'p99/p50':>9}{'errors':>8}"
    ]
    for r in results:
        ratio = r.rps / bare.rps if bare.rps else 0.0
        tail = r.percentile(0.99) / r.percentile(0.50) if r.percentile(0.50) else 0.0
        lines.append(
            f"{r.name:<20}{r.rps:>10.0f}{r.percentile(0.50):>9.2f}{r.percentile(0.99):>9.2f}"
            f"{ratio:>14.2f}x{tail:>8.2f}x{r.errors:>8}"
        )
    imds = results[-1]
    ratio = imds.rps / bare.rps if bare.rps else 0.0
    tail = imds.percentile(0.99) / imds.percentile(0.50) if imds.percentile(0.50) else 0.0
    lines.append(
        f"targets: req/s >= {TARGET_RATIO}x bare: {'met' if ratio >= TARGET_RATIO else 'MISSED'}"
        f" ({ratio:.2f}x); p99 < {TARGET_TAIL:.0f}x p50: "
        f"{'met' if tail < TARGET_TAIL else 'MISSED'} ({tail:.2f}x)"
    )
    return "\n".join(lines)


def _install_loop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags (``--bare-server``/``--bare-size`` are the child process mode)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per target")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests per target")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-size", type=int, default=1024, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    checks = [
        (1 <= args.requests <= MAX_REQUESTS, f"--requests must be 1..{MAX_REQUESTS}"),
        (1 <= args.concurrency <= MAX_CONCURRENCY, f"--concurrency must be 1..{MAX_CONCURRENCY}"),
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
        run_bare_server(args.bare_server, args.bare_size)
        return 0
    _install_loop()
    with tempfile.TemporaryDirectory(prefix="broker-bench-imds-") as tmp:
        imds_port = free_port()
        config = Path(tmp) / "config.toml"
        write_config(config, imds_port)
        broker = BrokerProcess(Path(tmp) / "data", extra_args=("--config", str(config)))
        bare: ChildServers | None = None
        try:
            broker.start(STARTUP_TIMEOUT_SECONDS)
            create_role(broker)
            token, size = asyncio.run(first_fetch(imds_port))
            bare = bare_server(size).start()
            headers = {TOKEN_HEADER: token}
            targets = [
                ("bare aiohttp", f"http://127.0.0.1:{bare.port}{CREDENTIALS_PATH}", headers),
                ("imds credentials", f"http://127.0.0.1:{imds_port}{CREDENTIALS_PATH}", headers),
            ]
            results = asyncio.run(
                run_targets(targets, args.requests, args.concurrency, args.warmup)
            )
        except Exception:
            sys.stderr.write(broker.log()[-4000:])
            raise
        finally:
            if bare is not None:
                bare.stop()
            broker.stop()
    print(
        f"broker: sqlite store, IMDS listener; token PUT once, then {args.requests} timed GETs "
        f"of the role's credentials per target after {args.warmup} warm-up, concurrency "
        f"{args.concurrency}; response body {size} bytes for both"
    )
    print(render(results, results[0]))
    failed = [r for r in results if r.errors]
    for r in failed:
        print(f"{r.name}: {r.errors} failed requests; first: {r.first_error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
