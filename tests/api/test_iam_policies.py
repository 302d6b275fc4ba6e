"""API tests: managed policies and versions, attachments, inline policies and size quotas."""

from __future__ import annotations

import json

import pytest

from broker.core import limits
from broker.core.policy import policy_size
from tests.api.conftest import TRUST_EC2, Api, allow, decode_document, list_params, q

AWS_MANAGED = {
    "AdministratorAccess",
    "ReadOnlyAccess",
    "IAMFullAccess",
    "IAMReadOnlyAccess",
    "IAMUserChangePassword",
}
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"


def sized(size: int) -> str:
    """An identity policy whose quota size (whitespace not counted) is exactly ``size``."""

    def document(resource: str) -> str:
        # Pretty-printed on purpose: whitespace must not count towards the quota.
        statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": resource}
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, indent=4)

    base = policy_size(document("arn:aws:s3:::"))
    assert size > base
    text = document("arn:aws:s3:::" + "b" * (size - base))
    assert policy_size(text) == size
    return text


async def _policy(api: Api, name: str, document: str | None = None, path: str = "/") -> str:
    reply = await api.ok(
        "CreatePolicy", PolicyName=name, Path=path, PolicyDocument=document or allow("s3:*")
    )
    arn = reply.text("Policy/Arn")
    assert arn is not None
    return arn


# -- managed policies --------------------------------------------------------------------


async def test_create_and_get_policy(api: Api) -> None:
    created = await api.ok(
        "CreatePolicy",
        PolicyName="readers",
        Path="/team/",
        PolicyDocument=allow("iam:List*"),
        Description="read things",
    )
    arn = f"arn:aws:iam::{api.account_id}:policy/team/readers"
    assert created.text("Policy/Arn") == arn
    assert created.text("Policy/DefaultVersionId") == "v1"
    assert created.text("Policy/AttachmentCount") == "0"
    assert created.text("Policy/IsAttachable") == "true"
    assert (created.text("Policy/PolicyId") or "").startswith("ANPA")
    got = await api.ok("GetPolicy", PolicyArn=arn)
    assert got.text("Policy/PolicyName") == "readers"
    assert got.text("Policy/Path") == "/team/"
    assert got.text("Policy/Description") == "read things"
    (await api.call("CreatePolicy", PolicyName="READERS", PolicyDocument=allow("s3:*"))).expect(
        409, "EntityAlreadyExists"
    )
    version = await api.ok("GetPolicyVersion", PolicyArn=arn, VersionId="v1")
    assert version.text("PolicyVersion/IsDefaultVersion") == "true"
    assert decode_document(version.text("PolicyVersion/Document")) == json.loads(allow("iam:List*"))


async def test_get_missing_policy(api: Api) -> None:
    arn = f"arn:aws:iam::{api.account_id}:policy/nope"
    (await api.call("GetPolicy", PolicyArn=arn)).expect(
        404, "NoSuchEntity", f"Policy {arn} does not exist or is not attachable."
    )
    (await api.call("GetPolicy", PolicyArn="arn:aws:iam::aws:policy/NoSuchPolicyAtAll")).expect(
        404, "NoSuchEntity"
    )


async def test_aws_managed_policies_present(api: Api) -> None:
    listed = await api.ok("ListPolicies", Scope="AWS")
    arns = set(listed.member_texts("Policies", "Arn"))
    assert arns == {f"arn:aws:iam::aws:policy/{n}" for n in AWS_MANAGED}
    got = await api.ok("GetPolicy", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    assert got.text("Policy/DefaultVersionId") == "v1"
    version = await api.ok(
        "GetPolicyVersion", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess", VersionId="v1"
    )
    document = decode_document(version.text("PolicyVersion/Document"))
    assert document["Statement"][0] == {"Effect": "Allow", "Action": "*", "Resource": "*"}
    # AWS-managed policies cannot be changed or deleted.
    (await api.call("DeletePolicy", PolicyArn=READ_ONLY)).expect(400, "InvalidInput")
    (
        await api.call("CreatePolicyVersion", PolicyArn=READ_ONLY, PolicyDocument=allow("s3:*"))
    ).expect(400, "InvalidInput")


async def test_list_policies_scope_and_only_attached(api: Api) -> None:
    mine = await _policy(api, "mine")
    other = await _policy(api, "other", path="/x/")
    local = await api.ok("ListPolicies", Scope="Local")
    assert local.member_texts("Policies", "Arn") == [mine, other]
    everything = await api.ok("ListPolicies", Scope="All")
    assert set(everything.member_texts("Policies", "Arn")) == {mine, other} | {
        f"arn:aws:iam::aws:policy/{n}" for n in AWS_MANAGED
    }
    default = await api.ok("ListPolicies")
    assert len(default.members("Policies")) == len(AWS_MANAGED) + 2
    assert (await api.ok("ListPolicies", OnlyAttached=True)).members("Policies") == []

    await api.ok("CreateUser", UserName="u")
    await api.ok("AttachUserPolicy", UserName="u", PolicyArn=mine)
    await api.ok("AttachUserPolicy", UserName="u", PolicyArn=READ_ONLY)
    attached = await api.ok("ListPolicies", OnlyAttached=True)
    assert sorted(attached.member_texts("Policies", "Arn")) == sorted([mine, READ_ONLY])
    assert attached.member_texts("Policies", "AttachmentCount") == ["1", "1"]
    aws_attached = await api.ok("ListPolicies", Scope="AWS", OnlyAttached=True)
    assert aws_attached.member_texts("Policies", "Arn") == [READ_ONLY]
    local_attached = await api.ok("ListPolicies", Scope="Local", OnlyAttached="true")
    assert local_attached.member_texts("Policies", "Arn") == [mine]
    prefixed = await api.ok("ListPolicies", Scope="Local", PathPrefix="/x/")
    assert prefixed.member_texts("Policies", "Arn") == [other]
    (await api.call("ListPolicies", Scope="Mine")).expect(
        400,
        "ValidationError",
        "1 validation error detected: Value 'Mine' at 'scope' failed to satisfy constraint: "
        "Member must satisfy enum value set: [All, AWS, Local]",
    )


async def test_list_policies_paginates(api: Api) -> None:
    seen: list[str] = []
    marker: str | None = None
    while True:
        extra: dict[str, str] = {"Marker": marker} if marker else {}
        page = await api.ok("ListPolicies", params=extra, Scope="AWS", MaxItems=2)
        seen += page.member_texts("Policies", "PolicyName")
        if page.text("IsTruncated") != "true":
            assert page.find("Marker") is None
            break
        marker = page.text("Marker")
    assert sorted(seen) == sorted(AWS_MANAGED)
    assert len(seen) == len(AWS_MANAGED)


async def test_policy_versions(api: Api) -> None:
    arn = await _policy(api, "p", allow("s3:GetObject"))
    v2 = await api.ok("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=allow("s3:PutObject"))
    assert v2.text("PolicyVersion/VersionId") == "v2"
    assert v2.text("PolicyVersion/IsDefaultVersion") == "false"
    assert (await api.ok("GetPolicy", PolicyArn=arn)).text("Policy/DefaultVersionId") == "v1"
    v3 = await api.ok(
        "CreatePolicyVersion",
        PolicyArn=arn,
        PolicyDocument=allow("s3:DeleteObject"),
        SetAsDefault=True,
    )
    assert v3.text("PolicyVersion/VersionId") == "v3"
    assert v3.text("PolicyVersion/IsDefaultVersion") == "true"
    assert (await api.ok("GetPolicy", PolicyArn=arn)).text("Policy/DefaultVersionId") == "v3"

    listed = await api.ok("ListPolicyVersions", PolicyArn=arn)
    assert listed.member_texts("Versions", "VersionId") == ["v3", "v2", "v1"]
    assert listed.member_texts("Versions", "IsDefaultVersion") == ["true", "false", "false"]
    got = await api.ok("GetPolicyVersion", PolicyArn=arn, VersionId="v2")
    assert decode_document(got.text("PolicyVersion/Document")) == json.loads(allow("s3:PutObject"))
    raw = got.text("PolicyVersion/Document") or ""
    assert raw.startswith("%7B") and "+" not in raw

    (await api.call("DeletePolicyVersion", PolicyArn=arn, VersionId="v3")).expect(
        409, "DeleteConflict"
    )
    await api.ok("SetDefaultPolicyVersion", PolicyArn=arn, VersionId="v1")
    assert (await api.ok("GetPolicy", PolicyArn=arn)).text("Policy/DefaultVersionId") == "v1"
    await api.ok("DeletePolicyVersion", PolicyArn=arn, VersionId="v3")
    listed = await api.ok("ListPolicyVersions", PolicyArn=arn)
    assert listed.member_texts("Versions", "VersionId") == ["v2", "v1"]
    (await api.call("GetPolicyVersion", PolicyArn=arn, VersionId="v3")).expect(404, "NoSuchEntity")
    (await api.call("SetDefaultPolicyVersion", PolicyArn=arn, VersionId="v9")).expect(
        404, "NoSuchEntity"
    )
    # Version ids are never reused.
    v4 = await api.ok("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=allow("s3:*"))
    assert v4.text("PolicyVersion/VersionId") == "v4"
    (await api.call("GetPolicyVersion", PolicyArn=arn, VersionId="1")).expect(
        400, "ValidationError"
    )


async def test_policy_version_limit(api: Api) -> None:
    arn = await _policy(api, "p")
    for i in range(2, limits.VERSIONS_PER_POLICY + 1):
        await api.ok("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=allow(f"s3:Get{i}"))
    for set_default in (False, True):
        (
            await api.call(
                "CreatePolicyVersion",
                PolicyArn=arn,
                PolicyDocument=allow("s3:Six"),
                SetAsDefault=set_default,
            )
        ).expect(409, "LimitExceeded")
    listed = await api.ok("ListPolicyVersions", PolicyArn=arn)
    assert len(listed.members("Versions")) == limits.VERSIONS_PER_POLICY
    assert (await api.ok("GetPolicy", PolicyArn=arn)).text("Policy/DefaultVersionId") == "v1"
    await api.ok("DeletePolicyVersion", PolicyArn=arn, VersionId="v2")
    v6 = await api.ok("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=allow("s3:Six"))
    assert v6.text("PolicyVersion/VersionId") == "v6"


async def test_delete_policy_conflicts(api: Api) -> None:
    arn = await _policy(api, "p")
    await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("AttachRolePolicy", RoleName="r", PolicyArn=arn)
    (await api.call("DeletePolicy", PolicyArn=arn)).expect(409, "DeleteConflict")
    await api.ok("DetachRolePolicy", RoleName="r", PolicyArn=arn)
    await api.ok("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=allow("s3:Get*"))
    # Non-default versions must be deleted first.
    (await api.call("DeletePolicy", PolicyArn=arn)).expect(409, "DeleteConflict")
    await api.ok("DeletePolicyVersion", PolicyArn=arn, VersionId="v2")
    await api.ok("DeletePolicy", PolicyArn=arn)
    (await api.call("GetPolicy", PolicyArn=arn)).expect(404, "NoSuchEntity")
    (await api.call("DeletePolicy", PolicyArn=arn)).expect(404, "NoSuchEntity")


@pytest.mark.parametrize(
    ("kind", "member", "create"),
    [
        ("User", "UserName", {"Action": "CreateUser", "UserName": "e"}),
        ("Group", "GroupName", {"Action": "CreateGroup", "GroupName": "e"}),
        (
            "Role",
            "RoleName",
            {"Action": "CreateRole", "RoleName": "e", "AssumeRolePolicyDocument": TRUST_EC2},
        ),
    ],
)
async def test_attach_detach_list(api: Api, kind: str, member: str, create: dict[str, str]) -> None:
    await api.ok(create["Action"], params={k: v for k, v in create.items() if k != "Action"})
    mine = await _policy(api, "mine", path="/team/")
    name = {member: "e"}
    await api.ok(f"Attach{kind}Policy", params=name, PolicyArn=mine)
    await api.ok(f"Attach{kind}Policy", params=name, PolicyArn=READ_ONLY)
    # Attaching again is idempotent.
    await api.ok(f"Attach{kind}Policy", params=name, PolicyArn=READ_ONLY)
    listed = await api.ok(f"ListAttached{kind}Policies", params=name)
    pairs = dict(
        zip(
            listed.member_texts("AttachedPolicies", "PolicyArn"),
            listed.member_texts("AttachedPolicies", "PolicyName"),
            strict=True,
        )
    )
    assert pairs == {mine: "mine", READ_ONLY: "ReadOnlyAccess"}
    prefixed = await api.ok(f"ListAttached{kind}Policies", params=name, PathPrefix="/team/")
    assert prefixed.member_texts("AttachedPolicies", "PolicyArn") == [mine]
    assert (await api.ok("GetPolicy", PolicyArn=mine)).text("Policy/AttachmentCount") == "1"
    entities = await api.ok("ListEntitiesForPolicy", PolicyArn=mine)
    got = {
        "User": entities.member_texts("PolicyUsers", "UserName"),
        "Group": entities.member_texts("PolicyGroups", "GroupName"),
        "Role": entities.member_texts("PolicyRoles", "RoleName"),
    }
    assert got == {k: (["e"] if k == kind else []) for k in got}
    filtered = await api.ok("ListEntitiesForPolicy", PolicyArn=mine, EntityFilter="Group")
    assert filtered.member_texts("PolicyGroups", "GroupName") == (["e"] if kind == "Group" else [])
    assert filtered.members("PolicyUsers") == [] and filtered.members("PolicyRoles") == []

    await api.ok(f"Detach{kind}Policy", params=name, PolicyArn=mine)
    listed = await api.ok(f"ListAttached{kind}Policies", params=name)
    assert listed.member_texts("AttachedPolicies", "PolicyArn") == [READ_ONLY]
    assert (await api.ok("GetPolicy", PolicyArn=mine)).text("Policy/AttachmentCount") == "0"
    (await api.call(f"Detach{kind}Policy", params=name, PolicyArn=mine)).expect(404, "NoSuchEntity")
    (await api.call(f"Attach{kind}Policy", params={member: "ghost"}, PolicyArn=mine)).expect(
        404, "NoSuchEntity"
    )
    (await api.call(f"ListAttached{kind}Policies", params={member: "ghost"})).expect(
        404, "NoSuchEntity"
    )


@pytest.mark.parametrize("kind", ["User", "Group", "Role"])
async def test_attach_quota(api: Api, kind: str) -> None:
    member = f"{kind}Name"
    if kind == "Role":
        await api.ok("CreateRole", RoleName="e", AssumeRolePolicyDocument=TRUST_EC2)
    else:
        await api.ok(f"Create{kind}", params={member: "e"})
    quota = {
        "User": limits.ATTACHED_POLICIES_PER_USER,
        "Group": limits.ATTACHED_POLICIES_PER_GROUP,
        "Role": limits.ATTACHED_POLICIES_PER_ROLE,
    }[kind]
    arns = [await _policy(api, f"p{i:02d}") for i in range(quota + 1)]
    for arn in arns[:quota]:
        await api.ok(f"Attach{kind}Policy", PolicyArn=arn, params={member: "e"})
    (await api.call(f"Attach{kind}Policy", PolicyArn=arns[quota], params={member: "e"})).expect(
        409, "LimitExceeded"
    )
    listed = await api.ok(f"ListAttached{kind}Policies", params={member: "e"})
    assert len(listed.members("AttachedPolicies")) == quota
    assert (await api.ok("GetPolicy", PolicyArn=arns[quota])).text("Policy/AttachmentCount") == "0"


async def test_attach_unknown_policy(api: Api) -> None:
    await api.ok("CreateUser", UserName="u")
    arn = f"arn:aws:iam::{api.account_id}:policy/ghost"
    (await api.call("AttachUserPolicy", UserName="u", PolicyArn=arn)).expect(
        404, "NoSuchEntity", f"Policy {arn} does not exist or is not attachable."
    )
    (
        await api.call(
            "AttachUserPolicy", UserName="u", PolicyArn="arn:aws:iam::aws:policy/NotAManagedOne"
        )
    ).expect(404, "NoSuchEntity")
    (
        await api.call("AttachUserPolicy", UserName="u", PolicyArn="not-an-arn-but-long-enough")
    ).expect(400, "InvalidInput")
    listed = await api.ok("ListAttachedUserPolicies", UserName="u")
    assert listed.members("AttachedPolicies") == []


async def test_list_entities_for_unknown_policy(api: Api) -> None:
    arn = f"arn:aws:iam::{api.account_id}:policy/ghost"
    (await api.call("ListEntitiesForPolicy", PolicyArn=arn)).expect(404, "NoSuchEntity")


async def test_create_policy_malformed(api: Api) -> None:
    bad = [
        "not json",
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
        json.dumps(
            {"Version": "2008-10-17", "Statement": [json.loads(allow("s3:*"))["Statement"][0]]}
        ),
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    ]
    for document in bad:
        reply = await api.call("CreatePolicy", PolicyName="p", PolicyDocument=document)
        reply.expect(400, "MalformedPolicyDocument")
        assert reply.message
    assert (await api.ok("ListPolicies", Scope="Local")).members("Policies") == []
    arn = await _policy(api, "p")
    (await api.call("CreatePolicyVersion", PolicyArn=arn, PolicyDocument="[]")).expect(
        400, "MalformedPolicyDocument"
    )
    assert len((await api.ok("ListPolicyVersions", PolicyArn=arn)).members("Versions")) == 1


async def test_managed_policy_size_quota(api: Api) -> None:
    await api.ok("CreatePolicy", PolicyName="max", PolicyDocument=sized(limits.MANAGED_POLICY_SIZE))
    (
        await api.call(
            "CreatePolicy", PolicyName="big", PolicyDocument=sized(limits.MANAGED_POLICY_SIZE + 1)
        )
    ).expect(409, "LimitExceeded")
    (await api.call("GetPolicy", PolicyArn=f"arn:aws:iam::{api.account_id}:policy/big")).expect(
        404, "NoSuchEntity"
    )
    arn = f"arn:aws:iam::{api.account_id}:policy/max"
    (
        await api.call(
            "CreatePolicyVersion",
            PolicyArn=arn,
            PolicyDocument=sized(limits.MANAGED_POLICY_SIZE + 1),
        )
    ).expect(409, "LimitExceeded")
    assert len((await api.ok("ListPolicyVersions", PolicyArn=arn)).members("Versions")) == 1


# -- inline policies ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["User", "Group", "Role"])
async def test_inline_put_get_list_delete(api: Api, kind: str) -> None:
    member = f"{kind}Name"
    if kind == "Role":
        await api.ok("CreateRole", RoleName="e", AssumeRolePolicyDocument=TRUST_EC2)
    else:
        await api.ok(f"Create{kind}", params={member: "e"})
    name = {member: "e"}
    doc_b = allow("s3:GetObject")
    await api.ok(f"Put{kind}Policy", PolicyName="Bravo", PolicyDocument=doc_b, params=name)
    await api.ok(f"Put{kind}Policy", PolicyName="alpha", PolicyDocument=allow("s3:*"), params=name)
    listed = await api.ok(f"List{kind}Policies", params=name)
    assert listed.member_texts("PolicyNames") == ["alpha", "Bravo"]
    got = await api.ok(f"Get{kind}Policy", PolicyName="bravo", params=name)
    assert got.text(member) == "e"
    assert got.text("PolicyName") == "Bravo"
    assert decode_document(got.text("PolicyDocument")) == json.loads(doc_b)
    # Put with an existing name replaces the document.
    await api.ok(
        f"Put{kind}Policy", PolicyName="Bravo", PolicyDocument=allow("s3:Put*"), params=name
    )
    got = await api.ok(f"Get{kind}Policy", PolicyName="Bravo", params=name)
    assert decode_document(got.text("PolicyDocument")) == json.loads(allow("s3:Put*"))
    page = await api.ok(f"List{kind}Policies", MaxItems=1, params=name)
    assert page.member_texts("PolicyNames") == ["alpha"]
    assert page.text("IsTruncated") == "true"

    await api.ok(f"Delete{kind}Policy", PolicyName="alpha", params=name)
    assert (await api.ok(f"List{kind}Policies", params=name)).member_texts("PolicyNames") == [
        "Bravo"
    ]
    noun = kind.lower()
    (await api.call(f"Get{kind}Policy", PolicyName="alpha", params=name)).expect(
        404, "NoSuchEntity", f"The {noun} policy with name alpha cannot be found."
    )
    (await api.call(f"Delete{kind}Policy", PolicyName="alpha", params=name)).expect(
        404, "NoSuchEntity"
    )
    (
        await api.call(
            f"Put{kind}Policy",
            PolicyName="x",
            PolicyDocument=allow("s3:*"),
            params={member: "nope"},
        )
    ).expect(404, "NoSuchEntity")
    (await api.call(f"List{kind}Policies", params={member: "nope"})).expect(404, "NoSuchEntity")


@pytest.mark.parametrize(
    ("kind", "quota"),
    [
        ("User", limits.USER_INLINE_POLICY_SIZE),
        ("Group", limits.GROUP_INLINE_POLICY_SIZE),
        ("Role", limits.ROLE_INLINE_POLICY_SIZE),
    ],
)
async def test_inline_size_quota(api: Api, kind: str, quota: int) -> None:
    member = f"{kind}Name"
    if kind == "Role":
        await api.ok("CreateRole", RoleName="e", AssumeRolePolicyDocument=TRUST_EC2)
    else:
        await api.ok(f"Create{kind}", params={member: "e"})
    name = {member: "e"}
    # One document over the quota on its own.
    (
        await api.call(
            f"Put{kind}Policy", PolicyName="big", PolicyDocument=sized(quota + 1), params=name
        )
    ).expect(409, "LimitExceeded")
    assert (await api.ok(f"List{kind}Policies", params=name)).members("PolicyNames") == []
    # Exactly at the quota fits.
    await api.ok(f"Put{kind}Policy", PolicyName="all", PolicyDocument=sized(quota), params=name)
    await api.ok(f"Delete{kind}Policy", PolicyName="all", params=name)
    # The quota is the aggregate of all inline policies of the entity.
    half = quota // 2
    await api.ok(f"Put{kind}Policy", PolicyName="one", PolicyDocument=sized(half), params=name)
    reply = await api.call(
        f"Put{kind}Policy", PolicyName="two", PolicyDocument=sized(quota - half + 1), params=name
    )
    reply.expect(409, "LimitExceeded")
    if kind == "User":
        assert reply.message == f"Maximum policy size of {quota} bytes exceeded for user e"
    assert (await api.ok(f"List{kind}Policies", params=name)).member_texts("PolicyNames") == ["one"]
    await api.ok(
        f"Put{kind}Policy", PolicyName="two", PolicyDocument=sized(quota - half), params=name
    )
    # Replacing a policy counts only its new size.
    await api.ok(f"Put{kind}Policy", PolicyName="one", PolicyDocument=sized(half), params=name)


@pytest.mark.parametrize("kind", ["User", "Group", "Role"])
async def test_inline_malformed_stores_nothing(api: Api, kind: str) -> None:
    member = f"{kind}Name"
    if kind == "Role":
        await api.ok("CreateRole", RoleName="e", AssumeRolePolicyDocument=TRUST_EC2)
    else:
        await api.ok(f"Create{kind}", params={member: "e"})
    name = {member: "e"}
    for document in ["{", json.dumps({"Version": "2012-10-17"}), TRUST_EC2]:
        (
            await api.call(f"Put{kind}Policy", PolicyName="p", PolicyDocument=document, params=name)
        ).expect(400, "MalformedPolicyDocument")
    assert (await api.ok(f"List{kind}Policies", params=name)).members("PolicyNames") == []


async def test_policy_document_wire_constraints(api: Api) -> None:
    await api.ok("CreateUser", UserName="u")
    reply = await api.call("PutUserPolicy", UserName="u", PolicyName="p", PolicyDocument="")
    reply.expect(400, "ValidationError")
    assert "at 'policyDocument'" in (reply.message or "")
    reply = await api.call("PutUserPolicy", UserName="u", PolicyName="p")
    reply.expect(
        400,
        "ValidationError",
        "1 validation error detected: Value null at 'policyDocument' failed to satisfy "
        "constraint: Member must not be null",
    )


# -- account authorization details --------------------------------------------------------


async def test_account_authorization_details(api: Api) -> None:
    mine = await _policy(api, "mine", allow("s3:GetObject"))
    await api.ok("CreatePolicyVersion", PolicyArn=mine, PolicyDocument=allow("s3:*"))
    await api.ok("CreateGroup", GroupName="devs")
    await api.ok("PutGroupPolicy", GroupName="devs", PolicyName="gp", PolicyDocument=allow("ec2:*"))
    await api.ok("AttachGroupPolicy", GroupName="devs", PolicyArn=READ_ONLY)
    await api.ok("CreateUser", UserName="alice")
    await api.ok("AddUserToGroup", GroupName="devs", UserName="alice")
    await api.ok("PutUserPolicy", UserName="alice", PolicyName="up", PolicyDocument=allow("sqs:*"))
    await api.ok("AttachUserPolicy", UserName="alice", PolicyArn=mine)
    await api.ok("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("PutRolePolicy", RoleName="app", PolicyName="rp", PolicyDocument=allow("sns:*"))
    await api.ok("CreateInstanceProfile", InstanceProfileName="ip")
    await api.ok("AddRoleToInstanceProfile", InstanceProfileName="ip", RoleName="app")

    d = await api.ok("GetAccountAuthorizationDetails")
    assert d.text("IsTruncated") == "false"
    (user,) = d.members("UserDetailList")
    assert user.findtext(q("UserName")) == "alice"
    assert [m.text for m in user.iterfind(f"{q('GroupList')}/{q('member')}")] == ["devs"]
    (up,) = user.iterfind(f"{q('UserPolicyList')}/{q('member')}")
    assert up.findtext(q("PolicyName")) == "up"
    assert decode_document(up.findtext(q("PolicyDocument"))) == json.loads(allow("sqs:*"))
    assert [
        m.findtext(q("PolicyArn"))
        for m in user.iterfind(f"{q('AttachedManagedPolicies')}/{q('member')}")
    ] == [mine]

    (group,) = d.members("GroupDetailList")
    assert group.findtext(q("GroupName")) == "devs"
    assert [
        m.findtext(q("PolicyName")) for m in group.iterfind(f"{q('GroupPolicyList')}/{q('member')}")
    ] == ["gp"]
    assert [
        m.findtext(q("PolicyArn"))
        for m in group.iterfind(f"{q('AttachedManagedPolicies')}/{q('member')}")
    ] == [READ_ONLY]

    (role,) = d.members("RoleDetailList")
    assert role.findtext(q("RoleName")) == "app"
    assert decode_document(role.findtext(q("AssumeRolePolicyDocument"))) == json.loads(TRUST_EC2)
    assert [
        m.findtext(q("InstanceProfileName"))
        for m in role.iterfind(f"{q('InstanceProfileList')}/{q('member')}")
    ] == ["ip"]
    assert [
        m.findtext(q("PolicyName")) for m in role.iterfind(f"{q('RolePolicyList')}/{q('member')}")
    ] == ["rp"]

    policies = {m.findtext(q("Arn")): m for m in d.members("Policies")}
    # Local policies, and AWS-managed policies only where attached.
    assert set(policies) == {mine, READ_ONLY}
    versions = {
        v.findtext(q("VersionId")): v
        for v in policies[mine].iterfind(f"{q('PolicyVersionList')}/{q('member')}")
    }
    assert set(versions) == {"v1", "v2"}
    assert versions["v1"].findtext(q("IsDefaultVersion")) == "true"
    assert decode_document(versions["v2"].findtext(q("Document"))) == json.loads(allow("s3:*"))
    assert policies[mine].findtext(q("AttachmentCount")) == "1"

    only_roles = await api.ok(
        "GetAccountAuthorizationDetails", params=list_params("Filter", ["Role"])
    )
    assert len(only_roles.members("RoleDetailList")) == 1
    assert only_roles.members("UserDetailList") == []
    assert only_roles.members("GroupDetailList") == []
    assert only_roles.members("Policies") == []
    (
        await api.call("GetAccountAuthorizationDetails", params=list_params("Filter", ["Nope"]))
    ).expect(400, "ValidationError")


async def test_list_entities_for_policy_honours_max_items(api: Api) -> None:
    for name in ["e1", "e2", "e3"]:
        await api.ok("CreateUser", UserName=name)
        await api.ok("AttachUserPolicy", UserName=name, PolicyArn=READ_ONLY)
    page = await api.ok("ListEntitiesForPolicy", PolicyArn=READ_ONLY, MaxItems=1)
    assert page.member_texts("PolicyUsers", "UserName") == ["e1"]
    assert page.text("IsTruncated") == "true"
    assert page.text("Marker")


async def test_account_authorization_details_honours_max_items(api: Api) -> None:
    for name in ["e1", "e2", "e3"]:
        await api.ok("CreateUser", UserName=name)
    page = await api.ok(
        "GetAccountAuthorizationDetails", params=list_params("Filter", ["User"]), MaxItems=1
    )
    assert len(page.members("UserDetailList")) == 1
    assert page.text("IsTruncated") == "true"
    assert page.text("Marker")
