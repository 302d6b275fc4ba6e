"""Deployment files: the shape of ``docker-compose.yml``, ``Dockerfile`` and ``.dockerignore``.

The compose file is read with PyYAML and its broker nodes' command lines and environment are fed
through the real argument parser and ``load_config``, so a misspelt ``BROKER_*`` name or flag
fails here rather than at ``docker compose up``. Where a working ``docker compose`` (or
``docker-compose``) is installed, its own ``config -q`` validates the file too.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from broker.cli import build_parser
from broker.config import DEFAULT_PORT, BrokerConfig, load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BROKERS = ("broker1", "broker2")
CONTAINER_PORT = 8080
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the container must listen on
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}")


# -- helpers -----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def _service(name: str) -> dict[str, Any]:
    services = _compose()["services"]
    assert name in services, f"service {name!r} missing"
    service = services[name]
    assert isinstance(service, dict)
    return service


def _argv(value: object) -> list[str]:
    """A compose/Dockerfile command (exec list or shell string) as an argv list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list), f"unexpected command {value!r}"
    assert all(isinstance(v, str) for v in value), f"non-string argument in {value!r}"
    return [str(v) for v in value]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [str(item).partition("=") for item in raw]
        return {k: v for k, _, v in pairs}
    assert isinstance(raw, dict)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _interpolate(text: str, variables: dict[str, str]) -> str:
    """Resolve compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = variables.get(name, "")
        if value:
            return value
        if op == ":?":
            raise LookupError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(one, text)


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile as ``(INSTRUCTION, arguments)`` pairs, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def _instruction(name: str) -> list[str]:
    return [rest for word, rest in _dockerfile() if word == name]


def _exec_form(text: str) -> list[str]:
    if text.startswith("["):
        value = json.loads(text)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return shlex.split(text)


def _image_entrypoint() -> list[str]:
    found = _instruction("ENTRYPOINT")
    return _exec_form(found[-1]) if found else []


def _image_cmd() -> list[str]:
    found = _instruction("CMD")
    return _exec_form(found[-1]) if found else []


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in _instruction("ENV"):
        for token in shlex.split(rest):
            key, sep, value = token.partition("=")
            assert sep, f"use ENV KEY=VALUE form, not {rest!r}"
            env[key] = value
    return env


def _broker_argv(name: str) -> list[str]:
    """What the container runs: the image's entry point plus the service's command."""
    service = _service(name)
    entrypoint = _argv(service["entrypoint"]) if "entrypoint" in service else _image_entrypoint()
    cmd = _argv(service["command"]) if "command" in service else _image_cmd()
    return entrypoint + cmd


def _serve_args(argv: list[str]) -> list[str]:
    """The arguments after ``broker`` (or ``python -m broker``), starting at ``serve``."""
    for i, word in enumerate(argv):
        if Path(word).name == "broker" and argv[i + 1 : i + 2] == ["serve"]:
            return argv[i + 1 :]
    raise AssertionError(f"{argv!r} does not run `broker serve`")


def _container_config(
    argv: list[str], environment: dict[str, str], caplog: pytest.LogCaptureFixture
) -> BrokerConfig:
    """Load the configuration a container would load, through the real flag parser."""
    args = build_parser().parse_args(_serve_args(argv))
    env = {k: _interpolate(v, {"BROKER_MASTER_KEY": MASTER_KEY}) for k, v in environment.items()}
    overrides = {
        "store": {"backend": args.store, "redis_url": args.redis_url, "data_dir": args.data_dir},
        "server": {"host": args.host, "port": args.port, "workers": args.workers},
    }
    with caplog.at_level(logging.WARNING, logger="broker.config"):
        cfg = load_config(args.config, environ=env, overrides=overrides)
    unknown = [r.getMessage() for r in caplog.records if "unknown" in r.getMessage()]
    assert not unknown, f"unknown BROKER_* names: {unknown}"
    return cfg


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(host_ip, host_port, container_port)`` for each published port."""
    result: list[tuple[str, int, int]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            result.append(
                (str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"]))
            )
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) in (2, 3), f"publish host and container port: {entry!r}"
        host_ip = parts[0] if len(parts) == 3 else ""
        result.append((host_ip, int(parts[-2]), int(parts[-1])))
    return result


def _compose_cli() -> list[str] | None:
    """``docker compose`` or ``docker-compose`` when installed and working, else None."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cmd in candidates:
        try:
            done = subprocess.run([*cmd, "version"], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return cmd
    return None


# -- docker-compose.yml ------------------------------------------------------------------


def test_services_are_redis_and_two_brokers() -> None:
    assert set(_compose()["services"]) == {"redis", *BROKERS}


def test_every_service_has_an_image_or_a_build() -> None:
    for name in ("redis", *BROKERS):
        service = _service(name)
        assert "image" in service or "build" in service, name


def test_brokers_are_built_from_the_dockerfile() -> None:
    for name in BROKERS:
        build = _service(name)["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (REPO / context / dockerfile).resolve() == DOCKERFILE.resolve(), name


def test_redis_is_version_7_with_aof_every_second() -> None:
    redis = _service("redis")
    assert str(redis["image"]).split(":")[0].endswith("redis")
    assert str(redis["image"]).split(":")[1].startswith("7")
    argv = _argv(redis["command"])
    assert argv[0] == "redis-server"
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert options.get("--appendonly") == "yes", argv
    assert options.get("--appendfsync") == "everysec", argv
    mounts = [str(v).split(":")[1] for v in redis.get("volumes", []) if ":" in str(v)]
    assert "/data" in mounts, "Redis data (AOF) must live on a volume"


def test_redis_is_not_published_on_the_host() -> None:
    assert not _service("redis").get("ports"), "only the broker nodes should reach Redis"


@pytest.mark.parametrize("name", BROKERS)
def test_broker_runs_serve_on_the_redis_service(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**_image_env(), **_environment(_service(name))}
    cfg = _container_config(_broker_argv(name), env, caplog)
    assert cfg.store.backend == "redis"
    url = urlsplit(cfg.store.redis_url)
    assert url.scheme == "redis"
    assert url.hostname == "redis", "the URL must name the compose service"
    assert (url.port or 6379) == 6379
    assert cfg.server.host == ALL_INTERFACES
    assert cfg.server.port == CONTAINER_PORT
    assert cfg.master_key is not None and cfg.master_key.reveal() == MASTER_KEY


@pytest.mark.parametrize("name", BROKERS)
def test_broker_command_names_the_redis_store(name: str) -> None:
    args = _serve_args(_broker_argv(name))
    assert args[args.index("--store") + 1] == "redis", args
    assert _environment(_service(name))["BROKER_STORE_REDIS_URL"] == "redis://redis:6379/0"


@pytest.mark.parametrize("name", BROKERS)
def test_broker_waits_for_a_healthy_redis(name: str) -> None:
    depends = _service(name)["depends_on"]
    assert isinstance(depends, dict), "use the long form to wait for health"
    assert depends["redis"]["condition"] == "service_healthy"


def test_master_key_is_one_required_variable_shared_by_both_nodes() -> None:
    values = {name: _environment(_service(name))["BROKER_MASTER_KEY"] for name in BROKERS}
    assert len(set(values.values())) == 1, values
    value = values[BROKERS[0]]
    match = _VARIABLE.fullmatch(value)
    assert match is not None, "the master key must come from the environment, not the file"
    assert match.group("name") == "BROKER_MASTER_KEY"
    assert match.group("op") == ":?", "a missing key must stop `docker compose` with a message"
    assert "generate-master" in match.group("arg")
    with pytest.raises(LookupError):
        _interpolate(value, {})


def test_every_variable_in_the_file_is_required_or_defaulted() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    found = list(_VARIABLE.finditer(text))
    assert found
    for match in found:
        assert match.group("op") in (":?", ":-"), f"{match.group(0)} may expand to nothing"


def test_compose_cli_accepts_the_file_where_installed() -> None:
    required = {m.group("name") for m in _VARIABLE.finditer(COMPOSE_FILE.read_text())
                if m.group("op") == ":?"}  # fmt: skip
    assert required == {"BROKER_MASTER_KEY"}
    compose = _compose_cli()
    if compose is not None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        ok = subprocess.run(
            [*compose, "-f", str(COMPOSE_FILE), "config", "-q"],
            env={**base, "BROKER_MASTER_KEY": MASTER_KEY},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        missing = subprocess.run(
            [*compose, "-f", str(COMPOSE_FILE), "config", "-q"],
            env=base, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert missing.returncode != 0
        assert "BROKER_MASTER_KEY" in missing.stderr


def test_health_checks_on_all_three_services() -> None:
    redis_test = _argv(_service("redis")["healthcheck"]["test"])
    assert redis_test[0] in ("CMD", "CMD-SHELL")
    assert "redis-cli" in " ".join(redis_test) and "ping" in redis_test[-1]
    for name in BROKERS:
        test = _argv(_service(name)["healthcheck"]["test"])
        assert test[0] == "CMD", name
        assert Path(test[1]).name.startswith("python"), "the slim image has python, not curl"
        assert test[2] == "-c"
        compile(test[3], f"{name} healthcheck", "exec")
        assert f"127.0.0.1:{CONTAINER_PORT}/healthz" in test[3]


def test_brokers_publish_8080_and_8081() -> None:
    published = {name: _published(_service(name)) for name in BROKERS}
    host_ports = sorted(port for ports in published.values() for _, port, _ in ports)
    assert host_ports == [8080, 8081], published
    for name, ports in published.items():
        assert [target for _, _, target in ports] == [CONTAINER_PORT], name


def test_each_broker_keeps_its_own_data_volume() -> None:
    volumes = {name: [str(v) for v in _service(name).get("volumes", [])] for name in BROKERS}
    sources = []
    for name, mounts in volumes.items():
        data = [m.split(":")[0] for m in mounts if m.split(":")[1:2] == ["/data"]]
        assert len(data) == 1, f"{name} needs a volume on /data"
        sources.append(data[0])
    assert len(set(sources)) == len(sources), "audit logs must not share one file"


# -- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_runs_broker_serve() -> None:
    argv = _image_entrypoint() + _image_cmd()
    assert _serve_args(argv)[0] == "serve"


def test_dockerfile_listens_on_all_interfaces_port_8080(caplog: pytest.LogCaptureFixture) -> None:
    cfg = _container_config(_image_entrypoint() + _image_cmd(), _image_env(), caplog)
    assert cfg.server.host == ALL_INTERFACES
    assert cfg.server.port == CONTAINER_PORT == DEFAULT_PORT
    assert cfg.store.backend == "sqlite"
    assert str(cfg.data_dir) in _instruction("VOLUME")[-1]
    assert str(CONTAINER_PORT) in " ".join(_instruction("EXPOSE")).split()


def test_dockerfile_base_install_and_user() -> None:
    base = _instruction("FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim( AS \w+)?", base[-1], re.IGNORECASE), base
    assert any("pip install" in run and ".[fast]" in run for run in _instruction("RUN"))
    users = _instruction("USER")
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_health_check_uses_python_on_healthz() -> None:
    checks = _instruction("HEALTHCHECK")
    assert len(checks) == 1
    cmd = _exec_form(checks[0].split(" CMD ", 1)[1].strip())
    assert Path(cmd[0]).name.startswith("python") and cmd[1] == "-c"
    compile(cmd[2], "HEALTHCHECK", "exec")
    assert "/healthz" in cmd[2]
    assert "curl" not in checks[0]


def test_dockerignore_is_an_allow_list_without_state() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert patterns[0] == "*", "exclude everything, then re-include what the build needs"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert {"broker", "pyproject.toml"} <= included
    assert not included & {"data", ".git", ".venv", "tests"}
