"""The request context the broker gives IAM decisions: global and IAM-specific keys."""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import Api, tag_params


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def stmt(
    action: str, condition: dict[str, Any] | None = None, effect: str = "Allow"
) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": effect, "Action": action, "Resource": "*"}
    if condition is not None:
        out["Condition"] = condition
    return out


async def test_principal_tags(api: Api) -> None:
    doc = policy(stmt("iam:ListUsers", {"StringEquals": {"aws:PrincipalTag/Team": "blue"}}))
    creds, _ = await api.new_user("alice", policy=doc)
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")
    await api.ok("TagUser", UserName="alice", params=tag_params({"team": "blue"}))
    await api.ok("ListUsers", creds)  # tag key matched case-insensitively
    await api.ok("TagUser", UserName="alice", params=tag_params({"team": "red"}))
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")


async def test_request_tags_and_tag_keys(api: Api) -> None:
    doc = policy(
        stmt(
            "iam:CreateUser",
            {
                "StringEquals": {"aws:RequestTag/cost-center": "42"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["cost-center", "owner"]},
            },
        )
    )
    creds, _ = await api.new_user("admin", policy=doc)
    (await api.call("CreateUser", creds, UserName="u1")).expect(403, "AccessDenied")
    tagged = tag_params({"cost-center": "42", "owner": "me"})
    await api.ok("CreateUser", creds, params=tagged, UserName="u2")
    extra = tag_params({"cost-center": "42", "secret": "x"})
    (await api.call("CreateUser", creds, params=extra, UserName="u3")).expect(403, "AccessDenied")
    wrong = tag_params({"cost-center": "7"})
    (await api.call("CreateUser", creds, params=wrong, UserName="u4")).expect(403, "AccessDenied")


async def test_resource_tags(api: Api) -> None:
    doc = policy(stmt("iam:GetUser", {"StringEquals": {"iam:ResourceTag/env": "dev"}}))
    creds, _ = await api.new_user("reader", policy=doc)
    await api.ok("CreateUser", UserName="dev-user", params=tag_params({"env": "dev"}))
    await api.ok("CreateUser", UserName="prod-user", params=tag_params({"env": "prod"}))
    await api.ok("GetUser", creds, UserName="dev-user")
    (await api.call("GetUser", creds, UserName="prod-user")).expect(403, "AccessDenied")
    aws_key = policy(stmt("iam:GetUser", {"StringEquals": {"aws:ResourceTag/env": "prod"}}))
    await api.ok("PutUserPolicy", UserName="reader", PolicyName="p", PolicyDocument=aws_key)
    await api.ok("GetUser", creds, UserName="prod-user")


async def test_policy_arn_key_limits_what_may_be_attached(api: Api) -> None:
    readonly = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    doc = policy(stmt("iam:AttachUserPolicy", {"ArnEquals": {"iam:PolicyARN": readonly}}))
    creds, _ = await api.new_user("delegate", policy=doc)
    await api.ok("CreateUser", UserName="target")
    await api.ok("AttachUserPolicy", creds, UserName="target", PolicyArn=readonly)
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"
    (await api.call("AttachUserPolicy", creds, UserName="target", PolicyArn=admin)).expect(
        403, "AccessDenied"
    )


async def test_permissions_boundary_key_enforces_delegation(api: Api) -> None:
    boundary = "arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    doc = policy(
        stmt("iam:CreateUser", {"StringEquals": {"iam:PermissionsBoundary": boundary}}),
        stmt("iam:PutUserPolicy", {"StringEquals": {"iam:PermissionsBoundary": boundary}}),
    )
    creds, _ = await api.new_user("delegate", policy=doc)
    (await api.call("CreateUser", creds, UserName="free")).expect(403, "AccessDenied")
    await api.ok("CreateUser", creds, UserName="bounded", PermissionsBoundary=boundary)
    # Later actions on the bounded user see its boundary in the context.
    await api.ok(
        "PutUserPolicy", creds, UserName="bounded", PolicyName="x",
        PolicyDocument=policy(stmt("iam:ListUsers")),
    )  # fmt: skip
    await api.ok("CreateUser", UserName="unbounded")
    (
        await api.call(
            "PutUserPolicy",
            creds,
            UserName="unbounded",
            PolicyName="x",
            PolicyDocument=policy(stmt("iam:ListUsers")),
        )  # fmt: skip
    ).expect(403, "AccessDenied")


async def test_source_ip_and_absent_mfa(api: Api) -> None:
    doc = policy(stmt("iam:ListUsers", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    creds, _ = await api.new_user("alice", policy=doc)
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")
    loopback = policy(
        stmt("iam:ListUsers", {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}})
    )
    await api.ok("PutUserPolicy", UserName="alice", PolicyName="p", PolicyDocument=loopback)
    await api.ok("ListUsers", creds)
    # Long-term keys carry no aws:MultiFactorAuthPresent: a Bool test on it does not match,
    # while BoolIfExists does.
    need_mfa = policy(stmt("iam:ListUsers", {"Bool": {"aws:MultiFactorAuthPresent": "false"}}))
    await api.ok("PutUserPolicy", UserName="alice", PolicyName="p", PolicyDocument=need_mfa)
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")
    if_exists = policy(
        stmt("iam:ListUsers"),
        stmt("iam:ListUsers", {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}, "Deny"),
    )
    await api.ok("PutUserPolicy", UserName="alice", PolicyName="p", PolicyDocument=if_exists)
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")


async def test_username_variable_scopes_self_service(api: Api) -> None:
    doc = policy(
        {
            "Effect": "Allow",
            "Action": ["iam:GetUser", "iam:ListAccessKeys"],
            "Resource": "arn:aws:iam::*:user/${aws:username}",
        }
    )
    creds, _ = await api.new_user("alice", policy=doc)
    await api.ok("CreateUser", UserName="bob")
    await api.ok("GetUser", creds, UserName="alice")
    await api.ok("ListAccessKeys", creds)
    (await api.call("GetUser", creds, UserName="bob")).expect(403, "AccessDenied")
    (await api.call("ListAccessKeys", creds, UserName="bob")).expect(403, "AccessDenied")


def trust(principal: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


async def test_trust_policy_principals_must_exist_in_the_account(api: Api) -> None:
    acct = api.account_id
    await api.ok("CreateUser", UserName="alice", Path="/staff/")
    await api.ok("CreateRole", RoleName="ok", AssumeRolePolicyDocument=trust(
        {"AWS": f"arn:aws:iam::{acct}:user/staff/alice"}))  # fmt: skip
    for missing in (f"arn:aws:iam::{acct}:user/ghost", f"arn:aws:iam::{acct}:user/alice",
                    f"arn:aws:iam::{acct}:role/nope"):  # fmt: skip
        reply = await api.call("CreateRole", RoleName="bad", AssumeRolePolicyDocument=trust(
            {"AWS": missing}))  # fmt: skip
        reply.expect(
            400, "MalformedPolicyDocument", f'Invalid principal in policy: "AWS":"{missing}"'
        )
    (await api.call("GetRole", RoleName="bad")).expect(404, "NoSuchEntity")
    # Other accounts, the account root and services are not checked here.
    for fine in ({"AWS": "arn:aws:iam::210987654321:user/anyone"}, {"AWS": acct},
                 {"Service": "ec2.amazonaws.com"}):  # fmt: skip
        await api.ok("UpdateAssumeRolePolicy", RoleName="ok", PolicyDocument=trust(fine))
    bad = trust({"AWS": f"arn:aws:iam::{acct}:role/nope"})
    (await api.call("UpdateAssumeRolePolicy", RoleName="ok", PolicyDocument=bad)).expect(
        400, "MalformedPolicyDocument"
    )
