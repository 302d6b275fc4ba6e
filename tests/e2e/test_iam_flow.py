"""The issue's core scenario through unmodified boto3 and the real ``aws`` CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.broker_proc import BrokerProcess, Creds

ALLOW_LIST_USERS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}],
    }
)


def test_boto3_group_policy_grants_list_users(broker: BrokerProcess) -> None:
    root = broker.client("iam", broker.root_creds())
    account = broker.account_id()
    user = root.create_user(UserName="alice")["User"]
    assert user["Arn"] == f"arn:aws:iam::{account}:user/alice"
    assert user["UserId"].startswith("AIDA") and len(user["UserId"]) == 21
    root.create_group(GroupName="readers")
    policy = root.create_policy(PolicyName="list-users", PolicyDocument=ALLOW_LIST_USERS)["Policy"]
    assert policy["Arn"] == f"arn:aws:iam::{account}:policy/list-users"
    root.add_user_to_group(GroupName="readers", UserName="alice")
    key = root.create_access_key(UserName="alice")["AccessKey"]
    assert key["AccessKeyId"].startswith("AKIA") and len(key["SecretAccessKey"]) == 40
    alice = broker.client("iam", Creds(key["AccessKeyId"], key["SecretAccessKey"]))

    with pytest.raises(ClientError) as denied:
        alice.list_users()
    err = denied.value.response
    assert err["Error"]["Code"] == "AccessDenied"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "iam:ListUsers" in err["Error"]["Message"]

    root.attach_group_policy(GroupName="readers", PolicyArn=policy["Arn"])
    names = [u["UserName"] for u in alice.list_users()["Users"]]
    assert names == ["alice"]

    root.detach_group_policy(GroupName="readers", PolicyArn=policy["Arn"])
    with pytest.raises(ClientError) as again:
        alice.list_users()
    assert again.value.response["Error"]["Code"] == "AccessDenied"

    sts = broker.client("sts", Creds(key["AccessKeyId"], key["SecretAccessKey"]))
    ident = sts.get_caller_identity()
    assert ident["Arn"] == user["Arn"]
    assert ident["Account"] == account
    assert ident["UserId"] == user["UserId"]


def test_aws_cli_flow(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    root = broker.root_creds()

    def aws(*args: str, creds: Creds = root) -> Any:
        out = broker.aws(list(args), creds)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    aws("iam", "create-user", "--user-name", "bob")
    aws("iam", "create-group", "--group-name", "ops")
    created = aws(
        "iam", "create-policy", "--policy-name", "lister", "--policy-document", ALLOW_LIST_USERS
    )
    arn = created["Policy"]["Arn"]
    aws("iam", "add-user-to-group", "--group-name", "ops", "--user-name", "bob")
    key = aws("iam", "create-access-key", "--user-name", "bob")["AccessKey"]
    bob = Creds(key["AccessKeyId"], key["SecretAccessKey"])

    denied = broker.aws(["iam", "list-users"], bob)
    assert denied.returncode != 0
    assert "AccessDenied" in denied.stderr

    aws("iam", "attach-group-policy", "--group-name", "ops", "--policy-arn", arn)
    listed = aws("iam", "list-users", creds=bob)
    assert [u["UserName"] for u in listed["Users"]] == ["bob"]

    ident = broker.aws(["sts", "get-caller-identity"], bob)
    assert ident.returncode == 0, ident.stderr
    assert json.loads(ident.stdout)["Arn"] == f"arn:aws:iam::{broker.account_id()}:user/bob"
    text = broker.aws(["sts", "get-caller-identity", "--query", "Arn", "--output", "text"], bob)
    assert text.stdout.strip() == f"arn:aws:iam::{broker.account_id()}:user/bob"


def test_permissions_boundary_limits_an_administrator(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.client("iam", sqlite_broker.root_creds())
    readonly = "arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    root.create_user(UserName="bounded", PermissionsBoundary=readonly)
    assert root.get_user(UserName="bounded")["User"]["PermissionsBoundary"] == {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": readonly,
    }
    root.attach_user_policy(
        UserName="bounded", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    key = root.create_access_key(UserName="bounded")["AccessKey"]
    user = sqlite_broker.client("iam", Creds(key["AccessKeyId"], key["SecretAccessKey"]))
    assert [u["UserName"] for u in user.list_users()["Users"]] == ["bounded"]
    with pytest.raises(ClientError) as err:
        user.create_user(UserName="escalated")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert "permissions boundary" in err.value.response["Error"]["Message"]
    policy = root.get_policy(PolicyArn=readonly)["Policy"]
    assert policy["PermissionsBoundaryUsageCount"] == 1
    root.delete_user_permissions_boundary(UserName="bounded")
    user.create_user(UserName="escalated")  # the administrator policy now applies in full
    assert "PermissionsBoundary" not in root.get_user(UserName="bounded")["User"]
