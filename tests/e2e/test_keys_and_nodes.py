"""Key lifecycle, presigned GetCallerIdentity, several workers and several nodes."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import master_key
from tests.support.broker_proc import BrokerProcess, Creds
from tests.support.redis_server import RedisServer

ALLOW_LIST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:List*", "Resource": "*"}],
    }
)


def _user_with_key(node: BrokerProcess, name: str) -> Creds:
    iam = node.client("iam", node.root_creds())
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Creds(key["AccessKeyId"], key["SecretAccessKey"])


def test_inactive_and_deleted_keys_authenticate_nothing(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.client("iam", sqlite_broker.root_creds())
    creds = _user_with_key(sqlite_broker, "gina")
    sts = sqlite_broker.client("sts", creds)
    assert sts.get_caller_identity()["Arn"].endswith(":user/gina")
    root.update_access_key(UserName="gina", AccessKeyId=creds.access_key_id, Status="Inactive")
    with pytest.raises(ClientError) as err:
        sts.get_caller_identity()
    assert err.value.response["Error"]["Code"] == "InvalidClientTokenId"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    root.update_access_key(UserName="gina", AccessKeyId=creds.access_key_id, Status="Active")
    assert sts.get_caller_identity()["Arn"].endswith(":user/gina")
    root.delete_access_key(UserName="gina", AccessKeyId=creds.access_key_id)
    with pytest.raises(ClientError) as gone:
        sts.get_caller_identity()
    assert gone.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_get_user_without_name_is_the_caller(sqlite_broker: BrokerProcess) -> None:
    account = sqlite_broker.account_id()
    root = sqlite_broker.client("iam", sqlite_broker.root_creds()).get_user()["User"]
    assert root["Arn"] == f"arn:aws:iam::{account}:root"
    assert root["UserId"] == account
    creds = _user_with_key(sqlite_broker, "hank")
    sqlite_broker.client("iam", sqlite_broker.root_creds()).put_user_policy(
        UserName="hank",
        PolicyName="self",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iam:GetUser",
                        "Resource": "arn:aws:iam::*:user/${aws:username}",
                    }
                ],
            }
        ),
    )
    me = sqlite_broker.client("iam", creds).get_user()["User"]
    assert me["UserName"] == "hank"
    assert me["Arn"] == f"arn:aws:iam::{account}:user/hank"


def test_presigned_get_caller_identity(sqlite_broker: BrokerProcess) -> None:
    sts = sqlite_broker.client("sts", sqlite_broker.root_creds())
    post_url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=300)
    parts = urllib.parse.urlsplit(post_url)
    reply = sqlite_broker.request("POST", f"{parts.path}?{parts.query}")
    assert reply.status == 200, reply.text
    assert f"arn:aws:iam::{sqlite_broker.account_id()}:root" in reply.text
    get_url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=300, HttpMethod="GET")
    parts = urllib.parse.urlsplit(get_url)
    assert sqlite_broker.request("GET", f"{parts.path}?{parts.query}").status == 200
    # The POST-signed URL does not verify as a GET, and a changed parameter breaks it.
    parts = urllib.parse.urlsplit(post_url)
    assert sqlite_broker.request("GET", f"{parts.path}?{parts.query}").status == 403
    tampered = parts.query.replace("X-Amz-Expires=300", "X-Amz-Expires=301")
    reply = sqlite_broker.request("POST", f"{parts.path}?{tampered}")
    assert (reply.status, reply.error_code()) == (403, "SignatureDoesNotMatch")


def test_several_workers_share_the_port(tmp_path: Path) -> None:
    node = BrokerProcess(tmp_path / "data", workers=2).start()
    try:
        creds = _user_with_key(node, "ivan")
        iam = node.client("iam", node.root_creds())
        user = node.client("iam", creds)
        iam.put_user_policy(UserName="ivan", PolicyName="list", PolicyDocument=ALLOW_LIST)
        # Every worker must see the change within the poll interval; a fresh connection per
        # call spreads calls over the workers.
        deadline = time.monotonic() + 5
        ok = 0
        while time.monotonic() < deadline and ok < 20:
            try:
                user.list_users()
                ok += 1
            except ClientError:
                ok = 0
                time.sleep(0.05)
        assert ok == 20
    finally:
        node.stop()


def test_policy_change_reaches_another_node_within_a_second(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    env = {"BROKER_MASTER_KEY": master_key()}
    a = BrokerProcess(tmp_path / "a", store="redis", redis_url=private_redis.url, env=env).start()
    b = BrokerProcess(tmp_path / "b", store="redis", redis_url=private_redis.url, env=env).start()
    try:
        creds = _user_with_key(a, "judy")
        on_b = b.client("iam", creds)
        with pytest.raises(ClientError):
            on_b.list_users()  # node b now caches judy's (empty) policy set
        a.client("iam", a.root_creds()).put_user_policy(
            UserName="judy", PolicyName="list", PolicyDocument=ALLOW_LIST
        )
        changed = time.monotonic()
        while True:
            try:
                on_b.list_users()
                break
            except ClientError:
                assert time.monotonic() - changed < 3.0, "node b never saw the change"
                time.sleep(0.02)
        assert time.monotonic() - changed < 2.0
    finally:
        a.stop()
        b.stop()


def test_presigned_url_past_its_expiry_is_request_expired(sqlite_broker: BrokerProcess) -> None:
    import datetime as dt
    from unittest import mock

    import botocore.auth

    sts = sqlite_broker.client("sts", sqlite_broker.root_creds())
    then = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=then):
        url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60)
    parts = urllib.parse.urlsplit(url)
    reply = sqlite_broker.request("POST", f"{parts.path}?{parts.query}")
    assert (reply.status, reply.error_code()) == (400, "RequestExpired")
