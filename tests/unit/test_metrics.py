"""Metrics helpers: label mapping, bounded label sets, cache counts, worker set-up, config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from broker import metrics
from broker.config import (
    DEFAULT_METRICS_FLUSH_SECONDS,
    BrokerConfig,
    ConfigError,
    MetricsConfig,
    StoreConfig,
    load_config,
)
from broker.service.cache import Generations
from broker.service.reads import RecordCache
from broker.service.txn import encode
from broker.store.base import Put
from broker.store.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]


def value(name: str, **labels: str) -> float:
    """A sample of this process's registry (0 when the series does not exist yet)."""
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def requests(service: str, action: str, outcome: str) -> float:
    return value("broker_requests_total", service=service, action=action, outcome=outcome)


@pytest.fixture(autouse=True)
def enabled() -> Iterator[None]:
    metrics._STATE.enabled = True
    yield
    metrics._STATE.enabled = True


def test_a_request_counts_once_with_its_latency_in_the_right_bucket() -> None:
    before = requests("iam", "GetUser", "ok")
    count = value("broker_request_duration_seconds_count", service="iam", action="GetUser")
    le_01 = value(
        "broker_request_duration_seconds_bucket", service="iam", action="GetUser", le="0.1"
    )
    le_025 = value(
        "broker_request_duration_seconds_bucket", service="iam", action="GetUser", le="0.25"
    )
    metrics.observe_request("iam", "GetUser", None, metrics.now() - 0.2)
    assert requests("iam", "GetUser", "ok") == before + 1
    assert (
        value("broker_request_duration_seconds_count", service="iam", action="GetUser") == count + 1
    )
    # 0.2 s is above the 0.1 s bound and within the 0.25 s one.
    assert (
        value("broker_request_duration_seconds_bucket", service="iam", action="GetUser", le="0.1")
        == le_01
    )
    assert (
        value("broker_request_duration_seconds_bucket", service="iam", action="GetUser", le="0.25")
        == le_025 + 1
    )


def test_failures_count_under_their_error_code() -> None:
    before = requests("iam", "ListUsers", "AccessDenied")
    ok = requests("iam", "ListUsers", "ok")
    metrics.observe_request("iam", "ListUsers", ("AccessDenied", "no"), metrics.now())
    assert requests("iam", "ListUsers", "AccessDenied") == before + 1
    assert requests("iam", "ListUsers", "ok") == ok


def test_unrouted_actions_share_one_fixed_label() -> None:
    before = requests("unknown", "unknown", "InvalidAction")
    size = len(metrics._CHILDREN)
    for i in range(50):  # caller-chosen action names must not create series
        metrics.observe_request("", f"Made{i}Up", ("InvalidAction", "x"), metrics.now())
    assert requests("unknown", "unknown", "InvalidAction") == before + 50
    assert len(metrics._CHILDREN) <= size + 1
    families = {f.name for f in REGISTRY.collect()}
    assert "broker_requests" in families
    text = "\n".join(
        str(s.labels) for f in REGISTRY.collect() if f.name == "broker_requests" for s in f.samples
    )
    assert "Made1Up" not in text


@pytest.mark.parametrize(
    ("action", "channel"),
    [
        ("AssumeRole", "AssumeRole"),
        ("GetSessionToken", "GetSessionToken"),
        ("GetFederationToken", "GetFederationToken"),
        ("AssumeRoleWithWebIdentity", "web_identity"),
    ],
)
def test_successful_sts_issuing_actions_count_as_issued(action: str, channel: str) -> None:
    before = value("broker_credentials_issued_total", channel=channel)
    metrics.observe_request("sts", action, None, metrics.now())
    assert value("broker_credentials_issued_total", channel=channel) == before + 1
    metrics.observe_request("sts", action, ("AccessDenied", "no"), metrics.now())
    metrics.observe_request("sts", action, ("Throttling", "slow down"), metrics.now())
    assert value("broker_credentials_issued_total", channel=channel) == before + 1


def test_other_actions_issue_nothing() -> None:
    before = {
        c: value("broker_credentials_issued_total", channel=c)
        for c in ("AssumeRole", "GetCallerIdentity")
    }
    metrics.observe_request("sts", "GetCallerIdentity", None, metrics.now())
    metrics.observe_request("iam", "CreateAccessKey", None, metrics.now())
    after = {c: value("broker_credentials_issued_total", channel=c) for c in before}
    assert after == before


def test_channel_revocation_and_store_error_hooks() -> None:
    imds = value("broker_credentials_issued_total", channel="imds")
    session = value("broker_revocations_total", scope="session")
    errors = value("broker_store_errors_total", backend="redis", operation="CreateUser")
    unrouted = value("broker_store_errors_total", backend="redis", operation="unknown")
    metrics.credentials_issued("imds")
    metrics.session_revoked("session")
    metrics.store_error("redis", "iam", "CreateUser")
    metrics.store_error("redis", "", "Whatever")
    assert value("broker_credentials_issued_total", channel="imds") == imds + 1
    assert value("broker_revocations_total", scope="session") == session + 1
    assert value("broker_store_errors_total", backend="redis", operation="CreateUser") == errors + 1
    assert value("broker_store_errors_total", backend="redis", operation="unknown") == unrouted + 1


def test_disabled_metrics_count_nothing() -> None:
    metrics._STATE.enabled = False
    before = requests("iam", "GetUser", "ok")
    issued = value("broker_credentials_issued_total", channel="container")
    metrics.observe_request("iam", "GetUser", None, metrics.now())
    metrics.credentials_issued("container")
    assert requests("iam", "GetUser", "ok") == before
    assert value("broker_credentials_issued_total", channel="container") == issued


def test_cache_counts_publish_only_what_is_new() -> None:
    counts = metrics.CacheCounts("unit_test_cache")
    counts.lookups, counts.misses = 10, 3
    counts.publish()
    assert value("broker_cache_hits_total", cache="unit_test_cache") == 7
    assert value("broker_cache_misses_total", cache="unit_test_cache") == 3
    counts.publish()  # nothing new: nothing added
    counts.lookups += 2
    counts.publish()
    assert value("broker_cache_hits_total", cache="unit_test_cache") == 9
    assert value("broker_cache_misses_total", cache="unit_test_cache") == 3


async def test_the_record_cache_counts_its_hits_and_misses() -> None:
    store = MemoryStore()
    gens = Generations(store)
    cache = RecordCache(store, gens)
    await store.commit("acct", {"user/a": Put(encode({"v": 1}))})
    await gens.watch("acct")
    metrics.sync()
    hits, misses = (
        value("broker_cache_hits_total", cache="records"),
        value("broker_cache_misses_total", cache="records"),
    )
    for _ in range(3):
        await cache.get("acct", "user/a")
    metrics.sync()
    assert value("broker_cache_hits_total", cache="records") == hits + 2
    assert value("broker_cache_misses_total", cache="records") == misses + 1


def test_prepare_workers_empties_the_directory_and_names_it(tmp_path: Path) -> None:
    cfg = BrokerConfig(store=StoreConfig(data_dir=str(tmp_path / "data")))
    folder = tmp_path / "data" / metrics.MULTIPROCESS_DIR
    folder.mkdir(parents=True)
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "keep.txt").write_text("not ours")
    env: dict[str, str] = {}
    metrics.prepare_workers(cfg, env)
    assert env == {metrics.MULTIPROC_ENV: str(folder.resolve())}
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert (folder.stat().st_mode & 0o777) == 0o700


def test_prepare_workers_does_nothing_when_disabled(tmp_path: Path) -> None:
    cfg = BrokerConfig(
        store=StoreConfig(data_dir=str(tmp_path / "data")), metrics=MetricsConfig(enabled=False)
    )
    env: dict[str, str] = {}
    metrics.prepare_workers(cfg, env)
    assert env == {}
    assert not (tmp_path / "data").exists()


_WORKER = textwrap.dedent(
    """
    import sys
    from broker import metrics
    for _ in range(int(sys.argv[1])):
        metrics.observe_request("sts", "GetCallerIdentity", None, metrics.now())
    metrics.observe_request("sts", "AssumeRole", None, metrics.now())
    metrics.ACCESS_KEY_CACHE.lookups, metrics.ACCESS_KEY_CACHE.misses = 5, 1
    metrics.sync()
    """
)
_SCRAPER = textwrap.dedent(
    """
    from prometheus_client import generate_latest
    from broker import metrics
    assert metrics.multiprocess_mode()
    print(generate_latest(metrics.scrape_registry()).decode())
    """
)


def test_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), metrics.MULTIPROC_ENV: str(tmp_path)}
    for n in (3, 4):
        subprocess.run(
            [sys.executable, "-c", _WORKER, str(n)], env=env, check=True, timeout=60, cwd=REPO
        )
    out = subprocess.run(
        [sys.executable, "-c", _SCRAPER],
        env=env, check=True, timeout=60, cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out.stdout)
        for s in family.samples
    }

    def get(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    ok = {"service": "sts", "outcome": "ok"}
    assert get("broker_requests_total", action="GetCallerIdentity", **ok) == 7
    assert get("broker_credentials_issued_total", channel="AssumeRole") == 2
    assert get("broker_cache_hits_total", cache="access_keys") == 8
    assert get("broker_cache_misses_total", cache="access_keys") == 2
    assert get("process_cpu_seconds_total") > 0
    assert get("process_resident_memory_bytes") > 0


def test_metrics_module_imports_no_web_stack() -> None:
    probe = "import sys, broker.metrics; print('aiohttp' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(metrics.MULTIPROC_ENV, None)
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, check=True, timeout=60, capture_output=True,
        text=True, cwd=REPO,
    )  # fmt: skip
    assert out.stdout.strip() == "False"


def test_config_section_defaults_and_overrides() -> None:
    cfg = load_config(environ={})
    assert cfg.metrics == MetricsConfig(True, DEFAULT_METRICS_FLUSH_SECONDS)
    cfg = load_config(environ={"BROKER_METRICS_ENABLED": "false"})
    assert cfg.metrics.enabled is False
    with pytest.raises(ConfigError, match=r"\[metrics\] flush_seconds must be positive"):
        load_config(environ={"BROKER_METRICS_FLUSH_SECONDS": "0"})
    shipped = load_config(REPO / "config.toml", environ={})
    assert shipped.metrics == MetricsConfig()
