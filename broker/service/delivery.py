"""Service: role credentials delivered to workloads (instance metadata, container endpoint).

Which role a workload gets is decided by configuration (DESIGN section 8): an instance binding
(``[[imds.instances]]``: source address or CIDR -> instance id + instance profile ARN) or a
container mapping (``[[container.mappings]]``: bearer token -> role ARN). This module turns
those tables into typed bindings, and :class:`DeliveryService` answers "which credentials does
this binding get now?":

* **Resolution per request, cheap.** The instance profile and role records are read through a
  per-generation :class:`~broker.service.reads.RecordCache`, and the whole resolution (profile ->
  role -> trust decision) is kept until the account's generation moves. A role swapped in the
  instance profile (Remove/AddRoleToInstanceProfile) bumps the generation, so the next fetch
  sees the new role, as on EC2.
* **Trust.** The role's trust policy must allow the service principal (``ec2.amazonaws.com``
  for instances, ``ecs-tasks.amazonaws.com`` for containers) to call ``sts:AssumeRole``;
  the decision is made here with the policy engine, then
  :meth:`~broker.service.sts.StsService.mint_role_session` mints. Instance sessions are named
  after the instance id (so the caller is ``assumed-role/ROLE/i-...``); container sessions
  after the mapping's name.
* **Cache and renewal.** Minted credentials are kept per binding and role, and renewed once
  fewer than ``renew_before`` seconds remain. The lifetime is the configured one, never more
  than the role's ``MaxSessionDuration``; when it is cut down to the role's maximum, the renewal
  margin shrinks in the same proportion, so credentials are still reused for a while.
* **Single flight.** Concurrent fetches that need new credentials for the same binding and
  role share one in-flight mint.
* **Store outages** (spec/security.md F4). When a mint fails because the store is unavailable,
  the cached credentials keep being served until 5 minutes before their ``Expiration``; after
  that the caller gets ``ServiceUnavailable``. Expired credentials are never served, and
  ``Expiration`` is never extended here.
* **Revocation.** When the account's generation moves, a cached session that was revoked
  (``revoked/<sid>``) or whose role record changed (for instance the
  ``AWSRevokeOlderSessions`` inline policy) is replaced on the next fetch.

The cache lives in one process. ``broker serve`` runs the delivery listeners in its first
worker only, so one renewal is one mint however many SDKs refresh at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from broker import metrics
from broker.clock import Clock, iso8601
from broker.config import BrokerConfig, ConfigError, ContainerConfig, ImdsConfig, Secret
from broker.core.arn import parse_arn
from broker.core.model import key_hint
from broker.core.policy import (
    CallerKind,
    CompiledPolicy,
    ContextValue,
    Decision,
    PolicyKind,
    RequestContext,
    compile_policy,
    evaluate_trust,
    normalize_keys,
    parse_policy,
)
from broker.errors import (
    AccessDeniedError,
    BrokerError,
    NoSuchEntityError,
    ThrottledError,
    UnavailableError,
)
from broker.service.cache import Generations
from broker.service.reads import RecordCache
from broker.service.sts import IssuedSession
from broker.service.txn import Doc, encode
from broker.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

EC2_SERVICE = "ec2.amazonaws.com"
"""The service principal instance roles must trust."""
ECS_TASKS_SERVICE = "ecs-tasks.amazonaws.com"
"""The service principal container roles must trust."""

SERVE_STALE_UNTIL_SECONDS = 300
"""While the store is down, cached credentials are served until this long before expiry (F4)."""
MINT_RETRY_SECONDS = 5.0
"""After a mint failed on an unavailable store, cached credentials are served this long
(monotonic seconds) before the next attempt, so an outage does not slow every fetch."""
CONTAINER_RENEW_BEFORE_SECONDS = 1800
"""Container credentials are renewed when fewer than this many seconds remain."""
MIN_SESSION_SECONDS = 900
MAX_SESSION_SECONDS = 43200
MIN_RENEW_BEFORE_SECONDS = SERVE_STALE_UNTIL_SECONDS
"""Renewal must start at least 5 minutes before expiry (spec/security.md C5)."""
MAX_HOP_LIMIT = 255
DEFAULT_REGION = "us-east-1"
TRUST_CACHE_SIZE = 1024
MIN_TOKEN_BYTES = 16
"""Container bearer tokens are at least this long (spec/security.md C7)."""

INSTANCE_KEYS = frozenset(
    {"source", "instance_id", "instance_profile", "region", "availability_zone"}
)
"""Keys of one ``[[imds.instances]]`` entry (``region`` and ``availability_zone`` optional)."""
MAPPING_KEYS = frozenset({"name", "token", "token_file", "role_arn"})
"""Keys of one ``[[container.mappings]]`` entry (``name`` optional; one of the two tokens)."""

_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_ZONE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d[a-z]")
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)


# -- bindings ---------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class InstanceBinding:
    """One ``[[imds.instances]]`` entry: callers from ``network`` are instance ``instance_id``."""

    instance_id: str
    profile_arn: str
    account_id: str
    profile_name: str
    network: Network
    region: str = DEFAULT_REGION
    availability_zone: str = DEFAULT_REGION + "a"

    @property
    def key(self) -> str:
        """The cache key of this instance's credentials."""
        return f"instance/{self.instance_id}"

    @property
    def instance_arn(self) -> str:
        """The instance's ARN (recorded as the caller of its sessions)."""
        return f"arn:aws:ec2:{self.region}:{self.account_id}:instance/{self.instance_id}"


@dataclass(frozen=True, slots=True)
class ContainerMapping:
    """One ``[[container.mappings]]`` entry: the bearer of its token gets ``role_arn``.

    Exactly one of ``token`` (inline) and ``token_file`` (read by the listener, so it can be
    rotated) is set.
    """

    index: int
    name: str
    role_arn: str
    account_id: str
    role_name: str
    token: Secret | None = None
    token_file: str | None = None

    @property
    def key(self) -> str:
        """The cache key of this mapping's credentials."""
        return f"container/{self.name}"


def _text(entry: Mapping[str, object], key: str, where: str, problems: list[str]) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: {key} must be a non-empty string")
        return None
    return value


def parse_instances(entries: Sequence[Mapping[str, object]]) -> tuple[InstanceBinding, ...]:
    """Turn ``[[imds.instances]]`` tables into bindings; raise ``ConfigError`` listing problems.

    ``source`` is an address or a CIDR (``0.0.0.0/0`` or ``::/0`` give one instance to every
    caller of the listener); ``instance_profile`` is the profile's ARN (with its path).
    """
    problems: list[str] = []
    out: list[InstanceBinding] = []
    profiles: dict[str, str] = {}
    sources: set[Network] = set()
    for i, entry in enumerate(entries):
        where = f"[[imds.instances]] #{i + 1}"
        unknown = sorted(set(entry) - INSTANCE_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
        source = _text(entry, "source", where, problems)
        instance_id = _text(entry, "instance_id", where, problems)
        profile = _text(entry, "instance_profile", where, problems)
        region = _text(entry, "region", where, problems) or DEFAULT_REGION
        zone = _text(entry, "availability_zone", where, problems) or f"{region}a"
        network: Network | None = None
        if source is None:
            problems.append(f"{where}: source is required")
        else:
            try:
                network = _unmap(ipaddress.ip_network(source, strict=False))
            except ValueError:
                problems.append(f"{where}: source {source!r} is not an address or CIDR")
        if network is not None:
            if network in sources:
                problems.append(f"{where}: source {source} is listed twice")
            sources.add(network)
        if instance_id is None or not _INSTANCE_ID.fullmatch(instance_id):
            problems.append(f"{where}: instance_id must look like i-0123456789abcdef0")
        arn = parse_arn(profile) if profile else None
        if (
            arn is None
            or arn.service != "iam"
            or arn.region
            or not arn.resource.startswith("instance-profile/")
            or not arn.resource.rsplit("/", 1)[1]
        ):
            problems.append(f"{where}: instance_profile must be an instance profile ARN")
            arn = None
        if not _REGION.fullmatch(region):
            problems.append(f"{where}: region {region!r} is not a region name")
        if not _ZONE.fullmatch(zone) or not zone.startswith(region):
            problems.append(f"{where}: availability_zone {zone!r} is not a zone of {region}")
        if instance_id is not None and profile is not None:
            if profiles.setdefault(instance_id, profile) != profile:
                problems.append(f"{where}: instance {instance_id} has two instance profiles")
        if network is None or instance_id is None or arn is None or profile is None:
            continue
        out.append(
            InstanceBinding(
                instance_id=instance_id,
                profile_arn=profile,
                account_id=arn.account,
                profile_name=arn.resource.rsplit("/", 1)[1],
                network=network,
                region=region,
                availability_zone=zone,
            )
        )
    if problems:
        raise ConfigError(problems)
    return tuple(out)


def parse_mappings(entries: Sequence[Mapping[str, object]]) -> tuple[ContainerMapping, ...]:
    """Turn ``[[container.mappings]]`` tables into mappings; raise ``ConfigError`` if bad.

    ``name`` (default ``container-<index>``, counting from 0) is the session name, so it follows
    the ``RoleSessionName`` pattern. Inline tokens must be at least 16 bytes and distinct.
    """
    problems: list[str] = []
    out: list[ContainerMapping] = []
    names: set[str] = set()
    tokens: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"[[container.mappings]] #{i + 1}"
        unknown = sorted(set(entry) - MAPPING_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
        name = _text(entry, "name", where, problems) or f"container-{i}"
        token = _text(entry, "token", where, problems)
        token_file = _text(entry, "token_file", where, problems)
        role_arn = _text(entry, "role_arn", where, problems)
        if not _SESSION_NAME.fullmatch(name):
            problems.append(f"{where}: name must be 2-64 characters of [A-Za-z0-9_+=,.@-]")
        elif name in names:
            problems.append(f"{where}: name {name!r} is used twice")
        names.add(name)
        if (token is None) == (token_file is None):
            problems.append(f"{where}: give exactly one of token and token_file")
        if token is not None:
            if len(token.encode("utf-8")) < MIN_TOKEN_BYTES:
                problems.append(f"{where}: token must be at least {MIN_TOKEN_BYTES} bytes")
            elif token in tokens:
                problems.append(f"{where}: the same token is used by two mappings")
            tokens.add(token)
        arn = parse_arn(role_arn) if role_arn else None
        role_name = arn.resource.rsplit("/", 1)[1] if arn is not None else ""
        if (
            arn is None
            or arn.service != "iam"
            or arn.region
            or not arn.resource.startswith("role/")
            or not _ROLE_NAME.fullmatch(role_name)
        ):
            problems.append(f"{where}: role_arn must be a role ARN")
            continue
        assert role_arn is not None
        out.append(
            ContainerMapping(
                index=i,
                name=name,
                role_arn=role_arn,
                account_id=arn.account,
                role_name=role_name,
                token=Secret(token) if token is not None else None,
                token_file=token_file,
            )
        )
    if problems:
        raise ConfigError(problems)
    return tuple(out)


def _listen_problems(section: str, host: str) -> list[str]:
    if host == "localhost":
        return []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return [f"[{section}] host must be an IP address or localhost, not {host!r}"]
    if address.is_unspecified:
        return [f"[{section}] host {host} would listen on every interface: refused"]
    if not (address.is_loopback or address.is_link_local):
        return [f"[{section}] host must be a loopback or link-local address, not {host}"]
    return []


def delivery_problems(cfg: BrokerConfig) -> list[str]:
    """Every problem of the ``[imds]`` and ``[container]`` settings (empty when usable).

    The listeners bind only to loopback or link-local addresses (spec/security.md C6); the
    instance and mapping tables are checked by :func:`parse_instances` and
    :func:`parse_mappings` as well.
    """
    problems: list[str] = []
    imds, container = cfg.imds, cfg.container
    if imds.enabled:
        problems += _listen_problems("imds", imds.host)
        checks = [
            (not 0 <= imds.port <= 65535, "[imds] port must be between 0 and 65535"),
            (
                not 0 <= imds.hop_limit <= MAX_HOP_LIMIT,
                f"[imds] hop_limit must be between 0 (off) and {MAX_HOP_LIMIT}",
            ),
            (
                not MIN_SESSION_SECONDS <= imds.session_seconds <= MAX_SESSION_SECONDS,
                f"[imds] session_seconds must be between {MIN_SESSION_SECONDS} and "
                f"{MAX_SESSION_SECONDS}",
            ),
            (
                not MIN_RENEW_BEFORE_SECONDS <= imds.renew_before_seconds < imds.session_seconds,
                f"[imds] renew_before_seconds must be at least {MIN_RENEW_BEFORE_SECONDS} and "
                "less than session_seconds",
            ),
        ]
        problems += [message for bad, message in checks if bad]
        try:
            parse_instances(imds.instances)
        except ConfigError as exc:
            problems += exc.problems
    if container.enabled:
        problems += _listen_problems("container", container.host)
        checks = [
            (not 0 <= container.port <= 65535, "[container] port must be between 0 and 65535"),
            (
                not MIN_SESSION_SECONDS <= container.session_seconds <= MAX_SESSION_SECONDS,
                f"[container] session_seconds must be between {MIN_SESSION_SECONDS} and "
                f"{MAX_SESSION_SECONDS}",
            ),
        ]
        problems += [message for bad, message in checks if bad]
        try:
            parse_mappings(container.mappings)
        except ConfigError as exc:
            problems += exc.problems
    same_address = (imds.host, imds.port) == (container.host, container.port)
    if imds.enabled and container.enabled and same_address:
        problems.append("[imds] and [container] cannot share one host and port")
    return problems


def _unmap(network: Network) -> Network:
    """IPv4-mapped IPv6 networks (``::ffff:10.0.0.0/104``) as the IPv4 networks they are."""
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        return ipaddress.IPv4Network(f"{mapped}/{max(0, network.prefixlen - 96)}", strict=False)
    return network


def match_instance(bindings: Sequence[InstanceBinding], address: str) -> InstanceBinding | None:
    """The binding whose source contains ``address`` (the most specific one wins)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    best: InstanceBinding | None = None
    for binding in bindings:
        if ip.version == binding.network.version and ip in binding.network:
            if best is None or binding.network.prefixlen > best.network.prefixlen:
                best = binding
    return best


# -- what the listeners hand out --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveredCredentials:
    """Role credentials as a delivery channel hands them out."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    token: str = field(repr=False)
    issued_at: int
    expires_at: int
    role_arn: str
    role_name: str
    account_id: str
    session_id: str

    @property
    def expiration(self) -> str:
        """``Expiration`` as the SDKs parse it (``YYYY-MM-DDTHH:MM:SSZ``)."""
        return iso8601(datetime.fromtimestamp(self.expires_at, UTC))

    @property
    def last_updated(self) -> str:
        """When these credentials were minted, in the same format."""
        return iso8601(datetime.fromtimestamp(self.issued_at, UTC))


@dataclass(frozen=True, slots=True)
class InstanceProfileInfo:
    """What ``/latest/meta-data/iam/info`` reports."""

    arn: str
    profile_id: str
    last_updated: int


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Lifetimes of delivered credentials (``[imds]`` / ``[container]``)."""

    instance_seconds: int = 3600
    instance_renew_before: int = 1800
    container_seconds: int = 3600
    container_renew_before: int = CONTAINER_RENEW_BEFORE_SECONDS

    @classmethod
    def from_config(cls, imds: ImdsConfig, container: ContainerConfig) -> DeliverySettings:
        """The settings the configuration gives."""
        return cls(
            instance_seconds=imds.session_seconds,
            instance_renew_before=imds.renew_before_seconds,
            container_seconds=container.session_seconds,
            container_renew_before=min(
                CONTAINER_RENEW_BEFORE_SECONDS, container.session_seconds // 2
            ),
        )


class Minter(Protocol):
    """Mints a session of a role whose trust the caller has already checked (``StsService``)."""

    def mint_role_session(
        self, role: Doc, session_name: str, duration: int, *, caller_arn: str
    ) -> Awaitable[IssuedSession]:
        """See :meth:`broker.service.sts.StsService.mint_role_session`."""
        ...


@dataclass(frozen=True, slots=True)
class _Failure:
    """A resolution that ended in a client-visible error (re-raised fresh each time)."""

    kind: type[BrokerError]
    message: str

    def error(self) -> BrokerError:
        return self.kind(self.message)


@dataclass(frozen=True, slots=True)
class _Resolution:
    """Binding -> role, with the trust decision, valid for one account generation."""

    generation: int
    role: Doc | None
    stamp: bytes
    profile: Doc | None = None
    failure: _Failure | None = None

    @property
    def role_key(self) -> str:
        assert self.role is not None
        return f"{self.role['arn']}#{self.role['id']}"


@dataclass(slots=True)
class _Entry:
    """Cached credentials of one binding."""

    creds: DeliveredCredentials
    role_key: str
    stamp: bytes
    renew_at: float
    checked_generation: int
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class _Target:
    """What to mint for a binding: the channel's service, session name, lifetime, caller."""

    key: str
    account_id: str
    service: str
    session_name: str
    seconds: int
    renew_before: int
    caller_arn: str
    channel: str


class DeliveryService:
    """Resolves bindings to roles and hands out cached, renewed role credentials."""

    def __init__(
        self,
        store: Store,
        minter: Minter,
        generations: Generations,
        clock: Clock,
        settings: DeliverySettings | None = None,
    ) -> None:
        self._store = store
        self._minter = minter
        self._generations = generations
        self._clock = clock
        self.settings = settings or DeliverySettings()
        self._records = RecordCache(store, generations)
        self._resolved: dict[str, _Resolution] = {}
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[DeliveredCredentials]] = {}
        self._trust: OrderedDict[str, CompiledPolicy] = OrderedDict()
        self.mints = 0
        """How many sessions this service has minted (for metrics and tests)."""

    # -- public use cases -------------------------------------------------------------------

    async def instance_role_name(self, binding: InstanceBinding) -> str:
        """The name of the role in the instance's profile (``security-credentials/``)."""
        res = await self._resolve_instance(binding)
        if res.role is None:
            assert res.failure is not None
            raise res.failure.error()
        return str(res.role["name"])

    async def instance_profile(self, binding: InstanceBinding) -> InstanceProfileInfo:
        """The instance profile of ``binding`` (``iam/info``); 404 when it has no role."""
        res = await self._resolve_instance(binding)
        if res.profile is None or res.role is None:
            assert res.failure is not None
            raise res.failure.error()
        entry = self._cache.get(binding.key)
        updated = entry.creds.issued_at if entry is not None else int(self._now())
        return InstanceProfileInfo(str(res.profile["arn"]), str(res.profile["id"]), updated)

    async def instance_credentials(
        self, binding: InstanceBinding, role_name: str | None = None
    ) -> DeliveredCredentials:
        """Credentials of the role in the instance's profile (``security-credentials/ROLE``).

        ``role_name`` must be that role's name, else ``NoSuchEntity``. Raises
        ``AccessDenied`` when the role does not trust ``ec2.amazonaws.com`` and
        ``ServiceUnavailable`` when nothing usable can be served.
        """
        res = await self._resolve_instance(binding)
        if res.failure is not None:
            raise res.failure.error()
        assert res.role is not None
        if role_name is not None and role_name != res.role["name"]:
            raise NoSuchEntityError(f"The instance has no role named {role_name}.")
        settings = self.settings
        target = _Target(
            key=binding.key,
            account_id=binding.account_id,
            service=EC2_SERVICE,
            session_name=binding.instance_id,
            seconds=settings.instance_seconds,
            renew_before=settings.instance_renew_before,
            caller_arn=binding.instance_arn,
            channel="imds",
        )
        return await self._credentials(target, res)

    async def container_credentials(self, mapping: ContainerMapping) -> DeliveredCredentials:
        """Credentials of the mapping's role, assumed as ``ecs-tasks.amazonaws.com``."""
        res = await self._resolve_role(mapping.key, mapping.account_id, mapping.role_arn)
        if res.failure is not None:
            raise res.failure.error()
        settings = self.settings
        target = _Target(
            key=mapping.key,
            account_id=mapping.account_id,
            service=ECS_TASKS_SERVICE,
            session_name=mapping.name,
            seconds=settings.container_seconds,
            renew_before=settings.container_renew_before,
            caller_arn=ECS_TASKS_SERVICE,
            channel="container",
        )
        return await self._credentials(target, res)

    def forget(self, keep: Sequence[str]) -> None:
        """Drop cached state of bindings whose keys are not in ``keep`` (after a reload)."""
        wanted = set(keep)
        for table in (self._resolved, self._cache):
            for key in [k for k in table if k not in wanted]:
                del table[key]

    # -- resolution -------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def _generation(self, ns: str) -> int:
        try:
            return await self._generations.watch(ns)
        except StoreUnavailable:
            raise UnavailableError() from None

    async def _resolve_instance(self, binding: InstanceBinding) -> _Resolution:
        return await self._resolve(
            binding.key,
            binding.account_id,
            lambda gen: self._read_instance(binding, gen),
        )

    async def _resolve_role(self, key: str, account: str, role_arn: str) -> _Resolution:
        return await self._resolve(key, account, lambda gen: self._read_role(role_arn, gen))

    async def _resolve(
        self, key: str, account: str, read: Callable[[int], Awaitable[_Resolution]]
    ) -> _Resolution:
        """The binding's resolution for the current generation (stale one if the store is down)."""
        last = self._resolved.get(key)
        try:
            gen = await self._generation(account)
            if last is not None and last.generation == gen:
                return last
            res = await read(gen)
        except UnavailableError:
            if last is None:
                raise
            return last
        self._resolved[key] = res
        return res

    async def _read_instance(self, binding: InstanceBinding, gen: int) -> _Resolution:
        ns = binding.account_id
        profile = await self._records.get(ns, f"iprofile/{binding.profile_name.lower()}")
        if profile is None or profile["arn"] != binding.profile_arn:
            return _Resolution(
                gen,
                None,
                b"",
                failure=_Failure(
                    NoSuchEntityError,
                    f"Instance profile {binding.profile_arn} cannot be found.",
                ),
            )
        roles = list(profile.get("roles") or [])
        role = await self._records.get(ns, f"role/{roles[0]}") if roles else None
        if role is None:
            return _Resolution(
                gen,
                None,
                b"",
                profile,
                _Failure(NoSuchEntityError, "The instance profile has no role."),
            )
        return self._with_trust(gen, role, EC2_SERVICE, binding.instance_id, profile)

    async def _read_role(self, role_arn: str, gen: int) -> _Resolution:
        arn = parse_arn(role_arn)
        assert arn is not None
        name = arn.resource.rsplit("/", 1)[1]
        role = await self._records.get(arn.account, f"role/{name.lower()}")
        if role is None or role["arn"] != role_arn:
            return _Resolution(
                gen, None, b"", failure=_Failure(NoSuchEntityError, f"Role {role_arn} not found.")
            )
        return self._with_trust(gen, role, ECS_TASKS_SERVICE, "", None)

    def _with_trust(
        self, gen: int, role: Doc, service: str, session_name: str, profile: Doc | None
    ) -> _Resolution:
        if not self.trusts(role, service, session_name or None):
            log.info("role %s does not trust %s", role["arn"], service)
            failure = _Failure(
                AccessDeniedError,
                f"{service} is not authorized to perform: sts:AssumeRole on resource: "
                f"{role['arn']}",
            )
            return _Resolution(gen, role, encode(role), profile, failure)
        return _Resolution(gen, role, encode(role), profile)

    def _compiled_trust(self, text: str) -> CompiledPolicy:
        hit = self._trust.get(text)
        if hit is not None:
            self._trust.move_to_end(text)
            return hit
        compiled = compile_policy(parse_policy(text, PolicyKind.TRUST))
        self._trust[text] = compiled
        if len(self._trust) > TRUST_CACHE_SIZE:
            self._trust.popitem(last=False)
        return compiled

    def trusts(self, role: Doc, service: str, session_name: str | None = None) -> bool:
        """Whether ``role``'s trust policy lets ``service`` call ``sts:AssumeRole`` now."""
        now = self._clock.now()
        keys: dict[str, ContextValue] = {
            "aws:PrincipalServiceName": service,
            "aws:CurrentTime": iso8601(now),
            "aws:EpochTime": str(int(now.timestamp())),
        }
        if session_name:
            keys["sts:RoleSessionName"] = session_name
        ctx = RequestContext(
            action="sts:AssumeRole",
            resource=str(role["arn"]),
            principal_arn="",
            principal_account="",
            keys=normalize_keys(keys),
            caller=CallerKind.SERVICE,
            service=service,
        )
        compiled = self._compiled_trust(str(role["trust"]))
        return evaluate_trust(ctx, ("trust", compiled)).decision is Decision.ALLOW

    # -- credentials ------------------------------------------------------------------------

    async def _revoked(self, account: str, creds: DeliveredCredentials) -> bool:
        try:
            return await self._records.get(account, f"revoked/{creds.session_id}") is not None
        except UnavailableError:
            return False  # judged again once the store answers

    def _fresh(self, entry: _Entry | None, res: _Resolution, now: float) -> bool:
        return (
            entry is not None
            and entry.role_key == res.role_key
            and entry.stamp == res.stamp
            and entry.checked_generation == res.generation
            and now < entry.renew_at
        )

    async def _credentials(self, target: _Target, res: _Resolution) -> DeliveredCredentials:
        entry = self._cache.get(target.key)
        if (
            entry is not None
            and entry.checked_generation != res.generation
            and entry.role_key == res.role_key
            and entry.stamp == res.stamp
        ):
            if await self._revoked(target.account_id, entry.creds):
                log.info("delivered session %s was revoked", entry.creds.session_id)
                self._cache.pop(target.key, None)
            else:
                entry.checked_generation = res.generation
            entry = self._cache.get(target.key)
        now = self._now()
        if entry is not None and self._fresh(entry, res, now):
            return entry.creds
        if (
            entry is not None
            and entry.role_key == res.role_key
            and self._clock.monotonic() < entry.retry_after
            and self._servable(entry, now)
        ):
            return entry.creds
        flight = (target.key, res.role_key)
        task = self._inflight.get(flight)
        if task is None:
            task = asyncio.ensure_future(self._renew(target, res))
            self._inflight[flight] = task
            task.add_done_callback(lambda t: self._landed(flight, t))
        try:
            return await asyncio.shield(task)
        except (UnavailableError, ThrottledError):
            entry = self._cache.get(target.key)
            if (
                entry is not None
                and entry.role_key == res.role_key
                and self._servable(entry, self._now())
            ):
                return entry.creds
            raise

    def _landed(self, flight: tuple[str, str], task: asyncio.Task[DeliveredCredentials]) -> None:
        if self._inflight.get(flight) is task:
            del self._inflight[flight]
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is never reported

    def _servable(self, entry: _Entry, now: float) -> bool:
        """Whether cached credentials may still be handed out while renewal fails (F4)."""
        return entry.creds.expires_at - now > SERVE_STALE_UNTIL_SECONDS

    async def _renew(self, target: _Target, res: _Resolution) -> DeliveredCredentials:
        """Mint new credentials for ``target`` (one task per binding and role at a time)."""
        entry = self._cache.get(target.key)
        if entry is not None and self._fresh(entry, res, self._now()):
            return entry.creds  # a mint that finished meanwhile already renewed them
        assert res.role is not None
        role = res.role
        if not self.trusts(role, target.service, target.session_name):
            raise AccessDeniedError(
                f"{target.service} is not authorized to perform: sts:AssumeRole on resource: "
                f"{role['arn']}"
            )
        max_session = int(role["max_session"])
        seconds = min(target.seconds, max_session)
        # A lifetime cut down to the role's maximum keeps the configured proportion of reuse.
        renew_before = target.renew_before * seconds // target.seconds
        try:
            issued = await self._minter.mint_role_session(
                role, target.session_name, seconds, caller_arn=target.caller_arn
            )
        except StoreUnavailable:
            if entry is not None:
                entry.retry_after = self._clock.monotonic() + MINT_RETRY_SECONDS
            raise UnavailableError() from None
        except (UnavailableError, ThrottledError):
            if entry is not None:
                entry.retry_after = self._clock.monotonic() + MINT_RETRY_SECONDS
            raise
        self.mints += 1
        metrics.credentials_issued(target.channel)
        claims = issued.claims
        creds = DeliveredCredentials(
            access_key_id=claims.access_key_id,
            secret_access_key=claims.secret_access_key,
            token=issued.token,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
            role_arn=str(role["arn"]),
            role_name=str(role["name"]),
            account_id=claims.account_id,
            session_id=claims.session_id,
        )
        self._cache[target.key] = _Entry(
            creds=creds,
            role_key=res.role_key,
            stamp=res.stamp,
            renew_at=float(claims.expires_at - renew_before),
            checked_generation=res.generation,
        )
        log.info(
            "delivered channel=%s binding=%s role=%s access_key=%s expiration=%s",
            target.channel,
            target.key,
            creds.role_arn,
            key_hint(creds.access_key_id),
            creds.expiration,
        )
        return creds
