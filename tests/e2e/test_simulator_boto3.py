"""The policy simulator through unmodified boto3 and the real ``aws`` CLI, on a real broker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.broker_proc import BrokerProcess, Creds

READ_BUCKET = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadOwnPrefix",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": "arn:aws:s3:::data/${aws:username}/*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            },
            {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
        ],
    },
    indent=2,
)


def _decisions(results: list[dict[str, Any]]) -> dict[str, str]:
    return {r["EvalActionName"]: r["EvalDecision"] for r in results}


def test_boto3_simulate_custom_policy(sqlite_broker: BrokerProcess) -> None:
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    account = sqlite_broker.account_id()
    obj = "arn:aws:s3:::data/alice/report.csv"
    out = iam.simulate_custom_policy(
        PolicyInputList=[READ_BUCKET],
        ActionNames=["s3:GetObject", "s3:DeleteObject", "s3:PutObject"],
        ResourceArns=[obj],
        ContextEntries=[
            {
                "ContextKeyName": "aws:username",
                "ContextKeyValues": ["alice"],
                "ContextKeyType": "string",
            },
            {
                "ContextKeyName": "aws:SourceIp",
                "ContextKeyValues": ["10.1.2.3"],
                "ContextKeyType": "ip",
            },
        ],
    )
    results = out["EvaluationResults"]
    assert _decisions(results) == {
        "s3:GetObject": "allowed",
        "s3:DeleteObject": "explicitDeny",
        "s3:PutObject": "implicitDeny",
    }
    get = results[0]
    assert get["EvalResourceName"] == obj
    [matched] = get["MatchedStatements"]
    assert matched["SourcePolicyId"] == "PolicyInputList.1"
    assert matched["StartPosition"]["Line"] == 4  # the pretty-printed first statement
    assert get["ResourceSpecificResults"][0]["EvalResourceDecision"] == "allowed"

    # Without the context the condition cannot hold and the simulator says which key it missed.
    bare = iam.simulate_custom_policy(PolicyInputList=[READ_BUCKET], ActionNames=["s3:GetObject"])
    [result] = bare["EvaluationResults"]
    assert result["EvalDecision"] == "implicitDeny"
    assert result["MissingContextValues"] == ["aws:SourceIp"]

    # A resource policy naming the caller, in another account: both sides must allow.
    caller = f"arn:aws:iam::{account}:user/alice"
    grant = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": caller},
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::partner/*",
                }
            ],
        }
    )
    cross = iam.simulate_custom_policy(
        PolicyInputList=[
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            )
        ],
        ActionNames=["s3:GetObject"],
        ResourceArns=["arn:aws:s3:::partner/x"],
        ResourcePolicy=grant,
        CallerArn=caller,
        ResourceOwner="arn:aws:iam::222222222222:root",
    )["EvaluationResults"][0]
    assert cross["EvalDecision"] == "allowed"
    assert cross["EvalDecisionDetails"] == {"IAM Policy": "allowed", "Resource Policy": "allowed"}

    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.simulate_custom_policy(PolicyInputList=["{nope"], ActionNames=["s3:GetObject"])
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.simulate_custom_policy(PolicyInputList=[READ_BUCKET], ActionNames=["s3:*"])
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.simulate_custom_policy(
            PolicyInputList=[READ_BUCKET],
            ActionNames=["s3:GetObject"],
            ContextEntries=[
                {
                    "ContextKeyName": "aws:SourceIp",
                    "ContextKeyValues": ["nowhere"],
                    "ContextKeyType": "ip",
                }
            ],
        )


def test_boto3_paginates_simulation_results(sqlite_broker: BrokerProcess) -> None:
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    actions = [f"sqs:Action{i}" for i in range(7)]
    pages = list(
        iam.get_paginator("simulate_custom_policy").paginate(
            PolicyInputList=[READ_BUCKET], ActionNames=actions, PaginationConfig={"PageSize": 3}
        )
    )
    assert [len(p["EvaluationResults"]) for p in pages] == [3, 3, 1]
    names = [r["EvalActionName"] for p in pages for r in p["EvaluationResults"]]
    assert names == actions


def test_boto3_simulate_principal_policy(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.client("iam", sqlite_broker.root_creds())
    account = sqlite_broker.account_id()
    root.create_user(UserName="alice")
    root.create_group(GroupName="analysts")
    root.add_user_to_group(GroupName="analysts", UserName="alice")
    root.put_group_policy(GroupName="analysts", PolicyName="read", PolicyDocument=READ_BUCKET)
    root.attach_user_policy(UserName="alice", PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess")
    arn = f"arn:aws:iam::{account}:user/alice"
    results = root.simulate_principal_policy(
        PolicySourceArn=arn,
        ActionNames=["iam:ListUsers", "s3:GetObject", "s3:DeleteObject"],
        ContextEntries=[
            {
                "ContextKeyName": "aws:SourceIp",
                "ContextKeyValues": ["10.9.9.9"],
                "ContextKeyType": "ip",
            },
            {
                "ContextKeyName": "aws:username",
                "ContextKeyValues": ["alice"],
                "ContextKeyType": "string",
            },
        ],
    )["EvaluationResults"]
    assert _decisions(results) == {
        "iam:ListUsers": "allowed",
        "s3:GetObject": "allowed",
        "s3:DeleteObject": "explicitDeny",
    }
    assert results[0]["MatchedStatements"][0]["SourcePolicyId"] == "IAMReadOnlyAccess"
    assert results[2]["MatchedStatements"][0]["SourcePolicyId"] == "group_analysts_read"

    keys = root.get_context_keys_for_principal_policy(PolicySourceArn=arn)["ContextKeyNames"]
    assert keys == ["aws:username", "aws:SourceIp"]
    with pytest.raises(root.exceptions.NoSuchEntityException):
        root.simulate_principal_policy(
            PolicySourceArn=f"arn:aws:iam::{account}:role/ghost", ActionNames=["s3:GetObject"]
        )

    # The simulator is an IAM action like any other: a user needs permission to call it.
    key = root.create_access_key(UserName="alice")["AccessKey"]
    alice = sqlite_broker.client("iam", Creds(key["AccessKeyId"], key["SecretAccessKey"]))
    with pytest.raises(ClientError) as denied:
        alice.simulate_custom_policy(PolicyInputList=[READ_BUCKET], ActionNames=["s3:GetObject"])
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert "iam:SimulateCustomPolicy" in denied.value.response["Error"]["Message"]


def test_boto3_get_context_keys_for_custom_policy(sqlite_broker: BrokerProcess) -> None:
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    keys = iam.get_context_keys_for_custom_policy(PolicyInputList=[READ_BUCKET])["ContextKeyNames"]
    assert keys == ["aws:username", "aws:SourceIp"]
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.get_context_keys_for_custom_policy(PolicyInputList=['{"Statement": 1}'])


def test_aws_cli_simulate_custom_policy(sqlite_broker: BrokerProcess) -> None:
    out = sqlite_broker.aws(
        [
            "iam",
            "simulate-custom-policy",
            "--policy-input-list",
            READ_BUCKET,
            "--action-names",
            "s3:GetObject",
            "s3:DeleteObject",
            "--resource-arns",
            "arn:aws:s3:::data/bob/notes.txt",
            "--context-entries",
            "ContextKeyName=aws:username,ContextKeyValues=bob,ContextKeyType=string",
            "ContextKeyName=aws:SourceIp,ContextKeyValues=10.0.0.1,ContextKeyType=ip",
        ],
        sqlite_broker.root_creds(),
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["EvaluationResults"]
    assert _decisions(results) == {"s3:GetObject": "allowed", "s3:DeleteObject": "explicitDeny"}
    assert results[1]["MatchedStatements"][0]["SourcePolicyId"] == "PolicyInputList.1"
