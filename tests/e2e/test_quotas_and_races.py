"""Quotas hold under races, including two broker processes sharing one Redis."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import master_key
from tests.support.broker_proc import BrokerProcess, Creds
from tests.support.redis_server import RedisServer


def test_third_access_key_is_limit_exceeded(broker: BrokerProcess) -> None:
    iam = broker.client("iam", broker.root_creds())
    iam.create_user(UserName="dave")
    iam.create_access_key(UserName="dave")
    iam.create_access_key(UserName="dave")
    with pytest.raises(ClientError) as err:
        iam.create_access_key(UserName="dave")
    assert err.value.response["Error"]["Code"] == "LimitExceeded"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert len(iam.list_access_keys(UserName="dave")["AccessKeyMetadata"]) == 2


def _create_key(node: BrokerProcess, root: Creds) -> str:
    reply = node.signed(
        {"Action": "CreateAccessKey", "Version": "2010-05-08", "UserName": "racer"}, root
    )
    if reply.status == 200:
        return "ok"
    return reply.error_code() or f"HTTP {reply.status}"


def test_two_nodes_on_one_redis_never_exceed_the_key_quota(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    key = master_key()
    a = BrokerProcess(
        tmp_path / "a", store="redis", redis_url=private_redis.url, env={"BROKER_MASTER_KEY": key}
    ).start()
    b = BrokerProcess(
        tmp_path / "b", store="redis", redis_url=private_redis.url, env={"BROKER_MASTER_KEY": key}
    ).start()
    try:
        root = a.root_creds()
        assert not (b.data_dir / "root-credentials.json").exists()
        a.client("iam", root).create_user(UserName="racer")
        nodes = [a, b] * 10
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda n: _create_key(n, root), nodes))
        assert results.count("ok") == 2, results
        assert set(results) == {"ok", "LimitExceeded"}, results
        for node in (a, b):
            keys = node.client("iam", root).list_access_keys(UserName="racer")
            assert len(keys["AccessKeyMetadata"]) == 2
    finally:
        a.stop()
        b.stop()


def test_two_nodes_starting_together_create_one_account(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    key = master_key()
    nodes = [
        BrokerProcess(
            tmp_path / name,
            store="redis",
            redis_url=private_redis.url,
            env={"BROKER_MASTER_KEY": key},
        )
        for name in ("n1", "n2", "n3")
    ]
    for node in nodes:
        node.launch()
    try:
        for node in nodes:
            node.wait_healthy()
        written = [n for n in nodes if (n.data_dir / "root-credentials.json").exists()]
        assert len(written) == 1, [n.log() for n in nodes]
        root = written[0].root_creds()
        for node in nodes:
            ident = node.client("sts", root).get_caller_identity()
            assert ident["Arn"] == f"arn:aws:iam::{written[0].account_id()}:root"
        listed = nodes[0].run_cli(["account", "list"])
        assert json.loads(listed) == [written[0].account_id()]
    finally:
        for node in nodes:
            node.stop()
