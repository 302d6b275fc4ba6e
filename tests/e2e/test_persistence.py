"""Restarts keep every entity; secrets are never stored in plain text."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import redis

from tests.e2e.conftest import master_key
from tests.support.broker_proc import BrokerProcess, Creds
from tests.support.redis_server import RedisServer

DOC = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:Get*", "Resource": "*"}],
    }
)


def _populate(node: BrokerProcess) -> tuple[Creds, dict[str, object]]:
    iam = node.client("iam", node.root_creds())
    iam.create_user(UserName="erin", Path="/team/", Tags=[{"Key": "dept", "Value": "ops"}])
    iam.create_group(GroupName="admins")
    iam.add_user_to_group(GroupName="admins", UserName="erin")
    arn = iam.create_policy(PolicyName="getter", PolicyDocument=DOC)["Policy"]["Arn"]
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=DOC, SetAsDefault=True)
    iam.attach_group_policy(GroupName="admins", PolicyArn=arn)
    iam.put_user_policy(UserName="erin", PolicyName="inline", PolicyDocument=DOC)
    iam.create_role(
        RoleName="app",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
        MaxSessionDuration=7200,
    )
    iam.create_instance_profile(InstanceProfileName="app-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="app-profile", RoleName="app")
    key = iam.create_access_key(UserName="erin")["AccessKey"]
    creds = Creds(key["AccessKeyId"], key["SecretAccessKey"])
    before = {
        "user": iam.get_user(UserName="erin")["User"],
        "groups": iam.list_groups_for_user(UserName="erin")["Groups"],
        "policy": iam.get_policy(PolicyArn=arn)["Policy"],
        "role": iam.get_role(RoleName="app")["Role"],
        "profile": iam.get_instance_profile(InstanceProfileName="app-profile")["InstanceProfile"],
        "inline": iam.get_user_policy(UserName="erin", PolicyName="inline")["PolicyDocument"],
        "keys": iam.list_access_keys(UserName="erin")["AccessKeyMetadata"],
    }
    return creds, before


def _snapshot(node: BrokerProcess) -> dict[str, object]:
    iam = node.client("iam", node.root_creds())
    arn = f"arn:aws:iam::{node.account_id()}:policy/getter"
    return {
        "user": iam.get_user(UserName="erin")["User"],
        "groups": iam.list_groups_for_user(UserName="erin")["Groups"],
        "policy": iam.get_policy(PolicyArn=arn)["Policy"],
        "role": iam.get_role(RoleName="app")["Role"],
        "profile": iam.get_instance_profile(InstanceProfileName="app-profile")["InstanceProfile"],
        "inline": iam.get_user_policy(UserName="erin", PolicyName="inline")["PolicyDocument"],
        "keys": iam.list_access_keys(UserName="erin")["AccessKeyMetadata"],
    }


def test_sqlite_restart_keeps_entities_and_seals_secrets(tmp_path: Path) -> None:
    node = BrokerProcess(tmp_path / "data").start()
    try:
        creds, before = _populate(node)
        root_secret = node.root_creds().secret_access_key
    finally:
        node.stop()
    again = BrokerProcess(tmp_path / "data").start()
    try:
        assert _snapshot(again) == before
        erin = again.client("sts", creds).get_caller_identity()
        assert erin["Arn"].endswith(":user/team/erin")
    finally:
        again.stop()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("broker.db*"))
    assert creds.secret_access_key.encode() not in raw
    assert root_secret.encode() not in raw
    with sqlite3.connect(tmp_path / "data" / "broker.db") as db:
        values = b"".join(bytes(v) for (v,) in db.execute("SELECT value FROM records"))
    assert creds.access_key_id.encode() in values  # the key record is there ...
    assert creds.secret_access_key.encode() not in values  # ... but not its secret
    assert (tmp_path / "data" / "broker.db").stat().st_mode & 0o077 == 0


def test_redis_restart_keeps_entities_and_seals_secrets(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    env = {"BROKER_MASTER_KEY": master_key()}
    node = BrokerProcess(tmp_path / "data", store="redis", redis_url=private_redis.url, env=env)
    node.start()
    try:
        creds, before = _populate(node)
        root_secret = node.root_creds().secret_access_key
    finally:
        node.stop()
    again = BrokerProcess(tmp_path / "data", store="redis", redis_url=private_redis.url, env=env)
    again.start()
    try:
        assert _snapshot(again) == before
        assert again.client("sts", creds).get_caller_identity()["Arn"].endswith(":user/team/erin")
    finally:
        again.stop()
    client: Any = redis.Redis.from_url(private_redis.url)
    dump = b""
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"hash":
            dump += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"string":
            dump += client.get(key) or b""
        elif kind == b"zset":
            dump += b"".join(client.zrange(key, 0, -1))
        elif kind == b"set":
            dump += b"".join(client.smembers(key))
    client.close()
    assert creds.access_key_id.encode() in dump
    assert creds.secret_access_key.encode() not in dump
    assert root_secret.encode() not in dump


def test_access_key_last_used_is_recorded(sqlite_broker: BrokerProcess) -> None:
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    iam.create_user(UserName="frank")
    key = iam.create_access_key(UserName="frank")["AccessKey"]
    never = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
    assert never["UserName"] == "frank"
    assert "LastUsedDate" not in never["AccessKeyLastUsed"]
    assert never["AccessKeyLastUsed"]["ServiceName"] == "N/A"
    frank = Creds(key["AccessKeyId"], key["SecretAccessKey"])
    sqlite_broker.client("sts", frank).get_caller_identity()
    deadline = time.monotonic() + 10  # flush_seconds is 2 by default
    used: dict[str, object] = {}
    while time.monotonic() < deadline:
        used = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])["AccessKeyLastUsed"]
        if "LastUsedDate" in used:
            break
        time.sleep(0.2)
    assert used.get("ServiceName") == "sts"
    assert used.get("Region") == "us-east-1"
