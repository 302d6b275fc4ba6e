"""Configuration: one typed, frozen ``BrokerConfig`` loaded once at start-up.

Precedence (DESIGN section 10): command-line flag > environment > config file > built-in
default. ``broker serve`` without ``--config`` (or ``BROKER_CONFIG``) uses the built-in
defaults. Environment overrides are ``BROKER_<SECTION>_<KEY>``; an unknown ``BROKER_*``
variable is logged at WARNING and ignored, while an unknown key or a bad value in a file
stops start-up with a :class:`ConfigError` that lists every problem.

The standalone variables ``BROKER_CONFIG``, ``BROKER_MASTER_KEY``,
``BROKER_ROOT_ACCESS_KEY_ID`` and ``BROKER_ROOT_SECRET_ACCESS_KEY`` are read here too, and
nowhere else. This module imports nothing from ``broker``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_CLOCK_SKEW_SECONDS = 900
DEFAULT_FLUSH_SECONDS = 2.0
DEFAULT_STORE_TIMEOUT_SECONDS = 0.5
DEFAULT_GENERATION_POLL_SECONDS = 0.25
DEFAULT_METRICS_FLUSH_SECONDS = 1.0
"""How often each of several workers publishes its cache and process metrics."""
DEFAULT_HASH_TIME_COST = 2
DEFAULT_HASH_MEMORY_KIB = 19 * 1024
"""Argon2id password hashing defaults (spec/security.md E4: t >= 2, m >= 19 MiB, p = 1)."""
DEFAULT_SIGNIN_SESSION_SECONDS = 43200
SIGNIN_SESSION_MIN_SECONDS, SIGNIN_SESSION_MAX_SECONDS = 900, 129600
"""A sign-in session is a GetSessionToken-style session: 15 minutes to 36 hours."""

SAFE_JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Asymmetric signature algorithms an identity token may use (never ``none`` or HMAC)."""

STANDALONE_ENV = frozenset(
    {
        "BROKER_CONFIG",
        "BROKER_MASTER_KEY",
        "BROKER_ROOT_ACCESS_KEY_ID",
        "BROKER_ROOT_SECRET_ACCESS_KEY",
    }
)


class ConfigError(Exception):
    """Raised when configuration is invalid; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class Secret:
    """A secret string whose ``repr`` and ``str`` never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is used."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: the API listener."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: where state lives."""

    backend: str = "sqlite"
    redis_url: str = ""
    data_dir: str = "data"
    timeout_seconds: float = DEFAULT_STORE_TIMEOUT_SECONDS
    generation_poll_seconds: float = DEFAULT_GENERATION_POLL_SECONDS


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    """``[bootstrap]``: what an empty store is given on first start."""

    account_id: str = ""


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """``[security]``: key material and request limits."""

    master_key_file: str = ""
    clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    restrict_root_access_keys: bool = False


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: issuance throttling (used by STS)."""

    issue_rps_per_principal: float = 100.0
    issue_burst: int = 200
    issue_rps_per_role: float = 500.0
    failed_auth_rps_per_ip: float = 0.0


@dataclass(frozen=True, slots=True)
class RevocationConfig:
    """``[revocation]``: how revocations and cache invalidations spread."""

    propagation_seconds: float = 1.0
    max_staleness_seconds: float = 300.0
    fail_closed: bool = True


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """``[tracking]``: write-behind of last-used / last-accessed data."""

    flush_seconds: float = DEFAULT_FLUSH_SECONDS


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """``[federation]``: web-identity (OIDC) providers."""

    allow_http_issuers: bool = False
    jwks_cache_seconds: int = 3600
    jwks_min_refresh_seconds: int = 60
    jwks_stale_max_seconds: int = 86400
    leeway_seconds: int = 60
    ca_bundle: str = ""
    algorithms: tuple[str, ...] = (
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    )


@dataclass(frozen=True, slots=True)
class ImdsConfig:
    """``[imds]``: the EC2-style instance metadata listener."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8169
    v1_enabled: bool = False
    hop_limit: int = 1
    session_seconds: int = 3600
    renew_before_seconds: int = 1800
    instances: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """``[container]``: the ECS-style container credentials listener."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8170
    session_seconds: int = 3600
    mappings: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """``[audit]``: the append-only audit log."""

    path: str = ""
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 5
    stdout: bool = False


@dataclass(frozen=True, slots=True)
class SigninConfig:
    """``[signin]``: console sign-in protection, password hashing and sign-in sessions."""

    max_failures: int = 5
    lockout_seconds: int = 300
    hash_time_cost: int = DEFAULT_HASH_TIME_COST
    hash_memory_kib: int = DEFAULT_HASH_MEMORY_KIB
    hash_parallelism: int = 1
    session_seconds: int = DEFAULT_SIGNIN_SESSION_SECONDS


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: Prometheus metrics at ``GET /metrics`` on the API listener."""

    enabled: bool = True
    flush_seconds: float = DEFAULT_METRICS_FLUSH_SECONDS


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """The whole configuration. Built by :func:`load_config`; never mutated."""

    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    revocation: RevocationConfig = field(default_factory=RevocationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    imds: ImdsConfig = field(default_factory=ImdsConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    signin: SigninConfig = field(default_factory=SigninConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Standalone values (environment only).
    master_key: Secret | None = None
    root_access_key_id: str = ""
    root_secret_access_key: Secret | None = None
    source: str = "defaults"

    @property
    def data_dir(self) -> Path:
        """The data directory (SQLite file, generated master key, root credentials)."""
        return Path(self.store.data_dir)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "store": StoreConfig,
    "bootstrap": BootstrapConfig,
    "security": SecurityConfig,
    "limits": LimitsConfig,
    "revocation": RevocationConfig,
    "tracking": TrackingConfig,
    "federation": FederationConfig,
    "imds": ImdsConfig,
    "container": ContainerConfig,
    "audit": AuditConfig,
    "signin": SigninConfig,
    "metrics": MetricsConfig,
}


def _section_class(name: str) -> type[Any]:
    return _SECTIONS[name]


SECTION_NAMES = tuple(_SECTIONS)


def _field_default(cls: type[Any], name: str) -> Any:
    for f in fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(name)


def _coerce(where: str, default: Any, value: Any, problems: list[str]) -> Any:
    """Convert ``value`` (from TOML or an env string) to the type of ``default``."""
    from_env = isinstance(value, str)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in {"1", "true", "yes", "on"}:
            return True
        if from_env and value.lower() in {"0", "false", "no", "off"}:
            return False
        problems.append(f"{where}: expected a boolean, got {value!r}")
        return default
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env:
            try:
                return int(value)
            except ValueError:
                pass
        problems.append(f"{where}: expected an integer, got {value!r}")
        return default
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        problems.append(f"{where}: expected a number, got {value!r}")
        return default
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        problems.append(f"{where}: expected a string, got {value!r}")
        return default
    if isinstance(default, tuple):
        if from_env:
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list):
            if all(isinstance(v, str) for v in value):
                return tuple(value)
            if all(isinstance(v, dict) for v in value):
                return tuple(dict(v) for v in value)
        problems.append(f"{where}: expected a list, got {value!r}")
        return default
    problems.append(f"{where}: unsupported value {value!r}")  # pragma: no cover
    return default


def _apply_table(
    cfg: BrokerConfig, table: Mapping[str, Any], origin: str, problems: list[str]
) -> BrokerConfig:
    for section, values in table.items():
        if section not in _SECTIONS:
            problems.append(f"{origin}: unknown section [{section}]")
            continue
        if not isinstance(values, dict):
            problems.append(f"{origin}: [{section}] must be a table")
            continue
        cls = _section_class(section)
        known = {f.name for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                problems.append(f"{origin}: unknown key {key!r} in [{section}]")
                continue
            where = f"{origin}: [{section}] {key}"
            changes[key] = _coerce(where, _field_default(cls, key), value, problems)
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
    return cfg


def _env_overrides(environ: Mapping[str, str], problems: list[str]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith("BROKER_") or name in STANDALONE_ENV:
            continue
        rest = name[len("BROKER_") :]
        section, _, key = rest.partition("_")
        section, key = section.lower(), key.lower()
        if section in _SECTIONS and key in {f.name for f in fields(_section_class(section))}:
            table.setdefault(section, {})[key] = value
        else:
            log.warning("ignoring unknown environment variable %s", name)
    return table


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> BrokerConfig:
    """Build the configuration: defaults, then the file, then the environment, then flags.

    ``path`` (or ``BROKER_CONFIG``) names a TOML file; without either, built-in defaults are
    used. ``overrides`` holds command-line flag values as ``{section: {key: value}}``.
    Raises :class:`ConfigError` listing every problem.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    cfg = BrokerConfig()
    if path is None and env.get("BROKER_CONFIG"):
        path = env["BROKER_CONFIG"]
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError([f"{p}: no such file"]) from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError([f"{p}: {exc}"]) from None
        cfg = _apply_table(cfg, data, str(p), problems)
        cfg = replace(cfg, source=str(p))
    env_table = _env_overrides(env, problems)
    cfg = _apply_table(cfg, env_table, "environment", problems)
    if overrides:
        flag_table = {
            s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()
        }
        cfg = _apply_table(cfg, flag_table, "command line", problems)
    master = env.get("BROKER_MASTER_KEY", "")
    root_secret = env.get("BROKER_ROOT_SECRET_ACCESS_KEY", "")
    cfg = replace(
        cfg,
        master_key=Secret(master) if master else None,
        root_access_key_id=env.get("BROKER_ROOT_ACCESS_KEY_ID", ""),
        root_secret_access_key=Secret(root_secret) if root_secret else None,
    )
    problems.extend(validate(cfg))
    if problems:
        raise ConfigError(problems)
    return cfg


def validate(cfg: BrokerConfig) -> list[str]:
    """Return every semantic problem of ``cfg`` (empty when it is usable)."""
    checks: list[tuple[bool, str]] = [
        (not 0 <= cfg.server.port <= 65535, "[server] port must be between 0 and 65535"),
        (cfg.server.workers < 1, "[server] workers must be at least 1"),
        (
            cfg.store.backend not in {"sqlite", "redis"},
            f"[store] backend must be 'sqlite' or 'redis', not {cfg.store.backend!r}",
        ),
        (
            cfg.store.backend == "redis" and not cfg.store.redis_url,
            "[store] redis_url is required when backend = 'redis'",
        ),
        (
            bool(cfg.store.redis_url)
            and not cfg.store.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "[store] redis_url must start with redis://, rediss:// or unix://",
        ),
        (cfg.store.timeout_seconds <= 0, "[store] timeout_seconds must be positive"),
        (
            bool(cfg.bootstrap.account_id)
            and not (len(cfg.bootstrap.account_id) == 12 and cfg.bootstrap.account_id.isdigit()),
            "[bootstrap] account_id must be 12 digits",
        ),
        (
            not 60 <= cfg.security.clock_skew_seconds <= 3600,
            "[security] clock_skew_seconds must be between 60 and 3600",
        ),
        (
            not 1024 <= cfg.security.max_body_bytes <= 64 * 1024 * 1024,
            "[security] max_body_bytes must be between 1024 and 67108864",
        ),
        (cfg.tracking.flush_seconds <= 0, "[tracking] flush_seconds must be positive"),
        (
            not 0 <= cfg.federation.leeway_seconds <= 300,
            "[federation] leeway_seconds must be between 0 and 300",
        ),
        (
            min(
                cfg.federation.jwks_cache_seconds,
                cfg.federation.jwks_min_refresh_seconds,
                cfg.federation.jwks_stale_max_seconds,
            )
            <= 0,
            "[federation] jwks_cache_seconds, jwks_min_refresh_seconds and "
            "jwks_stale_max_seconds must be positive",
        ),
        (
            not cfg.federation.algorithms
            or not set(cfg.federation.algorithms) <= SAFE_JWT_ALGORITHMS,
            "[federation] algorithms must be a non-empty subset of "
            + ", ".join(sorted(SAFE_JWT_ALGORITHMS)),
        ),
        (
            cfg.revocation.max_staleness_seconds <= 0,
            "[revocation] max_staleness_seconds must be positive",
        ),
        (
            min(cfg.limits.issue_rps_per_principal, cfg.limits.issue_rps_per_role) < 0
            or cfg.limits.issue_burst < 1,
            "[limits] issue rates must be >= 0 and issue_burst >= 1",
        ),
        (
            cfg.signin.max_failures < 1 or cfg.signin.lockout_seconds < 1,
            "[signin] max_failures and lockout_seconds must be at least 1",
        ),
        (
            cfg.signin.hash_time_cost < 1
            or cfg.signin.hash_parallelism < 1
            or cfg.signin.hash_memory_kib < 8 * max(cfg.signin.hash_parallelism, 1),
            "[signin] hash_time_cost and hash_parallelism must be at least 1 and "
            "hash_memory_kib at least 8 per lane",
        ),
        (
            not SIGNIN_SESSION_MIN_SECONDS
            <= cfg.signin.session_seconds
            <= SIGNIN_SESSION_MAX_SECONDS,
            f"[signin] session_seconds must be between {SIGNIN_SESSION_MIN_SECONDS} and "
            f"{SIGNIN_SESSION_MAX_SECONDS}",
        ),
        (
            bool(cfg.root_access_key_id) != (cfg.root_secret_access_key is not None),
            "BROKER_ROOT_ACCESS_KEY_ID and BROKER_ROOT_SECRET_ACCESS_KEY must be set together",
        ),
        (cfg.metrics.flush_seconds <= 0, "[metrics] flush_seconds must be positive"),
    ]
    return [message for bad, message in checks if bad]
