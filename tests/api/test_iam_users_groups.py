"""API tests: IAM users, groups, memberships and user tags over the query protocol."""

from __future__ import annotations

import asyncio
import re

import pytest

from broker.core import limits
from tests.api.conftest import Api, allow, list_params, tag_params

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


# -- users -------------------------------------------------------------------------------


async def test_create_get_user_shape(api: Api) -> None:
    created = await api.ok("CreateUser", UserName="alice", Path="/eng/")
    assert created.text("User/UserName") == "alice"
    assert created.text("User/Path") == "/eng/"
    assert created.text("User/Arn") == f"arn:aws:iam::{api.account_id}:user/eng/alice"
    user_id = created.text("User/UserId") or ""
    assert re.fullmatch(r"AIDA[A-Z0-9]{17}", user_id)
    assert TIMESTAMP.match(created.text("User/CreateDate") or "")

    got = await api.ok("GetUser", UserName="alice")
    assert got.text("User/UserId") == user_id
    assert got.text("User/Arn") == created.text("User/Arn")
    assert got.text("User/CreateDate") == created.text("User/CreateDate")


async def test_create_user_defaults_to_root_path(api: Api) -> None:
    created = await api.ok("CreateUser", UserName="bob")
    assert created.text("User/Path") == "/"
    assert created.text("User/Arn") == f"arn:aws:iam::{api.account_id}:user/bob"


async def test_user_names_are_unique_case_insensitively(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    (await api.call("CreateUser", UserName="ALICE")).expect(
        409, "EntityAlreadyExists", "User with name ALICE already exists."
    )
    (await api.call("CreateUser", UserName="alice")).expect(409, "EntityAlreadyExists")
    # Lookups ignore case; the name keeps the case it was created with.
    got = await api.ok("GetUser", UserName="Alice")
    assert got.text("User/UserName") == "alice"
    listed = await api.ok("ListUsers")
    assert listed.member_texts("Users", "UserName") == ["alice"]


async def test_get_missing_user_is_404(api: Api) -> None:
    reply = await api.call("GetUser", UserName="nobody")
    reply.expect(404, "NoSuchEntity", "The user with name nobody cannot be found.")
    assert reply.fault == "Sender"


async def test_get_user_without_name_as_root(api: Api) -> None:
    got = await api.ok("GetUser")
    assert got.text("User/Arn") == f"arn:aws:iam::{api.account_id}:root"
    assert got.text("User/UserId") == api.account_id
    assert got.text("User/Path") == "/"
    assert got.find("User/UserName") is None


async def test_get_user_without_name_as_user(api: Api) -> None:
    creds, arn = await api.new_user("carol", policy=allow("iam:GetUser"))
    got = await api.ok("GetUser", creds)
    assert got.text("User/UserName") == "carol"
    assert got.text("User/Arn") == arn


async def test_list_users_path_prefix(api: Api) -> None:
    await api.ok("CreateUser", UserName="a1", Path="/eng/")
    await api.ok("CreateUser", UserName="a2", Path="/eng/backend/")
    await api.ok("CreateUser", UserName="b1", Path="/ops/")
    await api.ok("CreateUser", UserName="c1")
    eng = await api.ok("ListUsers", PathPrefix="/eng/")
    assert eng.member_texts("Users", "UserName") == ["a1", "a2"]
    backend = await api.ok("ListUsers", PathPrefix="/eng/backend")
    assert backend.member_texts("Users", "UserName") == ["a2"]
    everyone = await api.ok("ListUsers", PathPrefix="/")
    assert everyone.member_texts("Users", "UserName") == ["a1", "a2", "b1", "c1"]
    none = await api.ok("ListUsers", PathPrefix="/nothing/")
    assert none.members("Users") == []
    assert none.text("IsTruncated") == "false"


async def test_list_users_paginates_with_marker(api: Api) -> None:
    names = [f"user{i}" for i in range(7)]
    for name in reversed(names):
        await api.ok("CreateUser", UserName=name)
    seen: list[str] = []
    marker: str | None = None
    pages = 0
    while True:
        extra = {"Marker": marker} if marker is not None else {}
        page = await api.ok("ListUsers", params=extra, MaxItems=3)
        pages += 1
        batch = page.member_texts("Users", "UserName")
        seen += batch
        if page.text("IsTruncated") == "true":
            assert len(batch) == 3
            marker = page.text("Marker")
            assert marker
        else:
            assert page.text("IsTruncated") == "false"
            assert page.find("Marker") is None
            break
    assert pages == 3
    assert seen == names


async def test_list_users_max_items_bounds(api: Api) -> None:
    (await api.call("ListUsers", MaxItems=0)).expect(
        400,
        "ValidationError",
        "1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1",
    )
    (await api.call("ListUsers", MaxItems=1001)).expect(400, "ValidationError")


async def test_update_user_rename_and_path(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("UpdateUser", UserName="alice", NewUserName="alicia", NewPath="/team/")
    (await api.call("GetUser", UserName="alice")).expect(404, "NoSuchEntity")
    got = await api.ok("GetUser", UserName="alicia")
    assert got.text("User/Path") == "/team/"
    assert got.text("User/Arn") == f"arn:aws:iam::{api.account_id}:user/team/alicia"
    listed = await api.ok("ListUsers")
    assert listed.member_texts("Users", "UserName") == ["alicia"]


async def test_update_user_response_has_no_result(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    reply = await api.ok("UpdateUser", UserName="alice", NewPath="/x/")
    assert reply.root is not None
    children = [c.tag.split("}")[1] for c in reply.root]
    assert children == ["ResponseMetadata"]


async def test_update_user_to_taken_name_conflicts(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("CreateUser", UserName="bob")
    (await api.call("UpdateUser", UserName="alice", NewUserName="BOB")).expect(
        409, "EntityAlreadyExists"
    )
    assert (await api.ok("GetUser", UserName="alice")).text("User/UserName") == "alice"


async def test_update_user_case_only_rename(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("UpdateUser", UserName="alice", NewUserName="Alice")
    assert (await api.ok("GetUser", UserName="alice")).text("User/UserName") == "Alice"


async def test_update_missing_user(api: Api) -> None:
    (await api.call("UpdateUser", UserName="ghost", NewUserName="x")).expect(
        404, "NoSuchEntity", "The user with name ghost cannot be found."
    )


async def test_rename_keeps_groups_keys_and_attachments(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="devs")
    creds, old_arn = await api.new_user("alice", policy=allow(["iam:GetUser", "iam:ListGroups"]))
    await api.ok("AddUserToGroup", GroupName="devs", UserName="alice")
    policy = await api.ok("CreatePolicy", PolicyName="pol", PolicyDocument=allow("iam:ListRoles"))
    arn = policy.text("Policy/Arn") or ""
    await api.ok("AttachUserPolicy", UserName="alice", PolicyArn=arn)
    before = await api.sts("GetCallerIdentity", creds)
    assert before.text("Arn") == old_arn

    await api.ok("UpdateUser", UserName="alice", NewUserName="alicia", NewPath="/team/")
    new_arn = f"arn:aws:iam::{api.account_id}:user/team/alicia"

    # The renamed user's key still authenticates and now names the new ARN.
    after = await api.sts("GetCallerIdentity", creds)
    assert after.text("Arn") == new_arn
    assert after.text("UserId") == before.text("UserId")
    me = await api.ok("GetUser", creds)
    assert me.text("User/UserName") == "alicia"
    # Membership, both directions.
    group = await api.ok("GetGroup", GroupName="devs")
    assert group.member_texts("Users", "UserName") == ["alicia"]
    assert group.member_texts("Users", "Arn") == [new_arn]
    groups = await api.ok("ListGroupsForUser", UserName="alicia")
    assert groups.member_texts("Groups", "GroupName") == ["devs"]
    # Keys and policies follow the user.
    keys = await api.ok("ListAccessKeys", UserName="alicia")
    assert keys.member_texts("AccessKeyMetadata", "AccessKeyId") == [creds.access_key_id]
    assert keys.member_texts("AccessKeyMetadata", "UserName") == ["alicia"]
    attached = await api.ok("ListAttachedUserPolicies", UserName="alicia")
    assert attached.member_texts("AttachedPolicies", "PolicyArn") == [arn]
    entities = await api.ok("ListEntitiesForPolicy", PolicyArn=arn)
    assert entities.member_texts("PolicyUsers", "UserName") == ["alicia"]
    inline = await api.ok("ListUserPolicies", UserName="alicia")
    assert inline.member_texts("PolicyNames") == ["p"]
    # The permissions still apply to the renamed user (attached and inline).
    await api.ok("ListRoles", creds)
    await api.ok("ListGroups", creds)
    # The user can be cleaned up completely under its new name.
    await api.ok("RemoveUserFromGroup", GroupName="devs", UserName="alicia")
    await api.ok("DetachUserPolicy", UserName="alicia", PolicyArn=arn)
    await api.ok("DeleteUserPolicy", UserName="alicia", PolicyName="p")
    await api.ok("DeleteAccessKey", UserName="alicia", AccessKeyId=creds.access_key_id)
    await api.ok("DeleteUser", UserName="alicia")
    await api.ok("DeletePolicy", PolicyArn=arn)
    await api.ok("DeleteGroup", GroupName="devs")


async def test_delete_user(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("DeleteUser", UserName="alice")
    (await api.call("GetUser", UserName="alice")).expect(404, "NoSuchEntity")
    (await api.call("DeleteUser", UserName="alice")).expect(
        404, "NoSuchEntity", "The user with name alice cannot be found."
    )
    # The name is free again.
    await api.ok("CreateUser", UserName="ALICE")


async def test_delete_user_conflicts_with_key(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    key = await api.ok("CreateAccessKey", UserName="alice")
    (await api.call("DeleteUser", UserName="alice")).expect(409, "DeleteConflict")
    await api.ok(
        "DeleteAccessKey", UserName="alice", AccessKeyId=key.text("AccessKey/AccessKeyId") or ""
    )
    await api.ok("DeleteUser", UserName="alice")


async def test_delete_user_conflicts_with_group(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("CreateGroup", GroupName="g")
    await api.ok("AddUserToGroup", GroupName="g", UserName="alice")
    (await api.call("DeleteUser", UserName="alice")).expect(409, "DeleteConflict")
    await api.ok("RemoveUserFromGroup", GroupName="g", UserName="alice")
    await api.ok("DeleteUser", UserName="alice")
    # The group no longer lists the deleted user.
    assert (await api.ok("GetGroup", GroupName="g")).members("Users") == []


async def test_delete_user_conflicts_with_policies(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("PutUserPolicy", UserName="alice", PolicyName="p", PolicyDocument=allow("iam:*"))
    (await api.call("DeleteUser", UserName="alice")).expect(409, "DeleteConflict")
    await api.ok("DeleteUserPolicy", UserName="alice", PolicyName="p")
    ro = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    await api.ok("AttachUserPolicy", UserName="alice", PolicyArn=ro)
    (await api.call("DeleteUser", UserName="alice")).expect(409, "DeleteConflict")
    await api.ok("DetachUserPolicy", UserName="alice", PolicyArn=ro)
    await api.ok("DeleteUser", UserName="alice")


@pytest.mark.parametrize(
    ("name", "constraint"),
    [
        ("bad name", r"Member must satisfy regular expression pattern: [\w+=,.@-]+"),
        ("x" * 65, "Member must have length less than or equal to 64"),
        ("", "Member must have length greater than or equal to 1"),
    ],
)
async def test_create_user_name_validation(api: Api, name: str, constraint: str) -> None:
    (await api.call("CreateUser", UserName=name)).expect(
        400,
        "ValidationError",
        f"1 validation error detected: Value '{name}' at 'userName' failed to satisfy "
        f"constraint: {constraint}",
    )


async def test_create_user_bad_path(api: Api) -> None:
    reply = await api.call("CreateUser", UserName="alice", Path="no-slashes")
    reply.expect(400, "ValidationError")
    assert "at 'path'" in (reply.message or "")
    (await api.call("GetUser", UserName="alice")).expect(404, "NoSuchEntity")


# -- user tags ---------------------------------------------------------------------------


async def test_user_tags_roundtrip(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice", params=tag_params({"team": "blue"}))
    got = await api.ok("GetUser", UserName="alice")
    assert got.member_texts("User/Tags", "Key") == ["team"]
    await api.ok("TagUser", UserName="alice", params=tag_params({"env": "prod", "Team": "red"}))
    tags = await api.ok("ListUserTags", UserName="alice")
    pairs = dict(
        zip(tags.member_texts("Tags", "Key"), tags.member_texts("Tags", "Value"), strict=True)
    )
    # Tag keys are case-insensitive: "Team" replaced "team".
    assert pairs == {"Team": "red", "env": "prod"}
    assert tags.text("IsTruncated") == "false"
    await api.ok("UntagUser", UserName="alice", params=list_params("TagKeys", ["TEAM"]))
    tags = await api.ok("ListUserTags", UserName="alice")
    assert tags.member_texts("Tags", "Key") == ["env"]
    # ListUsers omits tags, as AWS does.
    listed = await api.ok("ListUsers")
    assert (
        listed.members("Users")[0].find("{https://iam.amazonaws.com/doc/2010-05-08/}Tags") is None
    )


async def test_untag_user_with_empty_key_list(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice", params=tag_params({"a": "1"}))
    await api.ok("UntagUser", UserName="alice", params={"TagKeys": ""})
    tags = await api.ok("ListUserTags", UserName="alice")
    assert tags.member_texts("Tags", "Key") == ["a"]


async def test_untag_user_requires_tag_keys(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    (await api.call("UntagUser", UserName="alice")).expect(
        400,
        "ValidationError",
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: "
        "Member must not be null",
    )


async def test_tag_user_reserved_prefix(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    (await api.call("TagUser", UserName="alice", params=tag_params({"aws:x": "1"}))).expect(
        400, "InvalidInput"
    )
    (await api.call("TagUser", UserName="alice", params=tag_params({"AWS:x": "1"}))).expect(
        400, "InvalidInput"
    )
    (await api.call("CreateUser", UserName="bob", params=tag_params({"aws:y": "1"}))).expect(
        400, "InvalidInput"
    )
    (await api.call("GetUser", UserName="bob")).expect(404, "NoSuchEntity")
    tags = await api.ok("ListUserTags", UserName="alice")
    assert tags.members("Tags") == []


async def test_tag_user_over_limit(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    fifty = {f"k{i}": "v" for i in range(limits.TAGS_PER_ENTITY)}
    await api.ok("TagUser", UserName="alice", params=tag_params(fifty))
    (await api.call("TagUser", UserName="alice", params=tag_params({"one": "more"}))).expect(
        409, "LimitExceeded"
    )
    tags = await api.ok("ListUserTags", UserName="alice")
    assert len(tags.members("Tags")) == limits.TAGS_PER_ENTITY
    # Re-tagging an existing key does not count as a new tag.
    await api.ok("TagUser", UserName="alice", params=tag_params({"K0": "changed"}))


async def test_tag_user_more_than_fifty_in_one_request(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    many = {f"k{i}": "v" for i in range(limits.TAGS_PER_ENTITY + 1)}
    reply = await api.call("TagUser", UserName="alice", params=tag_params(many))
    # The model caps the list at 50, so this is a constraint violation, not a quota.
    reply.expect(400, "ValidationError")
    assert (
        "at 'tags' failed to satisfy constraint: Member must have length less than or "
        "equal to 50" in (reply.message or "")
    )
    assert (await api.ok("ListUserTags", UserName="alice")).members("Tags") == []


async def test_tag_missing_user(api: Api) -> None:
    (await api.call("TagUser", UserName="ghost", params=tag_params({"a": "b"}))).expect(
        404, "NoSuchEntity"
    )
    (await api.call("ListUserTags", UserName="ghost")).expect(404, "NoSuchEntity")


# -- groups ------------------------------------------------------------------------------


async def test_group_lifecycle(api: Api) -> None:
    created = await api.ok("CreateGroup", GroupName="Admins", Path="/ops/")
    assert created.text("Group/Arn") == f"arn:aws:iam::{api.account_id}:group/ops/Admins"
    assert re.fullmatch(r"AGPA[A-Z0-9]{17}", created.text("Group/GroupId") or "")
    (await api.call("CreateGroup", GroupName="admins")).expect(
        409, "EntityAlreadyExists", "Group with name admins already exists."
    )
    got = await api.ok("GetGroup", GroupName="ADMINS")
    assert got.text("Group/GroupName") == "Admins"
    assert got.members("Users") == []
    assert got.text("IsTruncated") == "false"
    listed = await api.ok("ListGroups", PathPrefix="/ops/")
    assert listed.member_texts("Groups", "GroupName") == ["Admins"]
    assert (await api.ok("ListGroups", PathPrefix="/dev/")).members("Groups") == []

    await api.ok("UpdateGroup", GroupName="Admins", NewGroupName="Operators", NewPath="/x/")
    (await api.call("GetGroup", GroupName="Admins")).expect(
        404, "NoSuchEntity", "The group with name Admins cannot be found."
    )
    renamed = await api.ok("GetGroup", GroupName="operators")
    assert renamed.text("Group/Arn") == f"arn:aws:iam::{api.account_id}:group/x/Operators"
    await api.ok("DeleteGroup", GroupName="Operators")
    (await api.call("DeleteGroup", GroupName="Operators")).expect(404, "NoSuchEntity")


async def test_get_group_lists_members(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="devs")
    for name in ["carol", "alice", "bob"]:
        await api.ok("CreateUser", UserName=name)
        await api.ok("AddUserToGroup", GroupName="devs", UserName=name)
    # Adding twice is a no-op.
    await api.ok("AddUserToGroup", GroupName="devs", UserName="ALICE")
    got = await api.ok("GetGroup", GroupName="devs")
    assert got.member_texts("Users", "UserName") == ["alice", "bob", "carol"]
    page = await api.ok("GetGroup", GroupName="devs", MaxItems=2)
    assert page.member_texts("Users", "UserName") == ["alice", "bob"]
    assert page.text("IsTruncated") == "true"
    rest = await api.ok("GetGroup", GroupName="devs", Marker=page.text("Marker") or "")
    assert rest.member_texts("Users", "UserName") == ["carol"]
    assert rest.find("Marker") is None
    await api.ok("RemoveUserFromGroup", GroupName="devs", UserName="bob")
    got = await api.ok("GetGroup", GroupName="devs")
    assert got.member_texts("Users", "UserName") == ["alice", "carol"]
    (await api.call("RemoveUserFromGroup", GroupName="devs", UserName="bob")).expect(
        404, "NoSuchEntity"
    )


async def test_group_rename_keeps_membership_and_policies(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="devs")
    creds, _ = await api.new_user("alice")
    await api.ok("AddUserToGroup", GroupName="devs", UserName="alice")
    await api.ok(
        "PutGroupPolicy", GroupName="devs", PolicyName="p", PolicyDocument=allow("iam:ListUsers")
    )
    await api.ok(
        "AttachGroupPolicy", GroupName="devs", PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    )
    await api.ok("UpdateGroup", GroupName="devs", NewGroupName="engineers")
    groups = await api.ok("ListGroupsForUser", UserName="alice")
    assert groups.member_texts("Groups", "GroupName") == ["engineers"]
    assert (await api.ok("GetGroup", GroupName="engineers")).member_texts("Users", "UserName") == [
        "alice"
    ]
    entities = await api.ok(
        "ListEntitiesForPolicy", PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    )
    assert entities.member_texts("PolicyGroups", "GroupName") == ["engineers"]
    # The member still gets the group's permissions (inline and attached).
    await api.ok("ListUsers", creds)
    await api.ok("ListRoles", creds)


async def test_add_user_to_group_missing_entities(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="g")
    await api.ok("CreateUser", UserName="u")
    (await api.call("AddUserToGroup", GroupName="g", UserName="ghost")).expect(
        404, "NoSuchEntity", "The user with name ghost cannot be found."
    )
    (await api.call("AddUserToGroup", GroupName="nope", UserName="u")).expect(
        404, "NoSuchEntity", "The group with name nope cannot be found."
    )
    (await api.call("ListGroupsForUser", UserName="ghost")).expect(404, "NoSuchEntity")


async def test_delete_group_conflicts(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="g")
    await api.ok("CreateUser", UserName="u")
    await api.ok("AddUserToGroup", GroupName="g", UserName="u")
    (await api.call("DeleteGroup", GroupName="g")).expect(409, "DeleteConflict")
    await api.ok("RemoveUserFromGroup", GroupName="g", UserName="u")
    await api.ok("PutGroupPolicy", GroupName="g", PolicyName="p", PolicyDocument=allow("iam:*"))
    (await api.call("DeleteGroup", GroupName="g")).expect(409, "DeleteConflict")
    await api.ok("DeleteGroupPolicy", GroupName="g", PolicyName="p")
    await api.ok(
        "AttachGroupPolicy", GroupName="g", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess"
    )
    (await api.call("DeleteGroup", GroupName="g")).expect(409, "DeleteConflict")
    await api.ok(
        "DetachGroupPolicy", GroupName="g", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess"
    )
    await api.ok("DeleteGroup", GroupName="g")


async def test_groups_per_user_quota(api: Api) -> None:
    await api.ok("CreateUser", UserName="u")
    for i in range(limits.GROUPS_PER_USER + 1):
        await api.ok("CreateGroup", GroupName=f"g{i:02d}")
    for i in range(limits.GROUPS_PER_USER):
        await api.ok("AddUserToGroup", GroupName=f"g{i:02d}", UserName="u")
    (await api.call("AddUserToGroup", GroupName="g10", UserName="u")).expect(409, "LimitExceeded")
    groups = await api.ok("ListGroupsForUser", UserName="u")
    assert len(groups.members("Groups")) == limits.GROUPS_PER_USER
    assert (await api.ok("GetGroup", GroupName="g10")).members("Users") == []


async def test_list_groups_paginates(api: Api) -> None:
    for i in range(5):
        await api.ok("CreateGroup", GroupName=f"g{i}")
    first = await api.ok("ListGroups", MaxItems=2)
    assert first.member_texts("Groups", "GroupName") == ["g0", "g1"]
    second = await api.ok("ListGroups", MaxItems=2, Marker=first.text("Marker") or "")
    assert second.member_texts("Groups", "GroupName") == ["g2", "g3"]
    last = await api.ok("ListGroups", MaxItems=2, Marker=second.text("Marker") or "")
    assert last.member_texts("Groups", "GroupName") == ["g4"]
    assert last.text("IsTruncated") == "false"
    assert last.find("Marker") is None


async def test_groups_per_user_quota_holds_under_concurrency(api: Api) -> None:
    await api.ok("CreateUser", UserName="u")
    count = limits.GROUPS_PER_USER + 3
    for i in range(count):
        await api.ok("CreateGroup", GroupName=f"g{i:02d}")
    replies = await asyncio.gather(
        *[api.call("AddUserToGroup", GroupName=f"g{i:02d}", UserName="u") for i in range(count)]
    )
    assert sum(r.ok for r in replies) == limits.GROUPS_PER_USER
    assert all(r.code == "LimitExceeded" and r.status == 409 for r in replies if not r.ok)
    groups = await api.ok("ListGroupsForUser", UserName="u")
    assert len(groups.members("Groups")) == limits.GROUPS_PER_USER
    # Both sides of the membership agree.
    members = 0
    for i in range(count):
        group = await api.ok("GetGroup", GroupName=f"g{i:02d}")
        members += len(group.members("Users"))
    assert members == limits.GROUPS_PER_USER


async def test_case_variants_created_concurrently(api: Api) -> None:
    replies = await asyncio.gather(
        api.call("CreateUser", UserName="dup"), api.call("CreateUser", UserName="DUP")
    )
    assert sorted((r.status, r.code) for r in replies) == [
        (200, None),
        (409, "EntityAlreadyExists"),
    ]
    assert len((await api.ok("ListUsers")).members("Users")) == 1


async def test_duplicate_tag_keys_in_one_request(api: Api) -> None:
    await api.ok("CreateUser", UserName="u")
    reply = await api.call("TagUser", UserName="u", params=tag_params([("a", "1"), ("A", "2")]))
    reply.expect(400, "InvalidInput")
    bad_value = await api.call("TagUser", UserName="u", params=tag_params({"a": "1*"}))
    bad_value.expect(400, "ValidationError")
    assert "at 'tags.member.1.value'" in (bad_value.message or "")
    assert (await api.ok("ListUserTags", UserName="u")).members("Tags") == []


async def test_update_group_to_taken_name(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="a")
    await api.ok("CreateGroup", GroupName="b")
    (await api.call("UpdateGroup", GroupName="a", NewGroupName="B")).expect(
        409, "EntityAlreadyExists", "Group with name B already exists."
    )
    names = (await api.ok("ListGroups")).member_texts("Groups", "GroupName")
    assert names == ["a", "b"]
