"""API: the ECS-style container credentials listener (``GET /v1/credentials``).

SDKs reach it through ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (http only on a loopback host, as
botocore's ``ContainerMetadataFetcher`` insists) and send ``Authorization: <token>``, taken
verbatim from ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` or the file named by
``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` (spec/aws-wire.md 6.2). The token selects a
``[[container.mappings]]`` entry and so a role, assumed as ``ecs-tasks.amazonaws.com``.

Rules (spec/security.md C7, C8):

* The header must equal a mapping's token exactly; every mapping's token is compared with
  ``hmac.compare_digest`` (all of them, whatever matches first). A missing header is 401, any
  other value (prefix or suffix added included) 403; the body is then ``{"code": ...,
  "message": ...}`` and holds no credentials.
* Tokens are at least 16 bytes. A ``token_file`` is read when the listener starts, when the
  tables are reloaded (SIGHUP), and whenever its modification time changes (checked every
  :data:`TOKEN_FILE_CHECK_SECONDS`), so a token can be rotated by rewriting the file. A file
  that cannot be read, or holds a short token, disables its mapping (logged) until fixed.
* Success is 200 JSON: ``AccessKeyId``, ``SecretAccessKey``, ``Token``, ``Expiration`` (always
  ``YYYY-MM-DDTHH:MM:SSZ``), ``RoleArn`` and ``AccountId``, with ``Cache-Control: no-store``.
* Only ``/v1/credentials`` answers (GET or HEAD; other methods 405); every other path is 404.
  A request with ``Origin`` is 403 (no browser has a reason to call this endpoint).
* Rate limit: each mapping has a token bucket (:data:`DEFAULT_REQUESTS_PER_SECOND`, burst
  :data:`DEFAULT_BURST`); so do refused tokens per source address. Past it the answer is 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from broker.audit import AuditSink, delivery_event
from broker.clock import Clock
from broker.core.ratelimit import TokenBuckets
from broker.errors import BrokerError, ThrottledError
from broker.service.delivery import (
    MIN_TOKEN_BYTES,
    ContainerMapping,
    DeliveredCredentials,
    DeliveryService,
)

log = logging.getLogger(__name__)

CREDENTIALS_PATH = "/v1/credentials"
DEFAULT_REQUESTS_PER_SECOND = 50.0
DEFAULT_BURST = 100
TOKEN_FILE_CHECK_SECONDS = 5.0
MAX_TOKEN_FILE_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = "1"


def read_token_file(path: str) -> bytes:
    """The token in ``path`` (surrounding whitespace removed); ``ValueError`` if unusable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read token file {path}: {exc.strerror}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ValueError(f"token file {path} is larger than {MAX_TOKEN_FILE_BYTES} bytes")
    token = data.strip()
    if len(token) < MIN_TOKEN_BYTES:
        raise ValueError(f"the token in {path} is shorter than {MIN_TOKEN_BYTES} bytes")
    return token


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


@dataclass(slots=True)
class _Slot:
    mapping: ContainerMapping
    token: bytes | None
    mtime: float | None = None


@dataclass(slots=True)
class MappingTable:
    """Token -> mapping, for the current ``[[container.mappings]]`` (replaced on reload)."""

    _slots: list[_Slot] = field(default_factory=list)

    @classmethod
    def load(cls, mappings: Sequence[ContainerMapping]) -> MappingTable:
        """Read every mapping's token (files included); raise ``ValueError`` naming a bad one."""
        table = cls()
        table.replace(mappings, strict=True)
        return table

    @property
    def mappings(self) -> tuple[ContainerMapping, ...]:
        """The current mappings."""
        return tuple(slot.mapping for slot in self._slots)

    def replace(self, mappings: Sequence[ContainerMapping], *, strict: bool = True) -> None:
        """Use ``mappings`` from now on. ``strict``: an unreadable token file is an error."""
        slots: list[_Slot] = []
        for mapping in mappings:
            if mapping.token is not None:
                slots.append(_Slot(mapping, mapping.token.reveal().encode("utf-8")))
                continue
            assert mapping.token_file is not None
            mtime = _mtime(mapping.token_file)
            try:
                token: bytes | None = read_token_file(mapping.token_file)
            except ValueError as exc:
                if strict:
                    raise
                log.error("container mapping %s disabled: %s", mapping.name, exc)
                token = None
            slots.append(_Slot(mapping, token, mtime))
        self._slots = slots

    def refresh_files(self) -> int:
        """Re-read token files whose modification time changed; return how many were read."""
        changed = 0
        for slot in self._slots:
            path = slot.mapping.token_file
            if path is None:
                continue
            mtime = _mtime(path)
            if mtime == slot.mtime:
                continue
            slot.mtime = mtime
            changed += 1
            try:
                slot.token = read_token_file(path)
                log.info("container mapping %s: token file re-read", slot.mapping.name)
            except ValueError as exc:
                slot.token = None
                log.error("container mapping %s disabled: %s", slot.mapping.name, exc)
        return changed

    def find(self, presented: bytes) -> ContainerMapping | None:
        """The mapping whose token equals ``presented`` (every token is compared)."""
        found: ContainerMapping | None = None
        for slot in self._slots:
            if slot.token is not None and hmac.compare_digest(presented, slot.token):
                found = slot.mapping
        return found


@dataclass
class ContainerDeps:
    """What the container listener needs, built once by ``broker.app``."""

    delivery: DeliveryService
    mappings: MappingTable
    clock: Clock
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    burst: int = DEFAULT_BURST
    token_file_check_seconds: float = TOKEN_FILE_CHECK_SECONDS
    audit: AuditSink | None = None


CONTAINER = web.AppKey("container", ContainerDeps)


def render_credentials(creds: DeliveredCredentials) -> str:
    """The credentials document (what ECS's agent answers)."""
    return json.dumps(
        {
            "RoleArn": creds.role_arn,
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.token,
            "Expiration": creds.expiration,
            "AccountId": creds.account_id,
        }
    )


def _error(status: int, code: str, message: str) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if status in (429, 503):
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    return web.Response(
        status=status,
        text=json.dumps({"code": code, "message": message}),
        content_type="application/json",
        headers=headers,
    )


class ContainerApi:
    """The handler of every request on the container listener."""

    def __init__(self, deps: ContainerDeps) -> None:
        self.deps = deps
        self._buckets = TokenBuckets(deps.requests_per_second, deps.burst)

    def _allow(self, key: str) -> bool:
        return self._buckets.allow(key, self.deps.clock.monotonic())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request."""
        if "Origin" in request.headers:
            return _error(403, "AccessDenied", "Browser requests are refused.")
        # The target as sent: aiohttp's URL has dot segments already removed.
        if request.raw_path.split("?", 1)[0] != CREDENTIALS_PATH:
            return _error(404, "NotFound", "Unknown path.")
        if request.method not in ("GET", "HEAD"):
            return _error(405, "MethodNotAllowed", "Use GET.")
        presented = request.headers.get("Authorization")
        if presented is None:
            return _error(401, "MissingAuthorizationToken", "The Authorization header is missing.")
        mapping = self.deps.mappings.find(presented.encode("utf-8", "surrogateescape"))
        if mapping is None:
            if not self._allow(f"refused/{request.remote}"):
                return _error(429, "Throttling", "Rate exceeded")
            log.info("container request with a wrong token from %s", request.remote)
            return _error(403, "InvalidAuthorizationToken", "The token is not valid.")
        if not self._allow(f"mapping/{mapping.name}"):
            return _error(429, "Throttling", "Rate exceeded")
        try:
            creds = await self.deps.delivery.container_credentials(mapping)
        except ThrottledError as err:
            return _error(429, err.code, err.message)
        except BrokerError as err:
            level = logging.ERROR if err.status >= 500 else logging.INFO
            log.log(level, "container mapping %s failed code=%s", mapping.name, err.code)
            self._audit(request, mapping.name, mapping.role_arn, error=err)
            return _error(err.status, err.code, err.message)
        self._audit(request, mapping.name, creds.role_arn, creds=creds)
        return web.Response(
            text=render_credentials(creds),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    def _audit(
        self,
        request: web.Request,
        mapping: str,
        role_arn: str,
        *,
        creds: DeliveredCredentials | None = None,
        error: BrokerError | None = None,
    ) -> None:
        """One audit event per credential set handed out (or refused); never the secret."""
        if self.deps.audit is None:
            return
        self.deps.audit.emit(
            delivery_event(
                now=self.deps.clock.now(),
                channel="container",
                binding=mapping,
                role_arn=role_arn,
                source_ip=request.remote or "",
                user_agent=request.headers.get("User-Agent", ""),
                access_key_id=creds.access_key_id if creds is not None else None,
                expiration=creds.expiration if creds is not None else None,
                error_code=error.code if error is not None else None,
                error_message=error.message if error is not None else None,
            )
        )


def _watch_token_files(deps: ContainerDeps) -> Callable[[web.Application], AsyncIterator[None]]:
    async def watch(_: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(deps.token_file_check_seconds)
                try:
                    deps.mappings.refresh_files()
                except Exception:
                    log.error("token file check failed", exc_info=True)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return watch


def make_container_app(deps: ContainerDeps) -> web.Application:
    """Build the container listener's aiohttp application."""
    app = web.Application(client_max_size=1024)
    app[CONTAINER] = deps
    api = ContainerApi(deps)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    if deps.token_file_check_seconds > 0:
        app.cleanup_ctx.append(_watch_token_files(deps))
    return app
