"""API: the EC2-style instance metadata listener (IMDSv2, and v1 when enabled).

What SDKs rely on (spec/aws-wire.md 6.1, botocore's ``IMDSFetcher``): ``PUT
/latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` gives a session token, GETs
carry it in ``X-aws-ec2-metadata-token``, ``/latest/meta-data/iam/security-credentials/`` is
the role name alone and ``.../ROLE`` the credentials document. The guards follow
spec/security.md section C:

* C1: the TTL must be an integer from 1 to 21600, else 400; the token is 256 bits from
  ``secrets`` and the TTL is echoed in the same header. Tokens belong to this listener (each
  listener has its own table), are bound to the instance that asked for them and expire at
  their TTL (monotonic clock). Their number is capped: at the cap, the token that would expire
  first is dropped.
* C2: a token ``PUT`` carrying ``X-Forwarded-For``, ``Forwarded`` or ``Via`` is refused with
  403 (what AWS does so that proxies and open WAFs cannot fetch a token); other methods on the
  token path get 405.
* C3: without v1, a GET without a token, or with an unknown, expired or other-instance token, is
  401 with an empty body. A token that is present but not valid is 401 with v1 as well.
* C4: the ``Host`` header (port stripped) must name ``169.254.169.254``, ``[fd00:ec2::254]``,
  ``localhost``, the listen address or an extra allowed host; a request with ``Origin`` is 403
  (both stop DNS rebinding from a browser).
* C5: credential documents carry ``Code``, ``LastUpdated``, ``Type``, ``AccessKeyId``,
  ``SecretAccessKey``, ``Token`` and ``Expiration``; every answer has ``Cache-Control:
  no-store``. Answers that use a token echo its remaining lifetime in the TTL header.
* C6: a caller whose source address matches no ``[[imds.instances]]`` entry gets 403.
* C8: only known paths answer; anything else (percent-encoded, dot segments, empty segments,
  role names that are not role names) is 404. Nothing touches the file system.

Hop limit: with ``[imds] hop_limit`` above 0, every reply (the token reply included, which is
what EC2 limits) is sent with the connection socket's IP TTL (IPv6: unicast hop limit, plus the
IPv4 TTL for mapped peers) set to it with ``setsockopt`` before the answer is written. A reply
that must cross more routers than that (a container behind NAT, a proxy on another host) is
dropped on the way, so such callers cannot get a token. ``hop_limit = 0`` leaves the system
default. If the option cannot be set, replies go out anyway and a warning is logged once.

When the role's trust policy does not allow ``ec2.amazonaws.com``, the credentials path
answers 200 with ``{"Code": "AssumeRoleUnauthorizedAccess", ...}`` and no credentials, as EC2
does; SDKs then find no credentials.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from broker.audit import AuditSink, delivery_event
from broker.clock import Clock, iso8601
from broker.errors import (
    AccessDeniedError,
    BrokerError,
    NoSuchEntityError,
    ThrottledError,
    UnavailableError,
)
from broker.service.delivery import (
    DeliveredCredentials,
    DeliveryService,
    InstanceBinding,
    match_instance,
)

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MIN_TOKEN_TTL_SECONDS = 1
MAX_TOKEN_TTL_SECONDS = 21600
TOKEN_BYTES = 32
DEFAULT_MAX_TOKENS = 10_000
"""Live tokens one listener keeps; at the cap the one expiring first is dropped."""
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "Via")
METADATA_HOSTS = frozenset({"169.254.169.254", "fd00:ec2::254", "localhost"})
MAX_ADDRESS_CACHE = 4096
RETRY_AFTER_SECONDS = "1"

CREDENTIALS_PREFIX = "/latest/meta-data/iam/security-credentials/"
_LISTINGS = {
    "/latest/meta-data": "iam/\ninstance-id\nplacement/",
    "/latest/meta-data/": "iam/\ninstance-id\nplacement/",
    "/latest/meta-data/iam": "info\nsecurity-credentials/",
    "/latest/meta-data/iam/": "info\nsecurity-credentials/",
    "/latest/meta-data/placement": "availability-zone\nregion",
    "/latest/meta-data/placement/": "availability-zone\nregion",
    "/latest/dynamic/instance-identity": "document",
    "/latest/dynamic/instance-identity/": "document",
}
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
MAX_RENDERED = 1024
"""Credential documents kept rendered (one per live credential set is enough)."""


class TokenTable:
    """IMDSv2 session tokens of one listener: random, bound to an instance, expiring, capped."""

    def __init__(
        self,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        rng: Callable[[int], str] = secrets.token_urlsafe,
    ) -> None:
        self._max = max(1, max_tokens)
        self._rng = rng
        self._tokens: dict[str, tuple[float, str]] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._tokens)

    def _purge(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, token = heapq.heappop(heap)
            self._tokens.pop(token, None)

    def issue(self, instance_id: str, ttl: int, now: float) -> str:
        """A new token for ``instance_id`` that expires ``ttl`` seconds after ``now``."""
        self._purge(now)
        while len(self._tokens) >= self._max:
            _, oldest = heapq.heappop(self._expiry)
            self._tokens.pop(oldest, None)
        token = self._rng(TOKEN_BYTES)
        expires = now + ttl
        self._tokens[token] = (expires, instance_id)
        heapq.heappush(self._expiry, (expires, token))
        return token

    def check(self, token: str, instance_id: str, now: float) -> float | None:
        """Seconds ``token`` has left if it is live and belongs to ``instance_id``, else None."""
        found = self._tokens.get(token)
        if found is None:
            return None
        expires, owner = found
        if now >= expires:
            self._purge(now)
            return None
        if not secrets.compare_digest(owner, instance_id):
            return None
        return expires - now


class InstanceTable:
    """Source address -> instance binding (most specific source wins); replaced on reload."""

    def __init__(self, bindings: Sequence[InstanceBinding] = ()) -> None:
        self._bindings: tuple[InstanceBinding, ...] = tuple(bindings)
        self._by_address: dict[str, InstanceBinding | None] = {}

    @property
    def bindings(self) -> tuple[InstanceBinding, ...]:
        """The current bindings."""
        return self._bindings

    def replace(self, bindings: Sequence[InstanceBinding]) -> None:
        """Use ``bindings`` from now on."""
        self._bindings = tuple(bindings)
        self._by_address = {}

    def match(self, address: str) -> InstanceBinding | None:
        """The binding of a caller at ``address`` (cached per address)."""
        try:
            return self._by_address[address]
        except KeyError:
            pass
        found = match_instance(self._bindings, address)
        if len(self._by_address) >= MAX_ADDRESS_CACHE:
            self._by_address.clear()
        self._by_address[address] = found
        return found


@dataclass
class ImdsDeps:
    """What the metadata listener needs, built once by ``broker.app``."""

    delivery: DeliveryService
    instances: InstanceTable
    clock: Clock
    listen_host: str = "127.0.0.1"
    v1_enabled: bool = False
    hop_limit: int = 1
    max_tokens: int = DEFAULT_MAX_TOKENS
    allowed_hosts: tuple[str, ...] = ()
    audit: AuditSink | None = None


IMDS = web.AppKey("imds", ImdsDeps)


def _host_name(host: str) -> str:
    """The ``Host`` header without its port, brackets or letter case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def set_hop_limit(transport: object, hops: int) -> bool:
    """Set the IP TTL (IPv6: unicast hops) of a connection's socket; False if not possible."""
    get_extra = getattr(transport, "get_extra_info", None)
    sock = get_extra("socket") if get_extra is not None else None
    if sock is None:
        return False
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
            # IPv4 peers of a dual-stack socket use the IPv4 TTL.
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
            except OSError:
                pass
        elif sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
        else:
            return False
    except OSError:
        return False
    return True


def _plain(
    status: int, text: str | bytes = "", headers: dict[str, str] | None = None
) -> web.Response:
    out = {"Cache-Control": "no-store"}
    if headers:
        out.update(headers)
    body = text.encode("utf-8") if isinstance(text, str) else text
    return web.Response(status=status, body=body, content_type="text/plain", headers=out)


def render_credentials(creds: DeliveredCredentials) -> str:
    """The ``security-credentials/ROLE`` document."""
    return json.dumps(
        {
            "Code": "Success",
            "LastUpdated": creds.last_updated,
            "Type": "AWS-HMAC",
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.token,
            "Expiration": creds.expiration,
        },
        indent=2,
    )


def _valid_role_name(name: str) -> bool:
    return _ROLE_NAME.fullmatch(name) is not None


def _target_path(target: str) -> str:
    """The path of the request target exactly as sent (aiohttp's URL has dot segments removed)."""
    return target.split("?", 1)[0].split("#", 1)[0]


def _clean_path(raw: str) -> bool:
    """Whether a raw path is plain: no escapes, no dot or empty segments, no control bytes."""
    if "%" in raw or "//" in raw or "\\" in raw:
        return False
    if any(seg in (".", "..") for seg in raw.split("/")):
        return False
    return raw.isprintable()


class ImdsApi:
    """The handler of every request on the metadata listener."""

    def __init__(self, deps: ImdsDeps) -> None:
        self.deps = deps
        self.tokens = TokenTable(deps.max_tokens)
        hosts = set(METADATA_HOSTS) | {h.lower() for h in deps.allowed_hosts}
        hosts.add(_host_name(deps.listen_host))
        self._hosts = frozenset(hosts)
        self._hop_warned = False
        self._started = iso8601(deps.clock.now())
        self._bodies: dict[str, tuple[DeliveredCredentials, bytes]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request (guards first, then the token or metadata path)."""
        if self.deps.hop_limit > 0:
            self._limit_hops(request)
        headers = request.headers
        if "Origin" in headers:
            return _plain(403)
        host = headers.get("Host")
        if host is None or _host_name(host) not in self._hosts:
            return _plain(403)
        binding = self.deps.instances.match(request.remote or "")
        if binding is None:
            log.info("imds caller %s matches no instance", request.remote)
            return _plain(403)
        raw = _target_path(request.raw_path)
        if raw == TOKEN_PATH:
            return self._token(request, binding)
        if request.method not in ("GET", "HEAD"):
            return _plain(405, headers={"Allow": "GET, HEAD"})
        now = self.deps.clock.monotonic()
        echo: dict[str, str] | None = None
        token = headers.get(TOKEN_HEADER)
        if token is not None:
            remaining = self.tokens.check(token, binding.instance_id, now)
            if remaining is None:
                return _plain(401)
            echo = {TTL_HEADER: str(max(1, int(remaining)))}
        elif not self.deps.v1_enabled:
            return _plain(401)
        if not _clean_path(raw):
            return _plain(404, headers=echo)
        try:
            return await self._metadata(raw, binding, echo, request.remote or "")
        except UnavailableError:
            merged = {"Retry-After": RETRY_AFTER_SECONDS, **(echo or {})}
            return _plain(503, headers=merged)
        except NoSuchEntityError:
            return _plain(404, headers=echo)
        except ThrottledError:
            return _plain(429, headers=echo)
        except BrokerError as err:
            level = logging.ERROR if err.status >= 500 else logging.INFO
            log.log(level, "imds request failed code=%s", err.code)
            return _plain(err.status, headers=echo)

    def _token(self, request: web.Request, binding: InstanceBinding) -> web.Response:
        if request.method != "PUT":
            return _plain(405, headers={"Allow": "PUT"})
        if any(name in request.headers for name in PROXY_HEADERS):
            log.info("imds token request through a proxy refused")
            return _plain(403)
        text = request.headers.get(TTL_HEADER, "")
        ttl = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 0
        if not MIN_TOKEN_TTL_SECONDS <= ttl <= MAX_TOKEN_TTL_SECONDS:
            return _plain(400)
        token = self.tokens.issue(binding.instance_id, ttl, self.deps.clock.monotonic())
        return _plain(200, token, {TTL_HEADER: str(ttl)})

    def _limit_hops(self, request: web.Request) -> None:
        done = set_hop_limit(request.transport, self.deps.hop_limit)
        if not done and not self._hop_warned:
            self._hop_warned = True
            log.warning("imds hop limit could not be set on the listener's sockets")

    async def _metadata(
        self, path: str, binding: InstanceBinding, echo: dict[str, str] | None, caller: str
    ) -> web.Response:
        delivery = self.deps.delivery
        if path.startswith(CREDENTIALS_PREFIX) and len(path) > len(CREDENTIALS_PREFIX):
            name = path[len(CREDENTIALS_PREFIX) :]
            if not _valid_role_name(name):
                return _plain(404, headers=echo)
            try:
                creds = await delivery.instance_credentials(binding, name)
            except AccessDeniedError as err:
                self._audit(binding, name, caller, error=err)
                return _plain(200, self._failure(err), echo)
            self._audit(binding, creds.role_arn, caller, creds=creds)
            return _plain(200, self._rendered(creds), echo)
        if path in ("/latest/meta-data/iam/security-credentials", CREDENTIALS_PREFIX):
            return _plain(200, await delivery.instance_role_name(binding), echo)
        listing = _LISTINGS.get(path)
        if listing is not None:
            return _plain(200, listing, echo)
        if path == "/latest/meta-data/instance-id":
            return _plain(200, binding.instance_id, echo)
        if path == "/latest/meta-data/placement/region":
            return _plain(200, binding.region, echo)
        if path == "/latest/meta-data/placement/availability-zone":
            return _plain(200, binding.availability_zone, echo)
        if path == "/latest/meta-data/iam/info":
            info = await delivery.instance_profile(binding)
            body = {
                "Code": "Success",
                "LastUpdated": iso8601(datetime.fromtimestamp(info.last_updated, UTC)),
                "InstanceProfileArn": info.arn,
                "InstanceProfileId": info.profile_id,
            }
            return _plain(200, json.dumps(body, indent=2), echo)
        if path == "/latest/dynamic/instance-identity/document":
            return _plain(200, self._identity(binding, caller), echo)
        return _plain(404, headers=echo)

    def _audit(
        self,
        binding: InstanceBinding,
        role: str,
        caller: str,
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
                channel="imds",
                binding=binding.instance_id,
                role_arn=role,
                source_ip=caller,
                user_agent="",
                access_key_id=creds.access_key_id if creds is not None else None,
                expiration=creds.expiration if creds is not None else None,
                error_code=error.code if error is not None else None,
                error_message=error.message if error is not None else None,
                region=binding.region,
            )
        )

    def _rendered(self, creds: DeliveredCredentials) -> bytes:
        """The credentials document, rendered once per credential set."""
        hit = self._bodies.get(creds.access_key_id)
        if hit is None or hit[0] is not creds:
            if len(self._bodies) >= MAX_RENDERED:
                self._bodies.clear()
            hit = (creds, render_credentials(creds).encode("utf-8"))
            self._bodies[creds.access_key_id] = hit
        return hit[1]

    def _failure(self, err: BrokerError) -> str:
        return json.dumps(
            {
                "Code": "AssumeRoleUnauthorizedAccess",
                "Message": err.message,
                "LastUpdated": iso8601(self.deps.clock.now()),
            },
            indent=2,
        )

    def _identity(self, binding: InstanceBinding, caller: str) -> str:
        return json.dumps(
            {
                "accountId": binding.account_id,
                "architecture": "x86_64",
                "availabilityZone": binding.availability_zone,
                "imageId": "ami-00000000000000000",
                "instanceId": binding.instance_id,
                "instanceType": "t3.micro",
                "pendingTime": self._started,
                "privateIp": caller,
                "region": binding.region,
                "version": "2017-09-30",
            },
            indent=2,
        )


def make_imds_app(deps: ImdsDeps) -> web.Application:
    """Build the metadata listener's aiohttp application (one catch-all route)."""
    app = web.Application(client_max_size=1024)
    app[IMDS] = deps
    api = ImdsApi(deps)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app
