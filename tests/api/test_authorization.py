"""API tests: who may call which IAM action (identity policies, deny, account isolation)."""

from __future__ import annotations

import json

from tests.api.conftest import TRUST_EC2, Api, allow, deny


def denied_message(arn: str, action: str, resource: str, *, explicit: bool = False) -> str:
    """AWS's AccessDenied message for an identity-policy decision."""
    why = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    return f"User: {arn} is not authorized to perform: {action} on resource: {resource} {why}"


async def test_new_user_is_denied_everything(api: Api) -> None:
    creds, arn = await api.new_user("bob")
    acct = api.account_id
    await api.ok("CreateUser", UserName="alice")
    cases = [
        ("ListUsers", {}, "iam:ListUsers", f"arn:aws:iam::{acct}:user/"),
        ("GetUser", {}, "iam:GetUser", arn),
        ("GetUser", {"UserName": "alice"}, "iam:GetUser", f"arn:aws:iam::{acct}:user/alice"),
        ("CreateUser", {"UserName": "x"}, "iam:CreateUser", f"arn:aws:iam::{acct}:user/x"),
        ("DeleteUser", {"UserName": "alice"}, "iam:DeleteUser", f"arn:aws:iam::{acct}:user/alice"),
        ("CreateGroup", {"GroupName": "g"}, "iam:CreateGroup", f"arn:aws:iam::{acct}:group/g"),
        ("ListRoles", {}, "iam:ListRoles", f"arn:aws:iam::{acct}:role/"),
        ("ListAccessKeys", {}, "iam:ListAccessKeys", arn),
        ("CreateAccessKey", {}, "iam:CreateAccessKey", arn),
        (
            "CreatePolicy",
            {"PolicyName": "p", "PolicyDocument": allow("*")},
            "iam:CreatePolicy",
            f"arn:aws:iam::{acct}:policy/p",
        ),
        (
            "PutUserPolicy",
            {"UserName": "bob", "PolicyName": "p", "PolicyDocument": allow("*")},
            "iam:PutUserPolicy",
            arn,
        ),
    ]
    for action, params, iam_action, resource in cases:
        reply = await api.call(action, creds, params=params)
        reply.expect(403, "AccessDenied", denied_message(arn, iam_action, resource))
        assert reply.fault == "Sender"
    # Nothing was changed by the denied calls.
    (await api.call("GetUser", UserName="x")).expect(404, "NoSuchEntity")
    assert (await api.ok("ListUserPolicies", UserName="bob")).members("PolicyNames") == []
    assert len((await api.ok("ListAccessKeys", UserName="bob")).members("AccessKeyMetadata")) == 1


async def test_get_caller_identity_is_never_denied(api: Api) -> None:
    creds, arn = await api.new_user("bob", policy=deny("*"))
    ident = await api.sts("GetCallerIdentity", creds)
    assert ident.text("Arn") == arn
    await api.ok(
        "AttachUserPolicy", UserName="bob", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    assert (await api.sts("GetCallerIdentity", creds)).text("Arn") == arn


async def test_inline_allow(api: Api) -> None:
    creds, arn = await api.new_user("bob", policy=allow(["iam:ListUsers", "iam:GetUser"]))
    listed = await api.ok("ListUsers", creds)
    assert listed.member_texts("Users", "UserName") == ["bob"]
    await api.ok("GetUser", creds, UserName="bob")
    (await api.call("ListGroups", creds)).expect(403, "AccessDenied")


async def test_resource_scoped_allow(api: Api) -> None:
    acct = api.account_id
    creds, arn = await api.new_user(
        "bob", policy=allow("iam:GetUser", f"arn:aws:iam::{acct}:user/team/*")
    )
    await api.ok("CreateUser", UserName="in", Path="/team/")
    await api.ok("CreateUser", UserName="out")
    await api.ok("GetUser", creds, UserName="in")
    (await api.call("GetUser", creds, UserName="out")).expect(
        403, "AccessDenied", denied_message(arn, "iam:GetUser", f"arn:aws:iam::{acct}:user/out")
    )


async def test_group_attached_allow(api: Api) -> None:
    creds, _ = await api.new_user("bob")
    await api.ok("CreateGroup", GroupName="readers")
    await api.ok("AddUserToGroup", GroupName="readers", UserName="bob")
    (await api.call("ListRoles", creds)).expect(403, "AccessDenied")
    created = await api.ok(
        "CreatePolicy", PolicyName="roles", PolicyDocument=allow("iam:ListRoles")
    )
    arn = created.text("Policy/Arn") or ""
    await api.ok("AttachGroupPolicy", GroupName="readers", PolicyArn=arn)
    await api.ok("ListRoles", creds)
    # Leaving the group takes the permission away on the next request.
    await api.ok("RemoveUserFromGroup", GroupName="readers", UserName="bob")
    (await api.call("ListRoles", creds)).expect(403, "AccessDenied")


async def test_aws_managed_policy_allows(api: Api) -> None:
    creds, _ = await api.new_user("bob")
    await api.ok(
        "AttachUserPolicy", UserName="bob", PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    )
    await api.ok("ListUsers", creds)
    await api.ok("GetAccountAuthorizationDetails", creds)
    (await api.call("CreateUser", creds, UserName="x")).expect(403, "AccessDenied")


async def test_explicit_deny_beats_allow(api: Api) -> None:
    creds, arn = await api.new_user("bob", policy=allow("iam:*"))
    await api.ok("ListUsers", creds)
    await api.ok(
        "PutUserPolicy", UserName="bob", PolicyName="no-list", PolicyDocument=deny("iam:ListUsers")
    )
    reply = await api.call("ListUsers", creds)
    reply.expect(403, "AccessDenied")
    assert (reply.message or "").startswith(
        f"User: {arn} is not authorized to perform: iam:ListUsers on resource: "
        f"arn:aws:iam::{api.account_id}:user/ with an explicit deny in a"
    )
    # The deny is narrow: everything else is still allowed.
    await api.ok("ListGroups", creds)
    # A deny in a group policy beats the user's own allow too.
    await api.ok("DeleteUserPolicy", UserName="bob", PolicyName="no-list")
    await api.ok("CreateGroup", GroupName="g")
    await api.ok(
        "PutGroupPolicy", GroupName="g", PolicyName="d", PolicyDocument=deny("iam:ListGroups")
    )
    await api.ok("AddUserToGroup", GroupName="g", UserName="bob")
    (await api.call("ListGroups", creds)).expect(403, "AccessDenied")
    await api.ok("ListUsers", creds)


async def test_explicit_deny_message_wording(api: Api) -> None:
    creds, arn = await api.new_user("bob", policy=deny("iam:ListUsers"))
    (await api.call("ListUsers", creds)).expect(
        403,
        "AccessDenied",
        denied_message(arn, "iam:ListUsers", f"arn:aws:iam::{api.account_id}:user/", explicit=True),
    )


async def test_not_action(api: Api) -> None:
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "NotAction": "iam:DeleteUser", "Resource": "*"}],
        }
    )
    creds, arn = await api.new_user("bob", policy=policy)
    await api.ok("CreateUser", creds, UserName="victim")
    (await api.call("DeleteUser", creds, UserName="victim")).expect(
        403,
        "AccessDenied",
        denied_message(arn, "iam:DeleteUser", f"arn:aws:iam::{api.account_id}:user/victim"),
    )
    await api.ok("GetUser", UserName="victim")


async def test_not_resource(api: Api) -> None:
    acct = api.account_id
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iam:GetUser",
                    "NotResource": f"arn:aws:iam::{acct}:user/secret",
                }
            ],
        }
    )
    creds, arn = await api.new_user("bob", policy=policy)
    await api.ok("CreateUser", UserName="secret")
    await api.ok("CreateUser", UserName="open")
    await api.ok("GetUser", creds, UserName="open")
    (await api.call("GetUser", creds, UserName="secret")).expect(
        403, "AccessDenied", denied_message(arn, "iam:GetUser", f"arn:aws:iam::{acct}:user/secret")
    )


async def test_deny_with_not_resource_protects_everything_else(api: Api) -> None:
    acct = api.account_id
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
                {
                    "Effect": "Deny",
                    "Action": "iam:DeleteRole",
                    "NotResource": f"arn:aws:iam::{acct}:role/sandbox/*",
                },
            ],
        }
    )
    creds, _ = await api.new_user("bob", policy=policy)
    await api.ok("CreateRole", RoleName="prod", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("CreateRole", RoleName="toy", Path="/sandbox/", AssumeRolePolicyDocument=TRUST_EC2)
    (await api.call("DeleteRole", creds, RoleName="prod")).expect(403, "AccessDenied")
    await api.ok("DeleteRole", creds, RoleName="toy")


async def test_policy_changes_apply_on_next_request(api: Api) -> None:
    creds, _ = await api.new_user("bob")
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")
    await api.ok(
        "PutUserPolicy", UserName="bob", PolicyName="p", PolicyDocument=allow("iam:ListUsers")
    )
    await api.ok("ListUsers", creds)
    await api.ok(
        "PutUserPolicy", UserName="bob", PolicyName="p", PolicyDocument=allow("iam:ListGroups")
    )
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")
    await api.ok("ListGroups", creds)
    await api.ok("DeleteUserPolicy", UserName="bob", PolicyName="p")
    (await api.call("ListGroups", creds)).expect(403, "AccessDenied")

    # Managed policy: a new default version applies at once, and so does going back.
    created = await api.ok("CreatePolicy", PolicyName="m", PolicyDocument=allow("iam:ListRoles"))
    arn = created.text("Policy/Arn") or ""
    await api.ok("AttachUserPolicy", UserName="bob", PolicyArn=arn)
    await api.ok("ListRoles", creds)
    await api.ok(
        "CreatePolicyVersion",
        PolicyArn=arn,
        PolicyDocument=allow("iam:ListGroups"),
        SetAsDefault=True,
    )
    (await api.call("ListRoles", creds)).expect(403, "AccessDenied")
    await api.ok("ListGroups", creds)
    await api.ok("SetDefaultPolicyVersion", PolicyArn=arn, VersionId="v1")
    await api.ok("ListRoles", creds)
    await api.ok("DetachUserPolicy", UserName="bob", PolicyArn=arn)
    (await api.call("ListRoles", creds)).expect(403, "AccessDenied")


async def test_user_may_manage_own_keys_with_username_variable(api: Api) -> None:
    acct = api.account_id
    policy = allow(
        ["iam:CreateAccessKey", "iam:ListAccessKeys", "iam:DeleteAccessKey"],
        f"arn:aws:iam::{acct}:user/${{aws:username}}",
    )
    creds, _ = await api.new_user("bob", policy=policy)
    await api.ok("CreateUser", UserName="carol")
    await api.ok("ListAccessKeys", creds)
    await api.ok("ListAccessKeys", creds, UserName="bob")
    (await api.call("ListAccessKeys", creds, UserName="carol")).expect(403, "AccessDenied")
    (await api.call("CreateAccessKey", creds, UserName="carol")).expect(403, "AccessDenied")
    assert (await api.ok("ListAccessKeys", UserName="carol")).members("AccessKeyMetadata") == []


async def test_root_of_one_account_cannot_see_another(api: Api) -> None:
    other_id, other_root = await api.new_account()
    assert other_id != api.account_id
    await api.ok("CreateUser", other_root, UserName="bob")
    created = await api.ok(
        "CreatePolicy", other_root, PolicyName="theirs", PolicyDocument=allow("*")
    )
    their_policy = created.text("Policy/Arn") or ""
    assert their_policy == f"arn:aws:iam::{other_id}:policy/theirs"

    (await api.call("GetUser", UserName="bob")).expect(404, "NoSuchEntity")
    assert (await api.ok("ListUsers")).members("Users") == []
    (await api.call("DeleteUser", UserName="bob")).expect(404, "NoSuchEntity")
    (await api.call("GetPolicy", PolicyArn=their_policy)).expect(404, "NoSuchEntity")
    await api.ok("CreateUser", UserName="mine")
    (await api.call("AttachUserPolicy", UserName="mine", PolicyArn=their_policy)).expect(
        404, "NoSuchEntity"
    )
    assert their_policy not in (await api.ok("ListPolicies")).member_texts("Policies", "Arn")
    # The same name can exist in both accounts, and each root sees its own.
    await api.ok("CreateUser", UserName="bob")
    mine = await api.ok("GetUser", UserName="bob")
    theirs = await api.ok("GetUser", other_root, UserName="bob")
    assert mine.text("User/Arn") == f"arn:aws:iam::{api.account_id}:user/bob"
    assert theirs.text("User/Arn") == f"arn:aws:iam::{other_id}:user/bob"
    # Keys are scoped too: the other root cannot touch this account's root key.
    (
        await api.call(
            "UpdateAccessKey", other_root, AccessKeyId=api.root.access_key_id, Status="Inactive"
        )
    ).expect(404, "NoSuchEntity")
    assert (await api.sts("GetCallerIdentity")).ok


async def test_users_cannot_reach_other_accounts(api: Api) -> None:
    other_id, other_root = await api.new_account()
    await api.ok("CreateUser", other_root, UserName="target")
    creds, _ = await api.new_user("bob", policy=allow("iam:*"))
    (await api.call("GetUser", creds, UserName="target")).expect(404, "NoSuchEntity")
    (await api.call("DeleteUser", creds, UserName="target")).expect(404, "NoSuchEntity")
    assert (await api.ok("GetUser", other_root, UserName="target")).ok


async def test_unauthorized_caller_cannot_probe_user_names(api: Api) -> None:
    creds, arn = await api.new_user("bob")
    await api.ok("CreateUser", UserName="exists")
    present = await api.call("GetUser", creds, UserName="exists")
    absent = await api.call("GetUser", creds, UserName="ghost")
    present.expect(403, "AccessDenied")
    absent.expect(403, "AccessDenied")
    assert (absent.message or "").startswith(
        f"User: {arn} is not authorized to perform: iam:GetUser on resource: "
    )
