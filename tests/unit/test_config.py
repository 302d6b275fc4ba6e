"""Configuration loading (``broker.config``): precedence, strictness, redaction, shipped file.

Precedence is command-line flag > environment > config file > built-in default (DESIGN
section 10). Unknown file keys and bad values stop start-up with one ``ConfigError`` listing
every problem; unknown ``BROKER_*`` variables are warned about and ignored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from broker.config import (
    DEFAULT_CLOCK_SKEW_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    SECTION_NAMES,
    BrokerConfig,
    ConfigError,
    Secret,
    load_config,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config.toml"

FILE_PORT, ENV_PORT, FLAG_PORT = 1111, 2222, 3333
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the value under test, nothing binds here
SECRET_VALUE = "c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1uZXZlci1zaG93"
ROOT_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _write(tmp_path: Path, text: str, name: str = "broker.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults and precedence -------------------------------------------------------------


def test_no_file_no_env_gives_the_built_in_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg == BrokerConfig()
    assert cfg.source == "defaults"
    assert cfg.server.port == DEFAULT_PORT
    assert cfg.server.host == "127.0.0.1"
    assert cfg.store.backend == "sqlite"
    assert cfg.security.clock_skew_seconds == DEFAULT_CLOCK_SKEW_SECONDS
    assert cfg.security.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert cfg.master_key is None


@pytest.mark.parametrize(
    ("in_file", "in_env", "in_flag", "expected"),
    [
        (False, False, False, DEFAULT_PORT),
        (True, False, False, FILE_PORT),
        (False, True, False, ENV_PORT),
        (False, False, True, FLAG_PORT),
        (True, True, False, ENV_PORT),
        (True, False, True, FLAG_PORT),
        (False, True, True, FLAG_PORT),
        (True, True, True, FLAG_PORT),
    ],
)
def test_flag_beats_env_beats_file_beats_default(
    tmp_path: Path, in_file: bool, in_env: bool, in_flag: bool, expected: int
) -> None:
    path = _write(tmp_path, f"[server]\nport = {FILE_PORT}\n") if in_file else None
    env = {"BROKER_SERVER_PORT": str(ENV_PORT)} if in_env else {}
    overrides = {"server": {"port": FLAG_PORT}} if in_flag else None
    cfg = load_config(path, environ=env, overrides=overrides)
    assert cfg.server.port == expected


def test_precedence_is_per_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[server]\nhost = "10.0.0.1"\nport = 1111\nworkers = 3\n'
        "[revocation]\nfail_closed = false\n",
    )
    env = {"BROKER_SERVER_PORT": "2222", "BROKER_REVOCATION_FAIL_CLOSED": "true"}
    cfg = load_config(path, environ=env, overrides={"server": {"workers": 5}})
    assert cfg.server.host == "10.0.0.1"  # file only
    assert cfg.server.port == ENV_PORT  # env over file
    assert cfg.server.workers == 5  # flag over file
    assert cfg.revocation.fail_closed is True  # env over file
    assert cfg.store.backend == "sqlite"  # default


def test_unset_flags_do_not_hide_lower_layers(tmp_path: Path) -> None:
    path = _write(tmp_path, f"[server]\nport = {FILE_PORT}\n")
    cfg = load_config(
        path,
        environ={"BROKER_SERVER_HOST": ALL_INTERFACES},
        overrides={"server": {"port": None, "host": None, "workers": None}},
    )
    assert cfg.server.port == FILE_PORT
    assert cfg.server.host == ALL_INTERFACES


@pytest.mark.parametrize(
    ("name", "value", "section", "key", "expected"),
    [
        ("BROKER_SERVER_WORKERS", "4", "server", "workers", 4),
        ("BROKER_STORE_BACKEND", "redis", "store", "backend", "redis"),
        ("BROKER_STORE_REDIS_URL", "redis://h:1/0", "store", "redis_url", "redis://h:1/0"),
        ("BROKER_SECURITY_CLOCK_SKEW_SECONDS", "120", "security", "clock_skew_seconds", 120),
        ("BROKER_TRACKING_FLUSH_SECONDS", "0.5", "tracking", "flush_seconds", 0.5),
        ("BROKER_REVOCATION_FAIL_CLOSED", "false", "revocation", "fail_closed", False),
        ("BROKER_FEDERATION_ALLOW_HTTP_ISSUERS", "yes", "federation", "allow_http_issuers", True),
        ("BROKER_FEDERATION_ALGORITHMS", "RS256, ES384", "federation", "algorithms",
         ("RS256", "ES384")),
    ],
)  # fmt: skip
def test_env_override_names_and_types(
    name: str, value: str, section: str, key: str, expected: object
) -> None:
    env = {name: value}
    if section == "store" and key == "backend":
        env["BROKER_STORE_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    cfg = load_config(environ=env)
    assert getattr(getattr(cfg, section), key) == expected


def test_broker_config_env_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, f"[server]\nport = {FILE_PORT}\n")
    cfg = load_config(environ={"BROKER_CONFIG": str(path)})
    assert cfg.server.port == FILE_PORT
    assert cfg.source == str(path)


def test_explicit_path_beats_broker_config_env(tmp_path: Path) -> None:
    named = _write(tmp_path, "[server]\nport = 1111\n", "named.toml")
    from_env = _write(tmp_path, "[server]\nport = 2222\n", "env.toml")
    cfg = load_config(named, environ={"BROKER_CONFIG": str(from_env)})
    assert cfg.server.port == FILE_PORT
    assert cfg.source == str(named)


def _check_config(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    done = subprocess.run(
        [sys.executable, "-m", "broker", "check-config", *args],
        env={**base, **env, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, cwd=str(REPO), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_cli_flag_beats_env_beats_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[store]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:6379/0"\n')
    assert _check_config(["--config", str(path)], {})["store"] == "redis"
    env = {"BROKER_STORE_BACKEND": "sqlite"}
    assert _check_config(["--config", str(path)], env)["store"] == "sqlite"
    assert _check_config(["--config", str(path), "--store", "redis"], env)["store"] == "redis"


def test_cli_rejects_a_bad_file_with_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nprot = 1\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    done = subprocess.run(
        [sys.executable, "-m", "broker", "check-config", "--config", str(path)],
        env={**base, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, cwd=str(REPO), check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "prot" in done.stderr


# -- strictness ---------------------------------------------------------------------------


def test_unknown_file_key_stops_start_up_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nport = 8080\nlisten_backlog = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert any("listen_backlog" in p and "server" in p for p in info.value.problems)
    assert "listen_backlog" in str(info.value)


def test_unknown_file_section_stops_start_up_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "[servre]\nport = 8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert any("servre" in p for p in info.value.problems)


def test_missing_or_unparsable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError):
        load_config(_write(tmp_path, "[server\nport = 1\n"), environ={})


@pytest.mark.parametrize(
    "name",
    ["BROKER_SERVER_PROT", "BROKER_NOSUCH_THING", "BROKER_SERVERPORT", "BROKER_IMDS_INSTANCE"],
)
def test_unknown_broker_env_var_is_warned_and_ignored(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="broker.config"):
        cfg = load_config(environ={name: "9999"})
    assert cfg == BrokerConfig()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert name in warnings[0].getMessage()


def test_other_env_vars_and_standalone_vars_are_not_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {
        "PATH": "/usr/bin",
        "BROKERAGE_PORT": "1",
        "BROKER_CONFIG": "",
        "BROKER_MASTER_KEY": SECRET_VALUE,
        "BROKER_ROOT_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "BROKER_ROOT_SECRET_ACCESS_KEY": ROOT_SECRET,
        "BROKER_SERVER_PORT": str(ENV_PORT),
    }
    with caplog.at_level(logging.DEBUG, logger="broker.config"):
        cfg = load_config(environ=env)
    assert cfg.server.port == ENV_PORT
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_bad_values_are_listed_together(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[server]\nport = "high"\nworkers = 0\n'
        '[store]\nbackend = "mongo"\n'
        "[security]\nclock_skew_seconds = 5\n"
        '[revocation]\nfail_closed = "sometimes"\n'
        '[bootstrap]\naccount_id = "12"\n',
    )
    env = {"BROKER_TRACKING_FLUSH_SECONDS": "soon"}
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env)
    problems = info.value.problems
    expected = ["port", "workers", "backend", "clock_skew_seconds", "fail_closed",
                "account_id", "flush_seconds"]  # fmt: skip
    for word in expected:
        assert any(word in p for p in problems), (word, problems)
    assert len(problems) >= len(expected)
    message = str(info.value)
    assert all(word in message for word in expected)


def test_bad_flag_value_is_reported_as_from_the_command_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, overrides={"server": {"port": 70000}})
    assert any("port" in p for p in info.value.problems)


def test_redis_backend_needs_a_url() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"BROKER_STORE_BACKEND": "redis"})
    assert any("redis_url" in p for p in info.value.problems)
    with pytest.raises(ConfigError):
        load_config(environ={"BROKER_STORE_REDIS_URL": "http://127.0.0.1:6379"})


# -- standalone variables and secrets -----------------------------------------------------


def test_standalone_variables_are_read_verbatim() -> None:
    env = {
        "BROKER_MASTER_KEY": SECRET_VALUE,
        "BROKER_ROOT_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "BROKER_ROOT_SECRET_ACCESS_KEY": ROOT_SECRET,
    }
    cfg = load_config(environ=env)
    assert cfg.master_key is not None and cfg.master_key.reveal() == SECRET_VALUE
    assert cfg.root_access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert cfg.root_secret_access_key is not None
    assert cfg.root_secret_access_key.reveal() == ROOT_SECRET


def test_standalone_variables_are_not_section_overrides() -> None:
    cfg = load_config(environ={"BROKER_MASTER_KEY": SECRET_VALUE})
    assert dataclasses.replace(cfg, master_key=None) == BrokerConfig()


@pytest.mark.parametrize(
    "env",
    [
        {"BROKER_ROOT_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"},
        {"BROKER_ROOT_SECRET_ACCESS_KEY": ROOT_SECRET},
    ],
)
def test_root_key_variables_go_together(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ=env)
    assert any("BROKER_ROOT_ACCESS_KEY_ID" in p for p in info.value.problems)


def test_empty_standalone_variables_count_as_unset() -> None:
    env = {"BROKER_MASTER_KEY": "", "BROKER_ROOT_ACCESS_KEY_ID": "",
           "BROKER_ROOT_SECRET_ACCESS_KEY": ""}  # fmt: skip
    cfg = load_config(environ=env)
    assert cfg.master_key is None
    assert cfg.root_access_key_id == ""
    assert cfg.root_secret_access_key is None


def test_secret_never_shows_its_value() -> None:
    secret = Secret(SECRET_VALUE)
    assert secret.reveal() == SECRET_VALUE
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}"):
        assert SECRET_VALUE not in shown
        assert "*" in shown
    assert secret == Secret(SECRET_VALUE)
    assert secret != Secret("other")


def test_config_repr_redacts_the_master_key_and_root_secret() -> None:
    env = {
        "BROKER_MASTER_KEY": SECRET_VALUE,
        "BROKER_ROOT_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "BROKER_ROOT_SECRET_ACCESS_KEY": ROOT_SECRET,
    }
    cfg = load_config(environ=env)
    for shown in (repr(cfg), str(cfg)):
        assert SECRET_VALUE not in shown
        assert ROOT_SECRET not in shown


def test_config_is_frozen() -> None:
    cfg = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


# -- the shipped config.toml --------------------------------------------------------------


def test_shipped_config_loads_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    assert SHIPPED.is_file(), "config.toml must ship at the repository root"
    with caplog.at_level(logging.WARNING, logger="broker.config"):
        cfg = load_config(SHIPPED, environ={})
    assert caplog.records == []
    assert cfg.source == str(SHIPPED)


def test_shipped_config_repeats_the_defaults() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    cfg = load_config(SHIPPED, environ={})
    defaults = BrokerConfig()
    assert set(data) <= set(SECTION_NAMES)
    for section, table in data.items():
        for key in table:
            got = getattr(getattr(cfg, section), key)
            want = getattr(getattr(defaults, section), key)
            assert got == want, f"config.toml [{section}] {key} = {got!r}, default is {want!r}"
    assert dataclasses.replace(cfg, source=defaults.source) == defaults


def test_shipped_config_names_every_key() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    defaults = BrokerConfig()
    missing = [
        f"[{section}] {f.name}"
        for section in SECTION_NAMES
        for f in dataclasses.fields(getattr(defaults, section))
        if f.name not in data.get(section, {})
    ]
    assert missing == []


def test_federation_and_limits_values_are_checked() -> None:
    from broker.config import ConfigError, load_config

    bad = {
        "BROKER_FEDERATION_ALGORITHMS": "RS256,HS256",
        "BROKER_FEDERATION_LEEWAY_SECONDS": "301",
        "BROKER_FEDERATION_JWKS_CACHE_SECONDS": "0",
        "BROKER_REVOCATION_MAX_STALENESS_SECONDS": "0",
        "BROKER_LIMITS_ISSUE_BURST": "0",
    }
    try:
        load_config(environ=bad)
    except ConfigError as exc:
        text = "\n".join(exc.problems)
    else:  # pragma: no cover - the assertion below reports it
        text = ""
    for fragment in (
        "algorithms",
        "leeway_seconds",
        "jwks_cache_seconds",
        "max_staleness",
        "burst",
    ):
        assert fragment in text, fragment
