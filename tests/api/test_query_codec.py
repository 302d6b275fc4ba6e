"""API tests: the query-protocol codec (routing, parameters, envelopes, errors, limits)."""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from typing import Any

import pytest

from broker.api.iam import IAM_ACTIONS
from tests.api.conftest import (
    FORM_TYPE,
    IAM_NS,
    IAM_VERSION,
    STS_NS,
    TRUST_EC2,
    Api,
    ApiFactory,
    Creds,
    Reply,
    allow,
    boto_parse,
    list_params,
    q,
    service_model,
    tag_params,
    to_form,
)

# The IAM actions the end-to-end walk below drives, each at least once.
COVERED_ACTIONS = (
    "AddRoleToInstanceProfile AddUserToGroup AttachGroupPolicy AttachRolePolicy "
    "AttachUserPolicy CreateAccessKey CreateGroup CreateInstanceProfile CreatePolicy "
    "CreatePolicyVersion CreateRole CreateUser DeleteAccessKey DeleteGroup DeleteGroupPolicy "
    "DeleteInstanceProfile DeletePolicy DeletePolicyVersion DeleteRole DeleteRolePolicy "
    "DeleteUser DeleteUserPolicy DetachGroupPolicy DetachRolePolicy DetachUserPolicy "
    "GetAccessKeyLastUsed GetAccountAuthorizationDetails GetGroup GetGroupPolicy "
    "GetInstanceProfile GetPolicy GetPolicyVersion GetRole GetRolePolicy GetUser GetUserPolicy "
    "ListAccessKeys ListAttachedGroupPolicies ListAttachedRolePolicies "
    "ListAttachedUserPolicies ListEntitiesForPolicy ListGroupPolicies ListGroups "
    "ListGroupsForUser ListInstanceProfileTags ListInstanceProfiles "
    "ListInstanceProfilesForRole ListPolicies ListPolicyVersions ListRolePolicies "
    "ListRoleTags ListRoles ListUserPolicies ListUserTags ListUsers PutGroupPolicy "
    "PutRolePolicy PutUserPolicy RemoveRoleFromInstanceProfile RemoveUserFromGroup "
    "SetDefaultPolicyVersion TagInstanceProfile TagRole TagUser UntagInstanceProfile "
    "UntagRole UntagUser UpdateAccessKey UpdateAssumeRolePolicy UpdateGroup UpdateRole "
    "UpdateRoleDescription UpdateUser"
).split()
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def form(**params: str) -> bytes:
    """A form-encoded body."""
    return urllib.parse.urlencode(params).encode("utf-8")


def assert_error_shape(reply: Reply, ns: str = IAM_NS) -> None:
    """``ErrorResponse/Error/{Type,Code,Message}`` plus a direct ``RequestId`` child."""
    assert reply.root is not None
    assert reply.root.tag == q("ErrorResponse", ns)
    assert [c.tag for c in reply.root] == [q("Error", ns), q("RequestId", ns)]
    error = reply.root.find(q("Error", ns))
    assert error is not None
    assert [c.tag for c in error] == [q("Type", ns), q("Code", ns), q("Message", ns)]
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert reply.request_id and UUID.match(reply.request_id)
    assert reply.headers.get("x-amzn-RequestId") == reply.request_id


# -- routing -------------------------------------------------------------------------------


async def test_unknown_action(api: Api) -> None:
    reply = await api.call("FrobnicateUsers")
    reply.expect(
        400, "InvalidAction", "Could not find operation FrobnicateUsers for version 2010-05-08"
    )
    assert reply.fault == "Sender"
    assert_error_shape(reply)


async def test_missing_action(api: Api) -> None:
    reply = await api.send("?", body=form(Version=IAM_VERSION))
    reply.expect(400, "MissingAction")
    assert_error_shape(reply)
    empty = await api.send("?", body=form(Action="", Version=IAM_VERSION))
    empty.expect(400, "MissingAction")


async def test_wrong_version(api: Api) -> None:
    reply = await api.send("ListUsers", body=form(Action="ListUsers", Version="2011-06-15"))
    reply.expect(400, "InvalidAction", "Could not find operation ListUsers for version 2011-06-15")
    other = await api.send("ListUsers", body=form(Action="ListUsers", Version="2099-01-01"))
    other.expect(400, "InvalidAction")
    sts_as_iam = await api.send(
        "GetCallerIdentity", body=form(Action="GetCallerIdentity", Version=IAM_VERSION)
    )
    sts_as_iam.expect(400, "InvalidAction")


async def test_sts_replies_in_sts_namespace(api: Api) -> None:
    ident = await api.sts("GetCallerIdentity")
    assert ident.root is not None
    assert ident.root.tag == q("GetCallerIdentityResponse", STS_NS)
    assert ident.text("Arn") == f"arn:aws:iam::{api.account_id}:root"
    # An STS request signed for the iam service is rejected, in the STS namespace.
    body = form(Action="GetCallerIdentity", Version="2011-06-15")
    wrong_scope = await api.send("GetCallerIdentity", body=body, service="iam")
    assert wrong_scope.root is not None
    assert wrong_scope.root.tag == q("ErrorResponse", STS_NS)
    wrong_scope.expect(403, "SignatureDoesNotMatch")


# -- parameters ----------------------------------------------------------------------------


async def test_get_with_query_string(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    reply = await api.send("ListUsers", method="GET", query="Action=ListUsers&Version=2010-05-08")
    assert reply.ok, reply.body
    assert reply.member_texts("Users", "UserName") == ["alice"]
    got = await api.send(
        "GetUser", method="GET", query="Action=GetUser&Version=2010-05-08&UserName=alice"
    )
    assert got.text("User/UserName") == "alice"


async def test_query_and_body_are_merged(api: Api) -> None:
    reply = await api.send(
        "CreateUser", query="UserName=alice", body=form(Action="CreateUser", Version=IAM_VERSION)
    )
    assert reply.text("User/UserName") == "alice"
    # Action in the query string, parameters in the body.
    reply = await api.send("CreateUser", query="Action=CreateUser", body=form(UserName="bob"))
    assert reply.text("User/UserName") == "bob"
    # The body wins on conflict.
    reply = await api.send(
        "CreateUser", query="UserName=carol", body=form(Action="CreateUser", UserName="dave")
    )
    assert reply.text("User/UserName") == "dave"
    (await api.call("GetUser", UserName="carol")).expect(404, "NoSuchEntity")


async def test_plus_decodes_to_space(api: Api) -> None:
    reply = await api.send(
        "ListUsers", body=b"Action=ListUsers&Version=2010-05-08&PathPrefix=%2Fa+b%2Bc%2F"
    )
    reply.expect(400, "ValidationError")
    assert "Value '/a b+c/' at 'pathPrefix'" in (reply.message or "")


@pytest.mark.parametrize(
    "body",
    [
        b"Action=ListUsers&Version=2010-05-08&PathPrefix=%zz",
        b"Action=ListUsers&Version=2010-05-08&PathPrefix=%2",
        b"Action=ListUsers&Version=2010-05-08&PathPrefix=%C3%28",
    ],
)
async def test_bad_percent_encoding_in_body(api: Api, body: bytes) -> None:
    reply = await api.send("ListUsers", body=body)
    reply.expect(400, "MalformedQueryString")
    assert_error_shape(reply)


async def test_bad_percent_encoding_in_query(api: Api) -> None:
    reply = await api.send(
        "ListUsers", method="GET", query="Action=ListUsers&Version=2010-05-08&Marker=%G1"
    )
    reply.expect(400, "MalformedQueryString")


async def test_body_must_be_form_encoded_utf8(api: Api) -> None:
    json_body = await api.send(
        "ListUsers",
        body=json.dumps({"Action": "ListUsers"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    json_body.expect(400, "MalformedQueryString")
    latin1 = await api.send("ListUsers", body=b"Action=ListUsers&PathPrefix=/\xff/")
    latin1.expect(400, "MalformedQueryString")


async def test_content_type_without_charset(api: Api) -> None:
    reply = await api.send(
        "ListUsers",
        body=form(Action="ListUsers", Version=IAM_VERSION),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.ok


async def test_unknown_parameters_are_ignored(api: Api) -> None:
    reply = await api.ok("CreateUser", UserName="alice", SomeFutureMember="x")
    assert reply.text("User/UserName") == "alice"


async def test_empty_list_parameter(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice", params=tag_params({"k": "v"}))
    reply = await api.send(
        "UntagUser", body=b"Action=UntagUser&Version=2010-05-08&UserName=alice&TagKeys="
    )
    assert reply.ok, reply.body
    assert (await api.ok("ListUserTags", UserName="alice")).member_texts("Tags", "Key") == ["k"]


async def test_list_members_are_ordered_by_index(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice", params=tag_params({"a": "1", "b": "2", "c": "3"}))
    # Indexes out of order on the wire; the members are taken by index.
    body = (
        b"Action=UntagUser&Version=2010-05-08&UserName=alice&TagKeys.member.2=c&TagKeys.member.1=a"
    )
    assert (await api.send("UntagUser", body=body)).ok
    assert (await api.ok("ListUserTags", UserName="alice")).member_texts("Tags", "Key") == ["b"]


async def test_too_many_parameters(api: Api) -> None:
    params = {f"Extra{i}": "x" for i in range(1001)}
    reply = await api.call("ListUsers", params=params)
    assert reply.status == 400
    assert reply.code == "ValidationError"


# -- body size -------------------------------------------------------------------------------


async def test_body_over_limit_is_413(api_factory: ApiFactory) -> None:
    api = await api_factory(BROKER_SECURITY_MAX_BODY_BYTES="1024")
    assert api.rt.cfg.security.max_body_bytes == 1024
    filler = "x" * 1100
    body = form(Action="ListUsers", Version=IAM_VERSION, Filler=filler)
    reply = await api.send("ListUsers", body=body)
    reply.expect(413, "RequestEntityTooLarge")
    assert_error_shape(reply)
    # Without a Content-Length (chunked), the cap applies while reading.
    streamed = await api.send("ListUsers", body=body, stream=True)
    streamed.expect(413, "RequestEntityTooLarge")
    # Exactly at the limit is fine.
    base = len(form(Action="ListUsers", Version=IAM_VERSION, Filler=""))
    exact = form(Action="ListUsers", Version=IAM_VERSION, Filler="x" * (1024 - base))
    assert len(exact) == 1024
    assert (await api.send("ListUsers", body=exact)).ok
    assert (await api.send("ListUsers", body=exact, stream=True)).ok


async def test_body_over_default_limit_is_413(api: Api) -> None:
    limit = api.rt.cfg.security.max_body_bytes
    body = form(Action="ListUsers", Version=IAM_VERSION, Filler="x" * limit)
    reply = await api.send("ListUsers", body=body)
    reply.expect(413, "RequestEntityTooLarge")


# -- envelopes -----------------------------------------------------------------------------


async def test_request_id_header_matches_body(api: Api) -> None:
    ok = await api.ok("ListUsers")
    assert ok.request_id and UUID.match(ok.request_id)
    assert ok.headers["x-amzn-RequestId"] == ok.request_id
    err = await api.call("GetUser", UserName="nobody")
    assert err.headers["x-amzn-RequestId"] == err.request_id
    assert err.request_id != ok.request_id
    parsed = boto_parse(err)
    assert parsed["ResponseMetadata"]["RequestId"] == err.request_id
    assert parsed["Error"] == {
        "Type": "Sender",
        "Code": "NoSuchEntity",
        "Message": "The user with name nobody cannot be found.",
    }


async def test_success_envelope(api: Api) -> None:
    reply = await api.ok("CreateUser", UserName="alice")
    assert reply.root is not None
    assert reply.root.tag == q("CreateUserResponse")
    assert [c.tag for c in reply.root] == [q("CreateUserResult"), q("ResponseMetadata")]
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert reply.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    # Actions without an output shape answer only ResponseMetadata.
    deleted = await api.ok("DeleteUser", UserName="alice")
    assert deleted.root is not None
    assert [c.tag for c in deleted.root] == [q("ResponseMetadata")]
    assert deleted.request_id and UUID.match(deleted.request_id)


async def test_error_shape_for_each_kind(api: Api) -> None:
    replies = [
        await api.call("GetUser", UserName="nobody"),
        await api.call("CreateUser", UserName="bad name"),
        await api.call("Nope"),
        await api.send("ListUsers", body=form(Action="ListUsers"), sign=False),
        await api.call("ListUsers", Creds("AKIAAAAAAAAAAAAAAAAA", "x" * 40)),
    ]
    assert [(r.status, r.code) for r in replies] == [
        (404, "NoSuchEntity"),
        (400, "ValidationError"),
        (400, "InvalidAction"),
        (403, "MissingAuthenticationToken"),
        (403, "InvalidClientTokenId"),
    ]
    for reply in replies:
        assert_error_shape(reply)
        assert reply.fault == "Sender"


async def test_escaping_in_messages(api: Api) -> None:
    reply = await api.call("CreateUser", UserName="<a&b>")
    reply.expect(
        400,
        "ValidationError",
        "1 validation error detected: Value '<a&b>' at 'userName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [\w+=,.@-]+",
    )
    assert b"&lt;a&amp;b&gt;" in reply.body


async def test_validation_error_messages(api: Api) -> None:
    one = await api.call("CreateUser", UserName="bad name")
    one.expect(
        400,
        "ValidationError",
        "1 validation error detected: Value 'bad name' at 'userName' failed to satisfy "
        r"constraint: Member must satisfy regular expression pattern: [\w+=,.@-]+",
    )
    two = await api.call("UpdateUser", UserName="ok", NewUserName="x" * 65, NewPath="nope")
    assert two.status == 400 and two.code == "ValidationError"
    message = two.message or ""
    assert message.startswith("2 validation errors detected: ")
    assert (
        f"Value '{'x' * 65}' at 'newUserName' failed to satisfy constraint: Member must "
        "have length less than or equal to 64" in message
    )
    assert (
        "Value 'nope' at 'newPath' failed to satisfy constraint: Member must satisfy "
        "regular expression pattern: " in message
    )
    assert "; " in message
    missing = await api.call("CreateUser")
    missing.expect(
        400,
        "ValidationError",
        "1 validation error detected: Value null at 'userName' failed to satisfy constraint: "
        "Member must not be null",
    )
    enum = await api.call("UpdateAccessKey", AccessKeyId=api.root.access_key_id, Status="On")
    enum.expect(
        400,
        "ValidationError",
        "1 validation error detected: Value 'On' at 'status' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Active, Inactive]",
    )
    number = await api.call("ListUsers", MaxItems="ten")
    number.expect(400, "ValidationError")
    assert "at 'maxItems'" in (number.message or "")
    tags = await api.call("TagUser", UserName="ok", params={"Tags.member.1.Key": "k"})
    tags.expect(
        400,
        "ValidationError",
        "1 validation error detected: Value null at 'tags.member.1.value' failed to satisfy "
        "constraint: Member must not be null",
    )


async def test_invalid_marker(api: Api) -> None:
    reply = await api.call("ListUsers", Marker="!!!not-a-marker!!!")
    assert reply.status == 400
    assert reply.code == "ValidationError"


async def test_method_not_allowed(api: Api) -> None:
    resp = await api.client.request("PUT", "/", data=b"Action=ListUsers")
    assert resp.status == 405


async def test_timestamps_and_boto_types(api: Api) -> None:
    reply = await api.ok("CreateUser", UserName="alice")
    assert re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", reply.text("User/CreateDate") or ""
    )
    parsed = boto_parse(reply)
    created = parsed["User"]["CreateDate"]
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0


# -- every action, as botocore reads it -----------------------------------------------------


async def test_every_iam_action_parses_with_botocore(api: Api) -> None:
    """Drive every IAM action once and parse each reply with botocore's model.

    Operations with an output shape must carry ``<{Op}Result>``; the others must carry only
    ``ResponseMetadata``. Policy documents must come out as dicts, as boto3 users get them.
    """
    acct = api.account_id
    seen: dict[str, dict[str, Any]] = {}

    async def run(
        action: str, params: dict[str, str] | None = None, **kw: str | int | bool
    ) -> dict[str, Any]:
        reply = await api.call(action, params={**(params or {}), **to_form(kw)})
        assert reply.ok, f"{action}: {reply.status} {reply.code} {reply.message}"
        operation = service_model("iam").operation_model(action)
        assert reply.root is not None
        children = [c.tag for c in reply.root]
        if operation.output_shape is not None:
            assert children == [q(f"{action}Result"), q("ResponseMetadata")], action
        else:
            assert children == [q("ResponseMetadata")], action
        parsed = boto_parse(reply)
        assert parsed["ResponseMetadata"]["RequestId"] == reply.request_id
        seen[action] = parsed
        return parsed

    doc = allow("s3:GetObject")
    user = await run("CreateUser", UserName="u", params=tag_params({"t": "1"}))
    assert user["User"]["UserName"] == "u"
    assert (await run("GetUser", UserName="u"))["User"]["Tags"] == [{"Key": "t", "Value": "1"}]
    await run("ListUsers")
    await run("TagUser", UserName="u", params=tag_params({"t2": "2"}))
    assert len((await run("ListUserTags", UserName="u"))["Tags"]) == 2
    await run("UntagUser", UserName="u", params=list_params("TagKeys", ["t2"]))
    await run("CreateGroup", GroupName="g")
    await run("AddUserToGroup", GroupName="g", UserName="u")
    assert [x["UserName"] for x in (await run("GetGroup", GroupName="g"))["Users"]] == ["u"]
    await run("ListGroups")
    assert (await run("ListGroupsForUser", UserName="u"))["Groups"][0]["GroupName"] == "g"
    role = await run("CreateRole", RoleName="r", AssumeRolePolicyDocument=TRUST_EC2)
    assert role["Role"]["AssumeRolePolicyDocument"] == json.loads(TRUST_EC2)
    assert (await run("GetRole", RoleName="r"))["Role"]["MaxSessionDuration"] == 3600
    listed_roles = await run("ListRoles")
    assert listed_roles["Roles"][0]["AssumeRolePolicyDocument"] == json.loads(TRUST_EC2)
    assert listed_roles["IsTruncated"] is False
    await run("UpdateRole", RoleName="r", MaxSessionDuration=7200)
    assert (await run("UpdateRoleDescription", RoleName="r", Description="d"))["Role"][
        "Description"
    ] == "d"
    await run("UpdateAssumeRolePolicy", RoleName="r", PolicyDocument=TRUST_EC2)
    await run("TagRole", RoleName="r", params=tag_params({"a": "b"}))
    assert (await run("ListRoleTags", RoleName="r"))["Tags"] == [{"Key": "a", "Value": "b"}]
    await run("UntagRole", RoleName="r", params=list_params("TagKeys", ["a"]))
    profile = await run("CreateInstanceProfile", InstanceProfileName="ip")
    assert profile["InstanceProfile"]["Roles"] == []
    await run("AddRoleToInstanceProfile", InstanceProfileName="ip", RoleName="r")
    got_profile = await run("GetInstanceProfile", InstanceProfileName="ip")
    assert got_profile["InstanceProfile"]["Roles"][0]["AssumeRolePolicyDocument"] == json.loads(
        TRUST_EC2
    )
    await run("ListInstanceProfiles")
    await run("ListInstanceProfilesForRole", RoleName="r")
    await run("TagInstanceProfile", InstanceProfileName="ip", params=tag_params({"a": "b"}))
    await run("ListInstanceProfileTags", InstanceProfileName="ip")
    await run(
        "UntagInstanceProfile", InstanceProfileName="ip", params=list_params("TagKeys", ["a"])
    )

    policy = await run("CreatePolicy", PolicyName="p", PolicyDocument=doc)
    arn = policy["Policy"]["Arn"]
    assert arn == f"arn:aws:iam::{acct}:policy/p"
    assert (await run("GetPolicy", PolicyArn=arn))["Policy"]["IsAttachable"] is True
    await run("ListPolicies", Scope="Local")
    version = await run("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=allow("s3:*"))
    assert version["PolicyVersion"]["VersionId"] == "v2"
    got_version = await run("GetPolicyVersion", PolicyArn=arn, VersionId="v1")
    assert got_version["PolicyVersion"]["Document"] == json.loads(doc)
    assert [
        v["VersionId"] for v in (await run("ListPolicyVersions", PolicyArn=arn))["Versions"]
    ] == [
        "v2",
        "v1",
    ]
    await run("SetDefaultPolicyVersion", PolicyArn=arn, VersionId="v2")
    await run("DeletePolicyVersion", PolicyArn=arn, VersionId="v1")
    for kind, member, name in [
        ("User", "UserName", "u"),
        ("Group", "GroupName", "g"),
        ("Role", "RoleName", "r"),
    ]:
        entity = {member: name}
        await run(f"Attach{kind}Policy", PolicyArn=arn, params=entity)
        attached = await run(f"ListAttached{kind}Policies", params=entity)
        assert attached["AttachedPolicies"] == [{"PolicyName": "p", "PolicyArn": arn}]
        await run(f"Put{kind}Policy", PolicyName="inline", PolicyDocument=doc, params=entity)
        inline = await run(f"Get{kind}Policy", PolicyName="inline", params=entity)
        assert inline["PolicyDocument"] == json.loads(doc)
        assert inline[member] == name
        assert (await run(f"List{kind}Policies", params=entity))["PolicyNames"] == ["inline"]
    entities = await run("ListEntitiesForPolicy", PolicyArn=arn)
    assert [x["UserName"] for x in entities["PolicyUsers"]] == ["u"]
    assert [x["GroupName"] for x in entities["PolicyGroups"]] == ["g"]
    assert [x["RoleName"] for x in entities["PolicyRoles"]] == ["r"]
    details = await run("GetAccountAuthorizationDetails")
    assert details["RoleDetailList"][0]["AssumeRolePolicyDocument"] == json.loads(TRUST_EC2)
    assert details["UserDetailList"][0]["UserPolicyList"][0]["PolicyDocument"] == json.loads(doc)
    assert details["Policies"][0]["PolicyVersionList"][0]["Document"] == json.loads(allow("s3:*"))

    key = await run("CreateAccessKey", UserName="u")
    akid = key["AccessKey"]["AccessKeyId"]
    assert len(key["AccessKey"]["SecretAccessKey"]) == 40
    assert [
        k["AccessKeyId"] for k in (await run("ListAccessKeys", UserName="u"))["AccessKeyMetadata"]
    ] == [akid]
    await run("UpdateAccessKey", UserName="u", AccessKeyId=akid, Status="Inactive")
    last = await run("GetAccessKeyLastUsed", AccessKeyId=akid)
    assert last["UserName"] == "u" and last["AccessKeyLastUsed"]["ServiceName"] == "N/A"
    await run("DeleteAccessKey", UserName="u", AccessKeyId=akid)

    # Tear everything down again through the API.
    for kind, member, name in [
        ("User", "UserName", "u"),
        ("Group", "GroupName", "g"),
        ("Role", "RoleName", "r"),
    ]:
        entity = {member: name}
        await run(f"Detach{kind}Policy", PolicyArn=arn, params=entity)
        await run(f"Delete{kind}Policy", PolicyName="inline", params=entity)
    await run("DeletePolicy", PolicyArn=arn)
    await run("RemoveRoleFromInstanceProfile", InstanceProfileName="ip", RoleName="r")
    await run("DeleteInstanceProfile", InstanceProfileName="ip")
    await run("DeleteRole", RoleName="r")
    await run("RemoveUserFromGroup", GroupName="g", UserName="u")
    await run("UpdateGroup", GroupName="g", NewGroupName="g2")
    await run("DeleteGroup", GroupName="g2")
    await run("UpdateUser", UserName="u", NewUserName="u2")
    await run("DeleteUser", UserName="u2")

    assert set(seen) == set(COVERED_ACTIONS)
    assert set(COVERED_ACTIONS) <= set(IAM_ACTIONS)


def test_every_registered_action_is_in_the_botocore_model() -> None:
    model = service_model("iam")
    assert set(IAM_ACTIONS) <= set(model.operation_names)


async def test_unsigned_request_is_rejected(api: Api) -> None:
    reply = await api.send(
        "ListUsers", body=form(Action="ListUsers", Version=IAM_VERSION), sign=False
    )
    reply.expect(403, "MissingAuthenticationToken", "Request is missing Authentication Token")


async def test_wrong_secret_is_rejected(api: Api) -> None:
    bad = Creds(api.root.access_key_id, "x" * 40)
    reply = await api.call("ListUsers", bad)
    reply.expect(403, "SignatureDoesNotMatch")
    # A tampered body fails the signature too.
    body = form(Action="CreateUser", Version=IAM_VERSION, UserName="alice")
    signed = api.sign_headers(
        "POST", api.url + "/", body, api.root, "iam", {"Content-Type": FORM_TYPE}
    )
    resp = await api.client.request(
        "POST", "/", data=body.replace(b"alice", b"mallo"), headers=signed
    )
    assert resp.status == 403
    (await api.call("GetUser", UserName="mallo")).expect(404, "NoSuchEntity")
    assert uuid.UUID(resp.headers["x-amzn-RequestId"])
