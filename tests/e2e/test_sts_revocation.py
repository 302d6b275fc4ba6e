"""Sessions: listing and revocation across nodes, and failing closed without the store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import master_key
from tests.support.broker_proc import BrokerProcess, Creds
from tests.support.redis_server import RedisServer

ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def setup_role(node: BrokerProcess) -> tuple[Creds, str]:
    acct = node.account_id()
    iam = node.client("iam", node.root_creds())
    iam.create_user(UserName="ops")
    iam.put_user_policy(UserName="ops", PolicyName="all", PolicyDocument=ALLOW_ALL)
    key = iam.create_access_key(UserName="ops")["AccessKey"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": acct}, "Action": "sts:AssumeRole"}]})  # fmt: skip
    arn = iam.create_role(RoleName="worker", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName="worker", PolicyName="all", PolicyDocument=ALLOW_ALL)
    return Creds(key["AccessKeyId"], key["SecretAccessKey"]), arn


def assume(node: BrokerProcess, user: Creds, role: str, name: str) -> tuple[Creds, str]:
    resp = node.client("sts", user).assume_role(RoleArn=role, RoleSessionName=name)
    c = resp["Credentials"]
    return Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]), c["AccessKeyId"]


def identity_code(node: BrokerProcess, creds: Creds) -> str:
    try:
        node.client("sts", creds).get_caller_identity()
        return "ok"
    except ClientError as err:
        code: str = err.response["Error"]["Code"]
        return code


def wait_for(fn: Any, want: str, limit: float) -> float:
    start = time.monotonic()
    while True:
        got = fn()
        if got == want:
            return time.monotonic() - start
        assert time.monotonic() - start < limit, f"still {got!r} after {limit}s"
        time.sleep(0.02)


@pytest.fixture
def durable_redis() -> Any:
    """A Redis of this test alone that keeps its data across a kill (AOF, fsync always)."""
    server = RedisServer(appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def two_nodes(tmp_path: Path, durable_redis: RedisServer) -> Any:
    private_redis = durable_redis
    env = {"BROKER_MASTER_KEY": master_key(), "BROKER_REVOCATION_MAX_STALENESS_SECONDS": "20",
           "BROKER_STORE_TIMEOUT_SECONDS": "0.3"}  # fmt: skip
    a = BrokerProcess(tmp_path / "a", store="redis", redis_url=private_redis.url, env=env).start()
    b = BrokerProcess(tmp_path / "b", store="redis", redis_url=private_redis.url, env=env).start()
    yield a, b
    a.stop()
    b.stop()


def test_revoking_on_one_node_stops_the_session_on_the_other(two_nodes: Any) -> None:
    a, b = two_nodes
    ops, role = setup_role(a)
    session, akid = assume(a, ops, role, "first")
    other, _ = assume(a, ops, role, "second")
    assert identity_code(b, session) == "ok"  # node b has the account's revocation state now
    listed = json.loads(a.run_cli(["sessions", "list", "--role", role]))
    mine = [s for s in listed if s["akid"] == akid]
    assert len(mine) == 1 and mine[0]["arn"].endswith("assumed-role/worker/first")
    assert "secret" not in json.dumps(listed).lower()
    out = json.loads(a.run_cli(["sessions", "revoke", "--session", mine[0]["sid"]]))
    assert out["AccessKeyId"] == akid
    took = wait_for(lambda: identity_code(b, session), "InvalidClientTokenId", 5.0)
    assert took < 1.0 + 0.5  # one second, plus the test's own polling margin
    assert identity_code(a, session) == "InvalidClientTokenId"
    assert identity_code(b, other) == "ok"  # only that session


def test_role_wide_revocation_uses_aws_revoke_older_sessions(two_nodes: Any) -> None:
    a, b = two_nodes
    ops, role = setup_role(a)
    old, _ = assume(a, ops, role, "old")
    time.sleep(1.1)  # token issue times have one-second resolution
    out = json.loads(a.run_cli(["sessions", "revoke", "--role", role]))
    assert out["RoleArn"] == role
    policy = a.client("iam", a.root_creds()).get_role_policy(
        RoleName="worker", PolicyName="AWSRevokeOlderSessions"
    )["PolicyDocument"]
    assert (
        policy["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        == out["IssuedBefore"]
    )
    time.sleep(1.1)
    new, _ = assume(a, ops, role, "new")
    wait_for(lambda: "denied" if _lists(b, old) is False else "allowed", "denied", 5.0)
    assert _lists(b, new) is True


def _lists(node: BrokerProcess, creds: Creds) -> bool:
    try:
        node.client("iam", creds).list_users()
        return True
    except ClientError as err:
        assert err.response["Error"]["Code"] == "AccessDenied"
        return False


def test_store_outage_fails_closed_after_the_staleness_bound(
    two_nodes: Any, durable_redis: RedisServer
) -> None:
    private_redis = durable_redis
    a, b = two_nodes
    ops, role = setup_role(a)
    session, _ = assume(a, ops, role, "outage")
    assert identity_code(a, session) == "ok" and identity_code(b, session) == "ok"
    private_redis.kill()
    killed = time.monotonic()
    # Temporary credentials keep working from the token on both nodes ...
    assert identity_code(a, session) == "ok"
    assert identity_code(b, session) == "ok"
    # ... while minting fails with 503 ServiceUnavailable.
    reply = a.signed({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role,
                      "RoleSessionName": "during"}, ops, service="sts")  # fmt: skip
    assert (reply.status, reply.error_code()) == (503, "ServiceUnavailable")
    assert "retry-after" in reply.headers
    # Then, past max_staleness_seconds (20 s here), they fail closed with 503.
    for node in (a, b):
        wait_for(lambda n=node: _status(n, session), "503", 40.0)
    assert time.monotonic() - killed > 15
    private_redis.restart()
    recovered = time.monotonic()
    for node in (a, b):
        wait_for(lambda n=node: identity_code(n, session), "ok", 15.0)
    assume(a, ops, role, "after")
    assert time.monotonic() - recovered < 15


def _status(node: BrokerProcess, creds: Creds) -> str:
    reply = node.signed({"Action": "GetCallerIdentity", "Version": "2011-06-15"}, creds,
                        service="sts")  # fmt: skip
    return str(reply.status)
