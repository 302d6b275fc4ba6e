"""Wiring: configuration -> store -> keyring -> services -> listeners.

This is the only module (with the CLI) that picks concrete store backends and reads key
files. ``serve`` bootstraps an empty store once, then runs one or more worker processes
that share the API port (``SO_REUSEPORT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from broker import metrics
from broker.api.container import ContainerDeps, MappingTable, make_container_app
from broker.api.imds import ImdsDeps, InstanceTable, make_imds_app
from broker.api.server import ApiDeps, make_api_app
from broker.audit import AuditSink, default_path
from broker.clock import Clock, SystemClock
from broker.config import BrokerConfig, ConfigError, load_config
from broker.core.keyring import Keyring, generate_master_key, parse_master_key
from broker.errors import BrokerError, KeyringMismatchError
from broker.idp import JwksCache
from broker.service.access_tracking import AccessTracker
from broker.service.accounts import AccountService, BootstrapResult
from broker.service.authz import Authenticator, Authorizer
from broker.service.cache import Generations
from broker.service.delivery import (
    DeliveryService,
    DeliverySettings,
    delivery_problems,
    parse_instances,
    parse_mappings,
)
from broker.service.federation import FederationService
from broker.service.iam import IamService
from broker.service.identity_tokens import IdentityTokenService
from broker.service.keys import KeyService
from broker.service.mfa import MfaService
from broker.service.oidc import OidcProviderService
from broker.service.rootguard import warn_recent_root_key_use
from broker.service.sessions import SessionService
from broker.service.sts import StsService
from broker.service.tracking import KeyUsageTracker
from broker.store.base import Store, StoreError

log = logging.getLogger("broker")

MASTER_KEY_FILE = "master.key"
ROOT_CREDENTIALS_FILE = "root-credentials.json"
SQLITE_FILE = "broker.db"
SHUTDOWN_TIMEOUT_SECONDS = 10.0
SWEEP_SECONDS = 60.0
"""How often the SQLite store deletes expired records (sessions, denylist entries)."""
PUBSUB_POLL_SECONDS = 5.0
"""Generation poll interval when the store also pushes changes (Redis pub/sub)."""


class StartupError(Exception):
    """Raised when the broker cannot start; the message says why."""


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        path.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


async def open_store(cfg: BrokerConfig) -> Store:
    """Open the configured backend."""
    timeout = cfg.store.timeout_seconds
    if cfg.store.backend == "redis":
        from broker.store.redis import RedisStore

        return await RedisStore.open(cfg.store.redis_url, timeout=timeout)
    from broker.store.sqlite import SqliteStore

    _private_dir(cfg.data_dir)
    return await SqliteStore.open(cfg.data_dir / SQLITE_FILE, timeout=max(timeout, 5.0))


def load_master_key(cfg: BrokerConfig, *, create: bool = True) -> bytes:
    """Find the master key: ``BROKER_MASTER_KEY``, ``master_key_file``, or (SQLite) the data dir.

    On the Redis store the key must be given, and be the same on every node.
    """
    try:
        if cfg.master_key is not None:
            return parse_master_key(cfg.master_key.reveal())
        if cfg.security.master_key_file:
            text = Path(cfg.security.master_key_file).read_text(encoding="utf-8").strip()
            return parse_master_key(text)
    except OSError as exc:
        raise StartupError(f"cannot read [security] master_key_file: {exc.strerror}") from None
    except ValueError as exc:
        raise StartupError(f"invalid master key: {exc}") from None
    if cfg.store.backend == "redis":
        raise StartupError(
            "the redis store needs a master key shared by all nodes: set BROKER_MASTER_KEY "
            "(see `broker keys generate-master`) or [security] master_key_file"
        )
    path = cfg.data_dir / MASTER_KEY_FILE
    if not path.exists():
        if not create:
            raise StartupError(f"no master key at {path}")
        _private_dir(cfg.data_dir)
        with contextlib.suppress(FileExistsError):
            _write_private(path, generate_master_key() + "\n")
            log.info("generated a master key at %s", path)
    try:
        return parse_master_key(path.read_text(encoding="utf-8").strip())
    except ValueError as exc:
        raise StartupError(f"invalid master key in {path}: {exc}") from None


@dataclass
class Runtime:
    """Everything built from the configuration, shared by listeners and admin commands."""

    cfg: BrokerConfig
    store: Store
    keyring: Keyring
    clock: Clock
    generations: Generations
    authenticator: Authenticator
    authorizer: Authorizer
    iam: IamService
    accounts: AccountService
    tracker: KeyUsageTracker
    keys: KeyService
    identity_tokens: IdentityTokenService
    sts: StsService
    sessions: SessionService
    mfa: MfaService
    oidc: OidcProviderService | None = None
    federation: FederationService | None = None
    delivery: DeliveryService | None = None
    audit: AuditSink | None = None
    access_tracker: AccessTracker | None = None

    async def close(self) -> None:
        """Flush write-behind state and close the store."""
        with contextlib.suppress(StoreError):
            await self.tracker.flush()
        if self.access_tracker is not None:
            await self.access_tracker.flush()  # keeps what it cannot write; never raises
        if self.federation is not None:
            await self.federation.close()
        await self.store.close()


async def build_runtime(
    cfg: BrokerConfig, clock: Clock | None = None, store: Store | None = None
) -> Runtime:
    """Open the store (unless one is given, e.g. a test's ``MemoryStore``) and build services."""
    clock = clock or SystemClock()
    keyring = Keyring(load_master_key(cfg))
    store = store if store is not None else await open_store(cfg)
    generations = Generations(store, clock.monotonic)
    authorizer = Authorizer(store, generations, keyring)
    iam = IamService(store, keyring, clock, authorizer, generations)
    keys = KeyService(store, keyring, generations, clock)
    mfa = MfaService(store, keyring, clock, authorizer, generations)
    sts = StsService(
        store, keys, authorizer, clock, cfg.limits, mfa=mfa.verify, generations=generations
    )
    oidc = OidcProviderService(store, clock, authorizer, generations, cfg.federation)
    try:
        jwks = JwksCache(cfg.federation, clock)
    except OSError as exc:
        raise StartupError(f"cannot read [federation] ca_bundle: {exc.strerror}") from None
    federation = FederationService(store, sts, oidc, jwks, clock, cfg.federation)
    return Runtime(
        cfg=cfg,
        store=store,
        keyring=keyring,
        clock=clock,
        generations=generations,
        authenticator=Authenticator(store, keyring, generations, clock),
        authorizer=authorizer,
        iam=iam,
        accounts=AccountService(store, iam, clock),
        tracker=KeyUsageTracker(store),
        access_tracker=AccessTracker(store),
        keys=keys,
        identity_tokens=IdentityTokenService(store, keys, authorizer, generations, clock),
        sts=sts,
        oidc=oidc,
        federation=federation,
        delivery=DeliveryService(
            store, sts, generations, clock, DeliverySettings.from_config(cfg.imds, cfg.container)
        ),
        mfa=mfa,
        sessions=SessionService(
            store,
            generations,
            clock,
            cfg.revocation.max_staleness_seconds,
            cfg.revocation.fail_closed,
        ),
    )


async def bootstrap(rt: Runtime) -> BootstrapResult:
    """Create the first account on an empty store; write its root credentials file."""
    cfg = rt.cfg
    given_secret = cfg.root_secret_access_key.reveal() if cfg.root_secret_access_key else None
    result = await rt.accounts.bootstrap(
        cfg.bootstrap.account_id or None, cfg.root_access_key_id or None, given_secret
    )
    try:
        await rt.keys.ensure()
    except KeyringMismatchError as exc:
        raise StartupError(exc.message) from None
    if result.created is None:
        return result
    if cfg.root_access_key_id:
        log.info("bootstrapped account %s with the given root access key", result.account_id)
        return result
    _private_dir(cfg.data_dir)
    path = (cfg.data_dir / ROOT_CREDENTIALS_FILE).resolve()
    payload = {
        "AccountId": result.account_id,
        "AccessKeyId": result.created.access_key_id,
        "SecretAccessKey": result.created.secret_access_key,
    }
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _write_private(path, json.dumps(payload, indent=2) + "\n")
    log.info("bootstrapped account %s; root credentials written to %s", result.account_id, path)
    return result


async def _every(seconds: float, fn: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await fn()
        except StoreError:
            pass
        except Exception:
            log.error("background task failed", exc_info=True)


def audit_sink(cfg: BrokerConfig) -> AuditSink:
    """The audit spool of ``[audit]``: the JSON-lines file (0600, rotated) and/or stdout."""
    return AuditSink(
        default_path(cfg.audit.path, cfg.data_dir),
        max_bytes=cfg.audit.max_bytes,
        backups=cfg.audit.backups,
        stream=sys.stdout if cfg.audit.stdout else None,
    )


def make_app(rt: Runtime) -> web.Application:
    """Build the API application with its background tasks (cache polling, flushing)."""
    cfg = rt.cfg
    if rt.audit is None:
        rt.audit = audit_sink(cfg)
    audit = rt.audit
    deps = ApiDeps(
        store=rt.store,
        iam=rt.iam,
        authenticator=rt.authenticator,
        tracker=rt.tracker,
        clock=rt.clock,
        max_body_bytes=cfg.security.max_body_bytes,
        clock_skew_seconds=cfg.security.clock_skew_seconds,
        sts=rt.sts,
        token_keys=rt.keys,
        identity_tokens=rt.identity_tokens,
        sessions=rt.sessions,
        federation=rt.federation,
        audit=audit,
        restrict_root_access_keys=cfg.security.restrict_root_access_keys,
        access_tracker=rt.access_tracker,
        signin=cfg.signin,
        failed_auth_rps_per_ip=cfg.limits.failed_auth_rps_per_ip,
    )
    app = make_api_app(deps)
    metrics.install(app, cfg.metrics)

    async def background(_: web.Application) -> AsyncIterator[None]:
        poll = cfg.store.generation_poll_seconds
        audit.start()
        tasks = [asyncio.create_task(_every(cfg.tracking.flush_seconds, rt.tracker.flush))]
        if rt.access_tracker is not None:
            flush = rt.access_tracker.flush
            tasks.append(asyncio.create_task(_every(cfg.tracking.flush_seconds, flush)))
        follow = getattr(rt.store, "follow_generations", None)
        if follow is not None:
            # Pub/sub carries other nodes' changes at once; polling stays as a safety net.
            tasks.append(asyncio.create_task(follow(rt.generations.advance, rt.generations.poll)))
            poll = max(poll, PUBSUB_POLL_SECONDS)
        tasks.append(asyncio.create_task(_every(poll, rt.generations.poll)))
        sweep = getattr(rt.store, "sweep", None)
        if sweep is not None:
            # Expired sessions and denylist entries only take space; SQLite reclaims it here
            # (Redis expires them itself). Expiry decisions never depend on this.
            async def reclaim() -> None:
                await sweep(rt.clock.now().timestamp())

            tasks.append(asyncio.create_task(_every(SWEEP_SECONDS, reclaim)))
        with contextlib.suppress(BrokerError, StoreError):
            await rt.keys.current()  # load the keyring and follow its generation from the start
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await audit.close()  # after the listeners stopped: every request's event is queued
        await rt.close()

    app.cleanup_ctx.append(background)
    return app


async def _start_listener(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def reload_delivery_tables(
    source: str, instances: InstanceTable, mappings: MappingTable, delivery: DeliveryService
) -> bool:
    """Replace the ``[[imds.instances]]`` and ``[[container.mappings]]`` tables from ``source``.

    ``source`` is the configuration file the broker started with (``"defaults"``: none). The
    whole file is loaded and checked; on any problem (or an unreadable token file) the old
    tables stay and False is returned. Other settings are not changed without a restart.
    """
    try:
        fresh = load_config(None if source == "defaults" else source)
        new_instances = parse_instances(fresh.imds.instances)
        new_mappings = parse_mappings(fresh.container.mappings)
        mappings.replace(new_mappings, strict=True)
    except (ConfigError, ValueError) as exc:
        log.error("configuration not reloaded: %s", exc)
        return False
    instances.replace(new_instances)
    delivery.forget([b.key for b in new_instances] + [m.key for m in new_mappings])
    log.info(
        "reloaded %d instance binding(s) and %d container mapping(s)",
        len(new_instances),
        len(new_mappings),
    )
    return True


def delivery_listeners(rt: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running the IMDS and container listeners next to the API listener.

    Each enabled listener gets its own ``AppRunner`` and ``TCPSite`` on its host and port, and
    stops before the runtime closes. SIGHUP calls :func:`reload_delivery_tables` (an app-level
    signal handler on the event loop), so bindings and token mappings change without a restart.
    """
    cfg = rt.cfg
    delivery = rt.delivery
    assert delivery is not None

    async def listeners(_: web.Application) -> AsyncIterator[None]:
        instances = InstanceTable(parse_instances(cfg.imds.instances))
        mappings = MappingTable.load(parse_mappings(cfg.container.mappings))
        runners: list[web.AppRunner] = []
        try:
            if cfg.imds.enabled:
                imds = ImdsDeps(
                    delivery,
                    instances,
                    rt.clock,
                    listen_host=cfg.imds.host,
                    v1_enabled=cfg.imds.v1_enabled,
                    hop_limit=cfg.imds.hop_limit,
                    audit=rt.audit,
                )
                runners.append(
                    await _start_listener(make_imds_app(imds), cfg.imds.host, cfg.imds.port)
                )
                log.info("instance metadata on http://%s:%s", cfg.imds.host, cfg.imds.port)
            if cfg.container.enabled:
                container = ContainerDeps(delivery, mappings, rt.clock, audit=rt.audit)
                runners.append(
                    await _start_listener(
                        make_container_app(container), cfg.container.host, cfg.container.port
                    )
                )
                log.info(
                    "container credentials on http://%s:%s/v1/credentials",
                    cfg.container.host,
                    cfg.container.port,
                )
        except BaseException:
            for runner in runners:
                await runner.cleanup()
            raise
        loop = asyncio.get_running_loop()
        on_hup = False
        if runners:
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.add_signal_handler(
                    signal.SIGHUP,
                    lambda: reload_delivery_tables(cfg.source, instances, mappings, delivery),
                )
                on_hup = True
        yield
        if on_hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for runner in reversed(runners):
            await runner.cleanup()

    return listeners


def _install_loop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _serve_worker(cfg: BrokerConfig, reuse_port: bool, delivery: bool = True) -> None:
    configure_logging()
    _install_loop()

    async def start() -> web.Application:
        rt = await build_runtime(cfg)
        app = make_app(rt)
        if delivery and (cfg.imds.enabled or cfg.container.enabled):
            # One process holds the IMDS tokens and the delivered-credential cache.
            app.cleanup_ctx.append(delivery_listeners(rt))
        return app

    web.run_app(
        start(),
        host=cfg.server.host,
        port=cfg.server.port,
        reuse_port=reuse_port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        print=None,
        access_log=None,
        handle_signals=True,
    )


def serve(cfg: BrokerConfig) -> int:
    """Bootstrap if needed, then serve the API with ``[server] workers`` processes."""

    async def prepare() -> None:
        rt = await build_runtime(cfg)
        try:
            await bootstrap(rt)
            # Root access keys in use beyond setting up administrators: say so at start-up.
            await warn_recent_root_key_use(
                rt.store, await rt.accounts.list_accounts(), rt.clock.now()
            )
        finally:
            await rt.close()

    problems = delivery_problems(cfg)
    if problems:
        raise ConfigError(problems)
    try:
        asyncio.run(prepare())
    except StoreError as exc:
        raise StartupError(f"the {cfg.store.backend} store is unavailable: {exc}") from None
    log.info(
        "serving on http://%s:%s (store=%s, workers=%s)",
        cfg.server.host,
        cfg.server.port,
        cfg.store.backend,
        cfg.server.workers,
    )
    if cfg.server.workers == 1:
        _serve_worker(cfg, reuse_port=False)
        return 0
    metrics.prepare_workers(cfg)  # before the spawn: each worker inherits the directory
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_serve_worker, args=(cfg, True, index == 0), daemon=False)
        for index in range(cfg.server.workers)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    signal.signal(signal.SIGTERM, forward)

    def reload(signum: int, _frame: object) -> None:
        if procs[0].is_alive() and procs[0].pid is not None:
            os.kill(procs[0].pid, signal.SIGHUP)  # the worker that runs the delivery listeners

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(SHUTDOWN_TIMEOUT_SECONDS)
    return 0


def configure_logging(level: int = logging.INFO) -> None:
    """Log key=value lines to stderr (secrets never reach the log)."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
