"""Metrics: ``GET /metrics`` of a real ``broker serve``, parsed by prometheus_client's parser.

Each test scrapes, makes calls with real clients, scrapes again and checks that the counters
moved by exactly what it did, on one worker and aggregated over two.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from broker.metrics import MULTIPROCESS_DIR
from tests.support.broker_proc import BrokerProcess, Creds, free_port
from tests.support.sdk import service_trust

Key = tuple[str, tuple[tuple[str, str], ...]]
ALLOW_ASSUME = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
    }
)
STS = {"Version": "2011-06-15"}


def scrape(node: BrokerProcess) -> dict[Key, float]:
    """Every sample of one scrape, keyed by sample name and sorted labels."""
    reply = node.get("/metrics")
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def moved(before: Mapping[Key, float], after: Mapping[Key, float], name: str) -> dict[Key, float]:
    """The samples called ``name`` whose value changed between two scrapes, with the change."""
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == name and after[key] != before.get(key, 0.0)
    }


def req(service: str, action: str, outcome: str) -> Key:
    labels = {"service": service, "action": action, "outcome": outcome}
    return ("broker_requests_total", tuple(sorted(labels.items())))


def labelled(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def cache_counts(samples: Mapping[Key, float], cache: str) -> tuple[float, float]:
    """(hits, misses) of one cache in a scrape."""
    return (
        samples.get(labelled("broker_cache_hits_total", cache=cache), 0.0),
        samples.get(labelled("broker_cache_misses_total", cache=cache), 0.0),
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path / "data").start()
    yield broker
    broker.stop()


def _user(node: BrokerProcess, name: str, policy: str | None = None) -> tuple[Creds, str]:
    iam = node.client("iam", node.root_creds())
    arn = str(iam.create_user(UserName=name)["User"]["Arn"])
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Creds(key["AccessKeyId"], key["SecretAccessKey"]), arn


def test_one_worker_counts_exactly_the_calls_made(node: BrokerProcess) -> None:
    root = node.root_creds()
    viewer, _ = _user(node, "viewer")
    ops, ops_arn = _user(node, "ops", ALLOW_ASSUME)
    statement = {"Effect": "Allow", "Principal": {"AWS": ops_arn}, "Action": "sts:AssumeRole"}
    trust = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    iam = node.client("iam", root)
    role = iam.create_role(RoleName="worker", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    for creds in (root, viewer, ops):  # after the last write: every key is cached now
        node.client("sts", creds).get_caller_identity()

    before = scrape(node)
    node.client("sts", root).get_caller_identity()
    with pytest.raises(ClientError) as denied:
        node.client("iam", viewer).list_users()
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    node.client("sts", ops).assume_role(RoleArn=role, RoleSessionName="s1")
    unknown = node.signed({"Action": "DescribeNothing", "Version": "2010-05-08"}, root)
    assert unknown.error_code() == "InvalidAction"

    def tamper(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return headers, body + b"&X=1"

    forged = node.signed({"Action": "GetCallerIdentity", **STS}, root, service="sts", tamper=tamper)
    assert forged.error_code() == "SignatureDoesNotMatch"
    revoked = node.signed({"Action": "RevokeSessions", "RoleArn": role, **STS}, root, service="sts")
    assert revoked.status == 200, revoked.text
    assert node.get("/healthz").status == 200  # not an API request: not counted
    after = scrape(node)

    assert moved(before, after, "broker_requests_total") == {
        req("sts", "GetCallerIdentity", "ok"): 1,
        req("iam", "ListUsers", "AccessDenied"): 1,
        req("sts", "AssumeRole", "ok"): 1,
        req("unknown", "unknown", "InvalidAction"): 1,
        req("sts", "GetCallerIdentity", "SignatureDoesNotMatch"): 1,
        req("sts", "RevokeSessions", "ok"): 1,
    }
    per_action = {
        labelled("broker_request_duration_seconds_count", service=s, action=a): n
        for (s, a, n) in [
            ("sts", "GetCallerIdentity", 2),
            ("iam", "ListUsers", 1),
            ("sts", "AssumeRole", 1),
            ("unknown", "unknown", 1),
            ("sts", "RevokeSessions", 1),
        ]
    }
    assert moved(before, after, "broker_request_duration_seconds_count") == per_action
    inf = {
        labelled("broker_request_duration_seconds_bucket", le="+Inf", **dict(k[1])): n
        for k, n in per_action.items()
    }
    assert {
        k: v
        for k, v in moved(before, after, "broker_request_duration_seconds_bucket").items()
        if ("le", "+Inf") in k[1]
    } == inf
    assert moved(before, after, "broker_credentials_issued_total") == {
        labelled("broker_credentials_issued_total", channel="AssumeRole"): 1
    }
    assert moved(before, after, "broker_revocations_total") == {
        labelled("broker_revocations_total", scope="role"): 1
    }
    assert moved(before, after, "broker_store_errors_total") == {}

    # Five signed requests looked up a long-term key (the unknown action stops before that);
    # every key was cached and nothing was written before the revocation, so all were hits.
    hits0, misses0 = cache_counts(before, "access_keys")
    hits1, misses1 = cache_counts(after, "access_keys")
    assert (hits1 - hits0, misses1 - misses0) == (5, 0)
    assert after[labelled("broker_workers")] == 1
    assert after[labelled("process_resident_memory_bytes")] > 0
    assert after[labelled("process_cpu_seconds_total")] > 0


def test_two_workers_are_one_node_in_every_scrape(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stale = data / MULTIPROCESS_DIR / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier run")
    env = {"BROKER_METRICS_FLUSH_SECONDS": "0.2"}
    node = BrokerProcess(data, workers=2, env=env).start()
    try:
        assert not stale.exists()  # the parent emptied the directory before the workers
        deadline = time.monotonic() + 30.0
        while scrape(node).get(labelled("broker_workers")) != 2:  # the second may start later
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.1)
        root = node.root_creds()
        calls = 0
        served: set[str] = set()
        # One connection per request: the kernel spreads them over the workers. A worker's
        # histogram file appears with its first request, so both files mean both answered.
        while calls < 40 or len(served) < 2:
            assert calls < 400, f"one worker answered every request: {served}"
            reply = node.signed({"Action": "GetCallerIdentity", **STS}, root, service="sts")
            assert reply.status == 200, reply.text
            calls += 1
            served = {p.name for p in (data / MULTIPROCESS_DIR).glob("histogram_*.db")}

        for _ in range(6):  # whichever worker answers the scrape, it reports the whole node
            samples = scrape(node)
            assert samples[req("sts", "GetCallerIdentity", "ok")] == calls
            key = labelled(
                "broker_request_duration_seconds_count", service="sts", action="GetCallerIdentity"
            )
            assert samples[key] == calls
            assert samples[labelled("broker_workers")] == 2
            assert samples[labelled("process_resident_memory_bytes")] > 0

        # Cache counts are published by each worker every flush_seconds: one miss per worker
        # (its first look-up of the root key), hits for the rest.
        deadline = time.monotonic() + 5.0
        while sum(cache_counts(scrape(node), "access_keys")) < calls:
            assert time.monotonic() < deadline, "cache counts were not published"
            time.sleep(0.1)
        assert cache_counts(scrape(node), "access_keys") == (calls - 2, 2)
    finally:
        node.stop()


def test_disabled_metrics_are_not_served(tmp_path: Path) -> None:
    node = BrokerProcess(tmp_path / "data", env={"BROKER_METRICS_ENABLED": "false"}).start()
    try:
        assert node.get("/metrics").status == 404
        reply = node.signed(
            {"Action": "GetCallerIdentity", **STS}, node.root_creds(), service="sts"
        )
        assert reply.status == 200
    finally:
        node.stop()


def test_container_credentials_count_once_per_mint(tmp_path: Path) -> None:
    account, token, port = "111122223333", "metrics-token-0123456789abcdef", free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bootstrap]\naccount_id = "{account}"\n\n'
        f'[container]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[[container.mappings]]\nname = "app"\ntoken = "{token}"\n'
        f'role_arn = "arn:aws:iam::{account}:role/app"\n'
    )
    node = BrokerProcess(tmp_path / "data", extra_args=("--config", str(config))).start()
    try:
        trust = service_trust("ecs-tasks.amazonaws.com")
        node.client("iam", node.root_creds()).create_role(
            RoleName="app", AssumeRolePolicyDocument=trust
        )
        before = scrape(node)
        for _ in range(3):  # minted once, then served from the delivery cache
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/v1/credentials", headers={"Authorization": token})
            reply = conn.getresponse()
            assert reply.status == 200, reply.read()
            assert "AccessKeyId" in json.loads(reply.read())
            conn.close()
        after = scrape(node)
        assert moved(before, after, "broker_credentials_issued_total") == {
            labelled("broker_credentials_issued_total", channel="container"): 1
        }
        assert moved(before, after, "broker_requests_total") == {}  # not the API listener
    finally:
        node.stop()
