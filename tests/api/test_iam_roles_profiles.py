"""API tests: IAM roles, trust policies, role tags and instance profiles."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from broker.core import limits
from tests.api.conftest import TRUST_EC2, Api, allow, decode_document, list_params, tag_params

TRUST_ACCOUNT = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


async def test_create_role_returns_encoded_trust_policy(api: Api) -> None:
    created = await api.ok(
        "CreateRole", RoleName="app", Path="/svc/", AssumeRolePolicyDocument=TRUST_EC2
    )
    assert created.text("Role/Arn") == f"arn:aws:iam::{api.account_id}:role/svc/app"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", created.text("Role/RoleId") or "")
    raw = created.text("Role/AssumeRolePolicyDocument") or ""
    # Percent-encoded (RFC 3986, no "+" for spaces), decoding gives the document back.
    assert raw.startswith("%7B")
    assert "+" not in raw and '"' not in raw
    assert decode_document(raw) == json.loads(TRUST_EC2)
    assert urllib.parse.unquote(raw) == TRUST_EC2
    assert created.text("Role/MaxSessionDuration") == "3600"

    got = await api.ok("GetRole", RoleName="APP")
    assert got.text("Role/RoleName") == "app"
    assert decode_document(got.text("Role/AssumeRolePolicyDocument")) == json.loads(TRUST_EC2)
    assert got.text("Role/MaxSessionDuration") == "3600"
    assert got.find("Role/RoleLastUsed") is not None


async def test_create_role_with_description_duration_and_tags(api: Api) -> None:
    await api.ok(
        "CreateRole",
        RoleName="r",
        AssumeRolePolicyDocument=TRUST_EC2,
        Description="my role",
        MaxSessionDuration=43200,
        params=tag_params({"team": "blue"}),
    )
    got = await api.ok("GetRole", RoleName="r")
    assert got.text("Role/Description") == "my role"
    assert got.text("Role/MaxSessionDuration") == "43200"
    assert got.member_texts("Role/Tags", "Key") == ["team"]
    listed = await api.ok("ListRoles")
    assert listed.member_texts("Roles", "RoleName") == ["r"]
    assert listed.find("Roles/member/Tags") is None


@pytest.mark.parametrize(
    ("value", "constraint"),
    [
        ("3599", "Member must have value greater than or equal to 3600"),
        ("43201", "Member must have value less than or equal to 43200"),
    ],
)
async def test_max_session_duration_bounds(api: Api, value: str, constraint: str) -> None:
    reply = await api.call(
        "CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2, MaxSessionDuration=value
    )
    reply.expect(
        400,
        "ValidationError",
        f"1 validation error detected: Value '{value}' at 'maxSessionDuration' failed to "
        f"satisfy constraint: {constraint}",
    )
    (await api.call("GetRole", RoleName="r")).expect(404, "NoSuchEntity")


async def test_role_names_case_insensitive_unique(api: Api) -> None:
    await api.ok("CreateRole", RoleName="Deploy", AssumeRolePolicyDocument=TRUST_EC2)
    (await api.call("CreateRole", RoleName="deploy", AssumeRolePolicyDocument=TRUST_EC2)).expect(
        409, "EntityAlreadyExists", "Role with name deploy already exists."
    )


async def test_get_missing_role(api: Api) -> None:
    (await api.call("GetRole", RoleName="ghost")).expect(
        404, "NoSuchEntity", "The role with name ghost cannot be found."
    )


async def test_create_role_malformed_trust_policy(api: Api) -> None:
    # An identity policy (no Principal) is not a valid trust policy.
    reply = await api.call("CreateRole", RoleName="r", AssumeRolePolicyDocument=allow("s3:*"))
    reply.expect(400, "MalformedPolicyDocument")
    assert reply.fault == "Sender"
    (await api.call("CreateRole", RoleName="r", AssumeRolePolicyDocument="{not json")).expect(
        400, "MalformedPolicyDocument"
    )
    (await api.call("GetRole", RoleName="r")).expect(404, "NoSuchEntity")
    assert (await api.ok("ListRoles")).members("Roles") == []


async def test_create_role_trust_policy_too_large(api: Api) -> None:
    trust = json.loads(TRUST_ACCOUNT)
    trust["Statement"][0]["Sid"] = "S" * limits.ASSUME_ROLE_POLICY_SIZE
    (await api.call("CreateRole", RoleName="r", AssumeRolePolicyDocument=json.dumps(trust))).expect(
        409, "LimitExceeded"
    )
    (await api.call("GetRole", RoleName="r")).expect(404, "NoSuchEntity")


async def test_update_role(api: Api) -> None:
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2, Description="d1")
    reply = await api.ok("UpdateRole", RoleName="r", MaxSessionDuration=7200)
    assert reply.result is not None  # <UpdateRoleResult> is present even though empty
    got = await api.ok("GetRole", RoleName="r")
    assert got.text("Role/MaxSessionDuration") == "7200"
    assert got.text("Role/Description") == "d1"
    await api.ok("UpdateRole", RoleName="r", Description="d2")
    got = await api.ok("GetRole", RoleName="r")
    assert got.text("Role/Description") == "d2"
    assert got.text("Role/MaxSessionDuration") == "7200"
    (await api.call("UpdateRole", RoleName="r", MaxSessionDuration=43201)).expect(
        400, "ValidationError"
    )
    (await api.call("UpdateRole", RoleName="r", MaxSessionDuration=3599)).expect(
        400, "ValidationError"
    )
    assert (await api.ok("GetRole", RoleName="r")).text("Role/MaxSessionDuration") == "7200"
    (await api.call("UpdateRole", RoleName="ghost", Description="x")).expect(404, "NoSuchEntity")


async def test_update_role_description(api: Api) -> None:
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    reply = await api.ok("UpdateRoleDescription", RoleName="r", Description="new text")
    assert reply.text("Role/Description") == "new text"
    assert reply.text("Role/RoleName") == "r"
    assert (await api.ok("GetRole", RoleName="r")).text("Role/Description") == "new text"
    (await api.call("UpdateRoleDescription", RoleName="r")).expect(400, "ValidationError")


async def test_update_assume_role_policy(api: Api) -> None:
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("UpdateAssumeRolePolicy", RoleName="r", PolicyDocument=TRUST_ACCOUNT)
    got = await api.ok("GetRole", RoleName="r")
    assert decode_document(got.text("Role/AssumeRolePolicyDocument")) == json.loads(TRUST_ACCOUNT)

    for bad in ["{", allow("iam:*"), json.dumps({"Version": "2012-10-17", "Statement": []})]:
        reply = await api.call("UpdateAssumeRolePolicy", RoleName="r", PolicyDocument=bad)
        reply.expect(400, "MalformedPolicyDocument")
    # The old trust policy is kept.
    got = await api.ok("GetRole", RoleName="r")
    assert decode_document(got.text("Role/AssumeRolePolicyDocument")) == json.loads(TRUST_ACCOUNT)
    (await api.call("UpdateAssumeRolePolicy", RoleName="ghost", PolicyDocument=TRUST_EC2)).expect(
        404, "NoSuchEntity"
    )


async def test_delete_role_conflicts(api: Api) -> None:
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("PutRolePolicy", RoleName="r", PolicyName="p", PolicyDocument=allow("s3:*"))
    (await api.call("DeleteRole", RoleName="r")).expect(409, "DeleteConflict")
    await api.ok("DeleteRolePolicy", RoleName="r", PolicyName="p")
    ro = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    await api.ok("AttachRolePolicy", RoleName="r", PolicyArn=ro)
    (await api.call("DeleteRole", RoleName="r")).expect(409, "DeleteConflict")
    await api.ok("DetachRolePolicy", RoleName="r", PolicyArn=ro)
    await api.ok("CreateInstanceProfile", InstanceProfileName="ip")
    await api.ok("AddRoleToInstanceProfile", InstanceProfileName="ip", RoleName="r")
    (await api.call("DeleteRole", RoleName="r")).expect(409, "DeleteConflict")
    await api.ok("RemoveRoleFromInstanceProfile", InstanceProfileName="ip", RoleName="r")
    await api.ok("DeleteRole", RoleName="r")
    (await api.call("GetRole", RoleName="r")).expect(404, "NoSuchEntity")
    (await api.call("DeleteRole", RoleName="r")).expect(404, "NoSuchEntity")


async def test_list_roles_path_prefix_and_pages(api: Api) -> None:
    for name, path in [("a", "/x/"), ("b", "/x/"), ("c", "/y/"), ("d", "/x/")]:
        await api.ok("CreateRole", RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST_EC2)
    x = await api.ok("ListRoles", PathPrefix="/x/")
    assert x.member_texts("Roles", "RoleName") == ["a", "b", "d"]
    for member in x.members("Roles"):
        doc = member.findtext("{https://iam.amazonaws.com/doc/2010-05-08/}AssumeRolePolicyDocument")
        assert decode_document(doc) == json.loads(TRUST_EC2)
    page = await api.ok("ListRoles", MaxItems=3)
    assert page.member_texts("Roles", "RoleName") == ["a", "b", "c"]
    assert page.text("IsTruncated") == "true"
    rest = await api.ok("ListRoles", MaxItems=3, Marker=page.text("Marker") or "")
    assert rest.member_texts("Roles", "RoleName") == ["d"]
    assert rest.text("IsTruncated") == "false"


async def test_role_tags(api: Api) -> None:
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("TagRole", RoleName="r", params=tag_params({"a": "1", "b": "2"}))
    tags = await api.ok("ListRoleTags", RoleName="r")
    assert tags.member_texts("Tags", "Key") == ["a", "b"]
    await api.ok("UntagRole", RoleName="r", params=list_params("TagKeys", ["a"]))
    assert (await api.ok("ListRoleTags", RoleName="r")).member_texts("Tags", "Key") == ["b"]
    (await api.call("TagRole", RoleName="r", params=tag_params({"aws:k": "v"}))).expect(
        400, "InvalidInput"
    )
    (await api.call("TagRole", RoleName="ghost", params=tag_params({"k": "v"}))).expect(
        404, "NoSuchEntity"
    )


# -- instance profiles --------------------------------------------------------------------


async def test_instance_profile_lifecycle(api: Api) -> None:
    created = await api.ok("CreateInstanceProfile", InstanceProfileName="web", Path="/p/")
    assert created.text("InstanceProfile/Arn") == (
        f"arn:aws:iam::{api.account_id}:instance-profile/p/web"
    )
    assert re.fullmatch(
        r"AIPA[A-Z0-9]{17}", created.text("InstanceProfile/InstanceProfileId") or ""
    )
    assert created.members("InstanceProfile/Roles") == []
    (await api.call("CreateInstanceProfile", InstanceProfileName="WEB")).expect(
        409, "EntityAlreadyExists"
    )
    await api.ok("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("AddRoleToInstanceProfile", InstanceProfileName="web", RoleName="app")
    got = await api.ok("GetInstanceProfile", InstanceProfileName="web")
    assert got.member_texts("InstanceProfile/Roles", "RoleName") == ["app"]
    role = got.members("InstanceProfile/Roles")[0]
    doc = role.findtext("{https://iam.amazonaws.com/doc/2010-05-08/}AssumeRolePolicyDocument")
    assert decode_document(doc) == json.loads(TRUST_EC2)
    listed = await api.ok("ListInstanceProfiles", PathPrefix="/p/")
    assert listed.member_texts("InstanceProfiles", "InstanceProfileName") == ["web"]
    assert (await api.ok("ListInstanceProfiles", PathPrefix="/q/")).members(
        "InstanceProfiles"
    ) == []

    (await api.call("DeleteInstanceProfile", InstanceProfileName="web")).expect(
        409, "DeleteConflict"
    )
    await api.ok("RemoveRoleFromInstanceProfile", InstanceProfileName="web", RoleName="app")
    (
        await api.call("RemoveRoleFromInstanceProfile", InstanceProfileName="web", RoleName="app")
    ).expect(404, "NoSuchEntity")
    got = await api.ok("GetInstanceProfile", InstanceProfileName="web")
    assert got.members("InstanceProfile/Roles") == []
    await api.ok("DeleteInstanceProfile", InstanceProfileName="web")
    (await api.call("GetInstanceProfile", InstanceProfileName="web")).expect(
        404, "NoSuchEntity", "The instance profile with name web cannot be found."
    )


async def test_instance_profile_holds_one_role(api: Api) -> None:
    await api.ok("CreateInstanceProfile", InstanceProfileName="ip")
    await api.ok("CreateRole", RoleName="r1", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("CreateRole", RoleName="r2", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("AddRoleToInstanceProfile", InstanceProfileName="ip", RoleName="r1")
    (await api.call("AddRoleToInstanceProfile", InstanceProfileName="ip", RoleName="r2")).expect(
        409, "LimitExceeded"
    )
    got = await api.ok("GetInstanceProfile", InstanceProfileName="ip")
    assert got.member_texts("InstanceProfile/Roles", "RoleName") == ["r1"]
    assert (await api.ok("ListInstanceProfilesForRole", RoleName="r2")).members(
        "InstanceProfiles"
    ) == []
    # Remove, then the other role fits.
    await api.ok("RemoveRoleFromInstanceProfile", InstanceProfileName="ip", RoleName="r1")
    await api.ok("AddRoleToInstanceProfile", InstanceProfileName="ip", RoleName="r2")
    got = await api.ok("GetInstanceProfile", InstanceProfileName="ip")
    assert got.member_texts("InstanceProfile/Roles", "RoleName") == ["r2"]
    # r1 is no longer in any profile and can be deleted.
    assert (await api.ok("ListInstanceProfilesForRole", RoleName="r1")).members(
        "InstanceProfiles"
    ) == []
    await api.ok("DeleteRole", RoleName="r1")


async def test_list_instance_profiles_for_role(api: Api) -> None:
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    for name in ["b", "a", "c"]:
        await api.ok("CreateInstanceProfile", InstanceProfileName=name)
        await api.ok("AddRoleToInstanceProfile", InstanceProfileName=name, RoleName="r")
    listed = await api.ok("ListInstanceProfilesForRole", RoleName="r")
    assert listed.member_texts("InstanceProfiles", "InstanceProfileName") == ["a", "b", "c"]
    for member in listed.members("InstanceProfiles"):
        roles = member.find("{https://iam.amazonaws.com/doc/2010-05-08/}Roles")
        assert roles is not None
        assert [
            r.findtext("{https://iam.amazonaws.com/doc/2010-05-08/}RoleName") for r in roles
        ] == ["r"]
    page = await api.ok("ListInstanceProfilesForRole", RoleName="r", MaxItems=2)
    assert page.text("IsTruncated") == "true"
    (await api.call("ListInstanceProfilesForRole", RoleName="ghost")).expect(404, "NoSuchEntity")


async def test_add_role_to_profile_missing_entities(api: Api) -> None:
    await api.ok("CreateInstanceProfile", InstanceProfileName="ip")
    (await api.call("AddRoleToInstanceProfile", InstanceProfileName="ip", RoleName="ghost")).expect(
        404, "NoSuchEntity"
    )
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    (await api.call("AddRoleToInstanceProfile", InstanceProfileName="nope", RoleName="r")).expect(
        404, "NoSuchEntity"
    )
    assert (await api.ok("GetInstanceProfile", InstanceProfileName="ip")).members(
        "InstanceProfile/Roles"
    ) == []


async def test_instance_profile_tags(api: Api) -> None:
    await api.ok("CreateInstanceProfile", InstanceProfileName="ip", params=tag_params({"a": "1"}))
    got = await api.ok("GetInstanceProfile", InstanceProfileName="ip")
    assert got.member_texts("InstanceProfile/Tags", "Key") == ["a"]
    await api.ok("TagInstanceProfile", InstanceProfileName="ip", params=tag_params({"b": "2"}))
    tags = await api.ok("ListInstanceProfileTags", InstanceProfileName="ip")
    assert tags.member_texts("Tags", "Key") == ["a", "b"]
    await api.ok(
        "UntagInstanceProfile", InstanceProfileName="ip", params=list_params("TagKeys", ["a"])
    )
    tags = await api.ok("ListInstanceProfileTags", InstanceProfileName="ip")
    assert tags.member_texts("Tags", "Key") == ["b"]
