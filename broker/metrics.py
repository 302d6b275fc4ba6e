"""Metrics: the node's Prometheus counters and histograms, served at ``GET /metrics``.

Everything here goes through ``prometheus_client``; the rest of the broker calls one-line
hooks:

* ``broker.api.server`` calls :func:`observe_request` once per query-protocol request (a
  counter and a histogram, through label children looked up once and kept in a dict) and
  :func:`store_error` where a ``StoreError`` reaches the pipeline. Successful ``sts``
  issuing actions count as issued credentials in the same call.
* The delivery service calls :func:`credentials_issued` for IMDS and container credentials,
  the session service :func:`session_revoked`.
* Caches count lookups and misses in plain integers (:class:`CacheCounts`, a few nanoseconds
  on the request path); :func:`sync` turns them into ``broker_cache_hits_total`` and
  ``broker_cache_misses_total`` before each scrape and, with several workers, every
  ``[metrics] flush_seconds`` in every worker.

Several workers (``broker serve --workers N``): the parent gives every worker one empty
directory in the data directory (:func:`prepare_workers`, ``PROMETHEUS_MULTIPROC_DIR``) and
``prometheus_client``'s multiprocess mode writes each worker's values to its own files there; a
scrape, whichever worker answers it, reads and sums them all. The library's process collector
reads only the process it runs in, so each worker also publishes its CPU time, memory and
file descriptors into that directory (summed for the node; the start time is the earliest).

``/metrics`` is not signed, like ``/healthz``: it reveals request volumes, error codes and
action names, never secrets or principals. Keep the API listener's ``/metrics`` away from
the public (a reverse proxy that does not forward it, or a firewall).

This module imports nothing from ``broker`` but the configuration, and no I/O stack at import
time (``aiohttp`` is imported by :func:`install` only), so services may import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
    values,
)

from broker.config import BrokerConfig, MetricsConfig

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The variable through which ``prometheus_client`` finds the multiprocess directory."""
MULTIPROCESS_DIR: Final = "metrics"
"""The multiprocess directory's name inside the data directory."""
METRICS_PATH: Final = "/metrics"
OK: Final = "ok"
"""The ``outcome`` label of a request answered without an error."""
UNKNOWN: Final = "unknown"
"""The ``service``/``action``/``operation`` label of a request whose action was not routed."""
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the request latency histogram: 0.5 ms to 10 s."""
CREDENTIAL_CHANNELS: Final[Mapping[str, str]] = {
    "AssumeRole": "AssumeRole",
    "GetSessionToken": "GetSessionToken",
    "GetFederationToken": "GetFederationToken",
    "AssumeRoleWithWebIdentity": "web_identity",
}
"""STS actions that issue credentials, and the ``channel`` label each counts under."""

now = time.perf_counter
"""The clock of request latencies (call it when a request starts)."""

# -- the metrics -------------------------------------------------------------------------------

REQUESTS = Counter(
    "broker_requests",
    "API requests by service, action and outcome (ok or the AWS error code).",
    ("service", "action", "outcome"),
)
LATENCY = Histogram(
    "broker_request_duration_seconds",
    "Time from the start of an API request's handling to its response.",
    ("service", "action"),
    buckets=LATENCY_BUCKETS,
)
ISSUED = Counter(
    "broker_credentials_issued",
    "Temporary credentials issued, by channel (STS action name, imds, container, web_identity).",
    ("channel",),
)
REVOCATIONS = Counter(
    "broker_revocations",
    "Revocations: one session (scope=session) or a role's older sessions (scope=role).",
    ("scope",),
)
STORE_ERRORS = Counter(
    "broker_store_errors",
    "Store failures that reached the API pipeline, by backend and API action.",
    ("backend", "operation"),
)
CACHE_HITS = Counter(
    "broker_cache_hits", "Lookups answered by a node-local cache, by cache.", ("cache",)
)
CACHE_MISSES = Counter(
    "broker_cache_misses", "Lookups a node-local cache could not answer, by cache.", ("cache",)
)
WORKERS = Gauge(
    "broker_workers",
    "Worker processes whose metrics this scrape includes.",
    multiprocess_mode="livesum",
)

# Published by each worker in multiprocess mode only (the library's ProcessCollector covers a
# single process); not registered, so a single-process registry never sees them twice.
_PROC_CPU = Counter(
    "process_cpu_seconds", "User and system CPU time of the node's workers.", registry=None
)
_PROC_GAUGES: Final[Mapping[str, Gauge]] = {
    "process_resident_memory_bytes": Gauge(
        "process_resident_memory_bytes",
        "Resident memory of the node's workers, summed.",
        registry=None,
        multiprocess_mode="livesum",
    ),
    "process_virtual_memory_bytes": Gauge(
        "process_virtual_memory_bytes",
        "Virtual memory of the node's workers, summed.",
        registry=None,
        multiprocess_mode="livesum",
    ),
    "process_open_fds": Gauge(
        "process_open_fds",
        "Open file descriptors of the node's workers, summed.",
        registry=None,
        multiprocess_mode="livesum",
    ),
    "process_max_fds": Gauge(
        "process_max_fds",
        "The largest open file descriptor limit among the node's workers.",
        registry=None,
        multiprocess_mode="livemax",
    ),
    "process_start_time_seconds": Gauge(
        "process_start_time_seconds",
        "Start time of the node's oldest worker, in seconds since the epoch.",
        registry=None,
        multiprocess_mode="livemin",
    ),
}


# -- caches ------------------------------------------------------------------------------------


class CacheCounts:
    """Lookups and misses of one node-local cache, as plain integers.

    The cache adds 1 to ``lookups`` on every lookup and to ``misses`` when it has to go to
    the store (or the network); hits are the difference. :func:`sync` publishes them.
    """

    __slots__ = ("name", "lookups", "misses", "_hits_out", "_misses_out")

    def __init__(self, name: str) -> None:
        self.name = name
        self.lookups = 0
        self.misses = 0
        self._hits_out = 0
        self._misses_out = 0

    def publish(self) -> None:
        """Add what was counted since the last call to the Prometheus counters."""
        misses = self.misses
        hits = self.lookups - misses
        if hits > self._hits_out:
            CACHE_HITS.labels(self.name).inc(hits - self._hits_out)
            self._hits_out = hits
        if misses > self._misses_out:
            CACHE_MISSES.labels(self.name).inc(misses - self._misses_out)
            self._misses_out = misses


ACCESS_KEY_CACHE = CacheCounts("access_keys")
"""``Authenticator``: long-term access key id -> owner and secret."""
POLICY_SET_CACHE = CacheCounts("principal_policies")
"""``Authorizer.policies_for``: a principal's compiled identity policies and boundary."""
COMPILED_POLICY_CACHE = CacheCounts("compiled_policies")
"""``Authorizer.compiled`` / ``compiled_session``: policy text -> compiled policy."""
RECORD_CACHE = CacheCounts("records")
"""``RecordCache``: single-record reads valid for one account generation."""
JWKS_CACHE = CacheCounts("jwks")
"""``JwksCache``: OIDC providers' keys (a miss is a fetch)."""
CACHES: Final = (
    ACCESS_KEY_CACHE,
    POLICY_SET_CACHE,
    COMPILED_POLICY_CACHE,
    RECORD_CACHE,
    JWKS_CACHE,
)


# -- hooks -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    enabled: bool = True
    cpu_out: float = 0.0
    process: ProcessCollector | None = None


_STATE = _State()
_CHILDREN: dict[tuple[str, str, str], tuple[Counter, Histogram, Counter | None]] = {}
"""Label children per (service, action, outcome): bounded by the registered actions."""


def _children(service: str, action: str, outcome: str) -> tuple[Counter, Histogram, Counter | None]:
    svc = service or UNKNOWN
    act = action if service else UNKNOWN
    channel = CREDENTIAL_CHANNELS.get(act) if service == "sts" and outcome == OK else None
    found = (
        REQUESTS.labels(svc, act, outcome),
        LATENCY.labels(svc, act),
        ISSUED.labels(channel) if channel is not None else None,
    )
    _CHILDREN[(service, action if service else "", outcome)] = found
    return found


def observe_request(
    service: str, action: str, failure: tuple[str, str] | None, started: float
) -> None:
    """Count one API request and its latency (``started`` from :data:`now`).

    ``service`` is empty when the request was not routed to an action (missing or unknown
    ``Action``): it is then counted under the fixed label ``unknown``, so label values stay
    the registered actions. ``failure`` is ``(error code, message)`` or ``None`` for success.
    """
    if not _STATE.enabled:
        return
    outcome = OK if failure is None else failure[0]
    found = _CHILDREN.get((service, action if service else "", outcome))
    if found is None:
        found = _children(service, action, outcome)
    found[0].inc()
    found[1].observe(now() - started)
    if found[2] is not None:
        found[2].inc()


def credentials_issued(channel: str) -> None:
    """Count credentials issued outside the STS API (``imds``, ``container``, ``signin``)."""
    if _STATE.enabled:
        ISSUED.labels(channel).inc()


def session_revoked(scope: str) -> None:
    """Count a revocation: ``session`` (one session) or ``role`` (a role's older sessions)."""
    if _STATE.enabled:
        REVOCATIONS.labels(scope).inc()


def store_error(backend: str, service: str, action: str) -> None:
    """Count a store failure during the API request for ``action`` (routed when ``service``)."""
    if _STATE.enabled:
        STORE_ERRORS.labels(backend, action if service and action else UNKNOWN).inc()


# -- exposition --------------------------------------------------------------------------------


def multiprocess_mode() -> bool:
    """Whether this process writes its values to the shared multiprocess directory."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def sync() -> None:
    """Publish the cache counts (and, with several workers, this worker's process metrics)."""
    for cache in CACHES:
        cache.publish()
    if multiprocess_mode():
        _publish_process()


def _publish_process() -> None:
    if _STATE.process is None:
        _STATE.process = ProcessCollector(registry=None)
    for family in _STATE.process.collect():
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                if sample.value > _STATE.cpu_out:
                    _PROC_CPU.inc(sample.value - _STATE.cpu_out)
                    _STATE.cpu_out = sample.value
            elif sample.name in _PROC_GAUGES:
                _PROC_GAUGES[sample.name].set(sample.value)


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads: this process's, or every worker's files in multiprocess mode."""
    if not multiprocess_mode():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    PlatformCollector(registry=registry)
    return registry


def prepare_workers(cfg: BrokerConfig, environ: MutableMapping[str, str] = os.environ) -> None:
    """Before starting several workers: empty ``<data dir>/metrics`` and point them at it.

    Each worker inherits ``PROMETHEUS_MULTIPROC_DIR`` and so starts in multiprocess mode;
    values of an earlier run are removed, so counters start at zero with the node.
    """
    if not cfg.metrics.enabled:
        return
    path = (cfg.data_dir / MULTIPROCESS_DIR).resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)  # request counts by action are nobody else's business
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    environ[MULTIPROC_ENV] = str(path)


def install(app: web.Application, cfg: MetricsConfig) -> None:
    """Serve ``GET /metrics`` on ``app`` (unless disabled) and keep this worker's values fresh."""
    from prometheus_client.aiohttp import make_aiohttp_handler

    _STATE.enabled = cfg.enabled
    if not cfg.enabled:
        return
    inner = make_aiohttp_handler(scrape_registry())

    async def metrics_handler(request: web.Request) -> web.StreamResponse:
        sync()
        return await inner(request)

    async def publisher(_: web.Application) -> AsyncIterator[None]:
        WORKERS.set(1)
        sync()
        task = asyncio.create_task(_every(cfg.flush_seconds)) if multiprocess_mode() else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sync()

    app.router.add_get(METRICS_PATH, metrics_handler)
    app.cleanup_ctx.append(publisher)


async def _every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            sync()
        except Exception:
            log.error("metrics not published", exc_info=True)
