"""API tests: service last accessed reports (the access advisor) and the tracking behind them.

The broker runs in-process on a ``MemoryStore``. Instead of waiting for the background flush,
tests flush the runtime's ``AccessTracker`` themselves, which is what the flush task does.
Replies are also parsed with botocore's own parser, so the shapes are what boto3 reads.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from broker.service.advisor import last_accessed
from tests.api.conftest import Api, Creds, allow, boto_parse, deny

ROLE_POLICY = allow(["sts:*", "iam:List*", "s3:*"])


def trust_account(account: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


async def flush(api: Api) -> None:
    assert api.rt.access_tracker is not None
    await api.rt.access_tracker.flush()


async def make_role(api: Api, name: str = "Worker", policy: str = ROLE_POLICY) -> str:
    created = await api.ok(
        "CreateRole", RoleName=name, AssumeRolePolicyDocument=trust_account(api.account_id)
    )
    await api.ok("PutRolePolicy", RoleName=name, PolicyName="p", PolicyDocument=policy)
    arn = created.text("Role/Arn")
    assert arn is not None
    return arn


@dataclass(frozen=True)
class Session:
    """Temporary credentials minted by the broker."""

    creds: Creds
    token: str = field(repr=False)


async def assume(api: Api, caller: Creds, role_arn: str) -> Session:
    reply = await api.sts_ok("AssumeRole", caller, RoleArn=role_arn, RoleSessionName="s1")
    akid = reply.text("Credentials/AccessKeyId")
    secret = reply.text("Credentials/SecretAccessKey")
    token = reply.text("Credentials/SessionToken")
    assert akid and secret and token
    return Session(Creds(akid, secret), token)


async def session_call(api: Api, session: Session, action: str, service: str = "iam") -> int:
    """Call ``action`` with temporary credentials; return the HTTP status."""
    version = "2010-05-08" if service == "iam" else "2011-06-15"
    body = urllib.parse.urlencode({"Action": action, "Version": version}).encode()
    reply = await api.send(
        action,
        body=body,
        creds=session.creds,
        service=service,
        headers={"X-Amz-Security-Token": session.token},
    )
    return reply.status


async def report(api: Api, arn: str, granularity: str | None = None, **kw: Any) -> dict[str, Any]:
    extra = {"Granularity": granularity} if granularity else {}
    gen = await api.ok("GenerateServiceLastAccessedDetails", params=extra, Arn=arn)
    job_id = gen.text("JobId")
    assert job_id is not None and len(job_id) == 36
    got = await api.ok("GetServiceLastAccessedDetails", JobId=job_id, **kw)
    parsed = boto_parse(got)
    parsed["JobId"] = job_id
    return parsed


def by_ns(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["ServiceNamespace"]: s for s in parsed["ServicesLastAccessed"]}


async def role_setup(api: Api) -> tuple[str, str, Session]:
    """A role (sts:*, iam:List*, s3:*) assumed by user ``op``; its session called ListUsers."""
    role_arn = await make_role(api)
    op, _ = await api.new_user("op", policy=allow("sts:AssumeRole"))
    session = await assume(api, op, role_arn)
    assert await session_call(api, session, "ListUsers") == 200
    assert await session_call(api, session, "GetCallerIdentity", "sts") == 200
    assert await session_call(api, session, "GetUser") == 403  # denied: still an attempt
    await flush(api)
    return role_arn, f"arn:aws:iam::{api.account_id}:user/op", session


async def test_role_report_service_level(api: Api) -> None:
    role_arn, _, _ = await role_setup(api)
    parsed = await report(api, role_arn)
    assert parsed["JobStatus"] == "COMPLETED"
    assert parsed["JobType"] == "SERVICE_LEVEL"
    assert parsed["JobCompletionDate"] >= parsed["JobCreationDate"]
    assert parsed["IsTruncated"] is False
    services = by_ns(parsed)
    assert [s["ServiceNamespace"] for s in parsed["ServicesLastAccessed"]] == ["iam", "s3", "sts"]
    iam = services["iam"]
    assert iam["ServiceName"] == "AWS Identity and Access Management"
    assert iam["LastAuthenticatedEntity"] == role_arn
    assert iam["LastAuthenticatedRegion"] == "us-east-1"
    assert iam["TotalAuthenticatedEntities"] == 1
    assert "LastAuthenticated" in iam
    assert "TrackedActionsLastAccessed" not in iam
    s3 = services["s3"]
    assert s3 == {
        "ServiceName": "Amazon S3",
        "ServiceNamespace": "s3",
        "TotalAuthenticatedEntities": 0,
    }
    assert services["sts"]["ServiceName"] == "AWS Security Token Service"
    assert services["sts"]["LastAuthenticatedEntity"] == role_arn


async def test_role_report_action_level(api: Api) -> None:
    role_arn, _, _ = await role_setup(api)
    parsed = await report(api, role_arn, "ACTION_LEVEL")
    assert parsed["JobType"] == "ACTION_LEVEL"
    services = by_ns(parsed)
    iam_actions = {a["ActionName"]: a for a in services["iam"]["TrackedActionsLastAccessed"]}
    assert iam_actions["ListUsers"]["LastAccessedEntity"] == role_arn
    assert iam_actions["ListUsers"]["LastAccessedRegion"] == "us-east-1"
    assert "LastAccessedTime" in iam_actions["ListUsers"]
    assert iam_actions["ListRoles"] == {"ActionName": "ListRoles"}  # allowed, never used
    assert "GetUser" not in iam_actions  # not allowed by iam:List*
    assert all(name.startswith("List") for name in iam_actions)
    assert list(iam_actions) == sorted(iam_actions)
    sts_actions = {a["ActionName"]: a for a in services["sts"]["TrackedActionsLastAccessed"]}
    assert sts_actions["GetCallerIdentity"]["LastAccessedEntity"] == role_arn
    assert "LastAccessedTime" not in sts_actions["AssumeRole"]
    assert "TrackedActionsLastAccessed" not in services["s3"]  # not served here


async def test_with_entities_for_a_role_report(api: Api) -> None:
    role_arn, _, _ = await role_setup(api)
    job = (await report(api, role_arn))["JobId"]
    got = boto_parse(
        await api.ok("GetServiceLastAccessedDetailsWithEntities", JobId=job, ServiceNamespace="iam")
    )
    assert got["JobStatus"] == "COMPLETED"
    [entity] = got["EntityDetailsList"]
    info = entity["EntityInfo"]
    assert info["Arn"] == role_arn
    assert (info["Name"], info["Type"], info["Path"]) == ("Worker", "ROLE", "/")
    assert info["Id"].startswith("AROA")
    assert "LastAuthenticated" in entity
    s3 = boto_parse(
        await api.ok("GetServiceLastAccessedDetailsWithEntities", JobId=job, ServiceNamespace="s3")
    )
    assert [e["EntityInfo"]["Arn"] for e in s3["EntityDetailsList"]] == [role_arn]
    assert "LastAuthenticated" not in s3["EntityDetailsList"][0]
    other = await api.ok(
        "GetServiceLastAccessedDetailsWithEntities", JobId=job, ServiceNamespace="ec2"
    )
    assert boto_parse(other)["EntityDetailsList"] == []


async def test_get_role_shows_role_last_used(api: Api) -> None:
    role_arn = await make_role(api)
    fresh = boto_parse(await api.ok("GetRole", RoleName="Worker"))
    assert fresh["Role"]["RoleLastUsed"] == {}
    op, _ = await api.new_user("op", policy=allow("sts:AssumeRole"))
    await assume(api, op, role_arn)
    # Until the flush nothing is written; after it, the assumption is the role's last use.
    assert boto_parse(await api.ok("GetRole", RoleName="Worker"))["Role"]["RoleLastUsed"] == {}
    await flush(api)
    used = boto_parse(await api.ok("GetRole", RoleName="worker"))["Role"]["RoleLastUsed"]
    assert used["Region"] == "us-east-1"
    assert "LastUsedDate" in used
    # Deleting the role forgets its use: a new role of that name was never used.
    await api.ok("DeleteRolePolicy", RoleName="Worker", PolicyName="p")
    await api.ok("DeleteRole", RoleName="Worker")
    await make_role(api)
    assert boto_parse(await api.ok("GetRole", RoleName="Worker"))["Role"]["RoleLastUsed"] == {}
    assert ("role", "worker") not in await last_accessed(api.rt.store, api.account_id)


async def test_user_report_counts_group_policies(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="readers")
    await api.ok(
        "PutGroupPolicy",
        GroupName="readers",
        PolicyName="read",
        PolicyDocument=allow(["iam:Get*", "iam:ListUsers", "dynamodb:GetItem"]),
    )
    alice, alice_arn = await api.new_user("alice")
    bob, bob_arn = await api.new_user("bob")
    for name in ("alice", "bob"):
        await api.ok("AddUserToGroup", GroupName="readers", UserName=name)
    assert (await api.call("GetUser", alice, UserName="bob")).ok
    await flush(api)

    parsed = await report(api, alice_arn, "ACTION_LEVEL")
    services = by_ns(parsed)
    assert sorted(services) == ["dynamodb", "iam"]
    assert services["iam"]["LastAuthenticatedEntity"] == alice_arn
    assert services["dynamodb"]["ServiceName"] == "Amazon DynamoDB"
    assert "LastAuthenticated" not in services["dynamodb"]
    actions = {a["ActionName"]: a for a in services["iam"]["TrackedActionsLastAccessed"]}
    assert actions["GetUser"]["LastAccessedEntity"] == alice_arn
    assert "ListUsers" in actions and "ListRoles" not in actions

    # The group's report: the last use by any member; its entities are the members.
    group_arn = f"arn:aws:iam::{api.account_id}:group/readers"
    group = by_ns(await report(api, group_arn))
    assert group["iam"]["LastAuthenticatedEntity"] == alice_arn
    assert group["iam"]["TotalAuthenticatedEntities"] == 1
    job = (await report(api, group_arn))["JobId"]
    got = boto_parse(
        await api.ok("GetServiceLastAccessedDetailsWithEntities", JobId=job, ServiceNamespace="iam")
    )
    listed = [(e["EntityInfo"]["Arn"], e["EntityInfo"]["Type"]) for e in got["EntityDetailsList"]]
    assert listed == [(alice_arn, "USER"), (bob_arn, "USER")]  # most recent use first
    assert "LastAuthenticated" in got["EntityDetailsList"][0]
    assert "LastAuthenticated" not in got["EntityDetailsList"][1]
    del bob


async def test_policy_reports(api: Api) -> None:
    created = await api.ok(
        "CreatePolicy", PolicyName="shared", PolicyDocument=allow(["iam:ListUsers", "sqs:*"])
    )
    policy_arn = created.text("Policy/Arn")
    assert policy_arn is not None
    await api.ok("CreateGroup", GroupName="g")
    await api.ok("AttachGroupPolicy", GroupName="g", PolicyArn=policy_arn)
    carol, carol_arn = await api.new_user("carol")
    await api.ok("AddUserToGroup", GroupName="g", UserName="carol")
    role_arn = await make_role(api, "Robot", allow("iam:ListRoles"))
    await api.ok("AttachRolePolicy", RoleName="Robot", PolicyArn=policy_arn)
    assert (await api.call("ListUsers", carol)).ok
    await flush(api)

    parsed = by_ns(await report(api, policy_arn))
    assert sorted(parsed) == ["iam", "sqs"]
    assert parsed["iam"]["LastAuthenticatedEntity"] == carol_arn
    assert parsed["sqs"]["ServiceName"] == "Amazon SQS"
    job = (await report(api, policy_arn))["JobId"]
    got = boto_parse(
        await api.ok("GetServiceLastAccessedDetailsWithEntities", JobId=job, ServiceNamespace="iam")
    )
    assert [e["EntityInfo"]["Arn"] for e in got["EntityDetailsList"]] == [carol_arn, role_arn]

    # An AWS-managed policy: "*" expands over the namespaces this broker serves.
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"
    await api.ok("AttachUserPolicy", UserName="carol", PolicyArn=admin)
    aws = by_ns(await report(api, admin))
    assert sorted(aws) == ["access-analyzer", "iam", "sts"]
    assert aws["access-analyzer"]["ServiceName"] == "IAM Access Analyzer"
    assert aws["iam"]["LastAuthenticatedEntity"] == carol_arn


async def test_wildcards_and_not_action(api: Api) -> None:
    doc = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "NotAction": ["iam:*", "s3:*"], "Resource": "*"},
                {"Effect": "Allow", "Action": "iam:Get*", "Resource": "*"},
                {"Effect": "Deny", "Action": "ec2:*", "Resource": "*"},
            ],
        }
    )
    role_arn = await make_role(api, "Wild", doc)
    parsed = by_ns(await report(api, role_arn, "ACTION_LEVEL"))
    assert sorted(parsed) == ["access-analyzer", "iam", "sts"]
    iam_actions = [a["ActionName"] for a in parsed["iam"]["TrackedActionsLastAccessed"]]
    assert iam_actions and all(a.startswith("Get") for a in iam_actions)
    sts_actions = [a["ActionName"] for a in parsed["sts"]["TrackedActionsLastAccessed"]]
    assert "AssumeRole" in sts_actions


async def test_pagination(api: Api) -> None:
    role_arn, _, _ = await role_setup(api)
    first = await report(api, role_arn, MaxItems=2)
    assert [s["ServiceNamespace"] for s in first["ServicesLastAccessed"]] == ["iam", "s3"]
    assert first["IsTruncated"] is True
    rest = boto_parse(
        await api.ok("GetServiceLastAccessedDetails", JobId=first["JobId"], Marker=first["Marker"])
    )
    assert [s["ServiceNamespace"] for s in rest["ServicesLastAccessed"]] == ["sts"]
    assert rest["IsTruncated"] is False and "Marker" not in rest


async def test_errors(api: Api) -> None:
    acct = api.account_id
    bad = await api.call("GenerateServiceLastAccessedDetails", Arn="arn:aws:s3:::my-bucket-name")
    bad.expect(400, "InvalidInput", "ARN arn:aws:s3:::my-bucket-name is not valid.")
    (
        await api.call(
            "GenerateServiceLastAccessedDetails", Arn=f"arn:aws:iam::{acct}:instance-profile/x"
        )
    ).expect(400, "InvalidInput")
    (await api.call("GenerateServiceLastAccessedDetails", Arn="short")).expect(
        400, "ValidationError"
    )
    (
        await api.call("GenerateServiceLastAccessedDetails", Arn=f"arn:aws:iam::{acct}:user/nobody")
    ).expect(404, "NoSuchEntity", "The user with name nobody cannot be found.")
    (
        await api.call("GenerateServiceLastAccessedDetails", Arn=f"arn:aws:iam::{acct}:role/none")
    ).expect(404, "NoSuchEntity")
    (
        await api.call("GenerateServiceLastAccessedDetails", Arn=f"arn:aws:iam::{acct}:policy/none")
    ).expect(404, "NoSuchEntity")
    (
        await api.call(
            "GenerateServiceLastAccessedDetails", Arn="arn:aws:iam::aws:policy/NotAPolicy"
        )
    ).expect(404, "NoSuchEntity")
    await api.ok("CreateUser", UserName="pathy", Path="/team/")
    (
        await api.call("GenerateServiceLastAccessedDetails", Arn=f"arn:aws:iam::{acct}:user/pathy")
    ).expect(404, "NoSuchEntity")  # the user's ARN has its path
    assert (
        await api.call(
            "GenerateServiceLastAccessedDetails", Arn=f"arn:aws:iam::{acct}:user/team/pathy"
        )
    ).ok
    (
        await api.call(
            "GenerateServiceLastAccessedDetails",
            Arn=f"arn:aws:iam::{acct}:user/team/pathy",
            Granularity="EVERYTHING",
        )
    ).expect(400, "ValidationError")
    unknown = "00000000-0000-4000-8000-000000000000"
    (await api.call("GetServiceLastAccessedDetails", JobId=unknown)).expect(404, "NoSuchEntity")
    (await api.call("GetServiceLastAccessedDetails", JobId="x" * 36)).expect(404, "NoSuchEntity")
    (await api.call("GetServiceLastAccessedDetails", JobId="short")).expect(400, "ValidationError")
    (
        await api.call(
            "GetServiceLastAccessedDetailsWithEntities", JobId=unknown, ServiceNamespace="iam"
        )
    ).expect(404, "NoSuchEntity")
    (
        await api.call(
            "GetServiceLastAccessedDetailsWithEntities", JobId=unknown, ServiceNamespace="i am"
        )
    ).expect(400, "ValidationError")


async def test_jobs_belong_to_their_account(api: Api) -> None:
    await api.ok("CreateUser", UserName="u")
    job = (await report(api, f"arn:aws:iam::{api.account_id}:user/u"))["JobId"]
    other_account, other_root = await api.new_account()
    (await api.call("GetServiceLastAccessedDetails", other_root, JobId=job)).expect(
        404, "NoSuchEntity"
    )
    (
        await api.call(
            "GenerateServiceLastAccessedDetails",
            other_root,
            Arn=f"arn:aws:iam::{api.account_id}:user/u",
        )
    ).expect(404, "NoSuchEntity")
    assert other_account != api.account_id


async def test_authorization(api: Api) -> None:
    acct = api.account_id
    await api.ok("CreateUser", UserName="target")
    await api.ok("CreateUser", UserName="other")
    target = f"arn:aws:iam::{acct}:user/target"
    nobody, _ = await api.new_user("nobody")
    (await api.call("GenerateServiceLastAccessedDetails", nobody, Arn=target)).expect(
        403, "AccessDenied"
    )
    # Generate is authorized on the entity's ARN; the Get actions on "*".
    auditor, _ = await api.new_user(
        "auditor",
        policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iam:GenerateServiceLastAccessedDetails",
                        "Resource": target,
                    },
                    {
                        "Effect": "Allow",
                        "Action": "iam:GetServiceLastAccessedDetails",
                        "Resource": "*",
                    },
                ],
            }
        ),
    )
    gen = await api.ok("GenerateServiceLastAccessedDetails", auditor, Arn=target)
    job = gen.text("JobId")
    assert job is not None
    (
        await api.call(
            "GenerateServiceLastAccessedDetails", auditor, Arn=f"arn:aws:iam::{acct}:user/other"
        )
    ).expect(403, "AccessDenied")
    # A caller not allowed to generate cannot probe which entities exist.
    (
        await api.call(
            "GenerateServiceLastAccessedDetails", auditor, Arn=f"arn:aws:iam::{acct}:user/ghost"
        )
    ).expect(403, "AccessDenied")
    assert (await api.call("GetServiceLastAccessedDetails", auditor, JobId=job)).ok
    (
        await api.call(
            "GetServiceLastAccessedDetailsWithEntities",
            auditor,
            JobId=job,
            ServiceNamespace="iam",
        )
    ).expect(403, "AccessDenied")
    await api.ok(
        "PutUserPolicy",
        UserName="auditor",
        PolicyName="deny",
        PolicyDocument=deny("iam:GetServiceLastAccessedDetails"),
    )
    (await api.call("GetServiceLastAccessedDetails", auditor, JobId=job)).expect(
        403, "AccessDenied"
    )


async def test_last_accessed_for_other_features(api: Api) -> None:
    role_arn, user_arn, _ = await role_setup(api)
    data = await last_accessed(api.rt.store, api.account_id)
    role = data[("role", "worker")]
    assert set(role.services) == {"iam", "sts"}
    assert set(role.services["iam"].actions) == {"ListUsers", "GetUser"}
    assert role.role_last_used is not None and role.role_last_used[1] == "us-east-1"
    op = data[("user", "op")]
    assert set(op.services) == {"sts"}
    assert "AssumeRole" in op.services["sts"].actions
    assert op.role_last_used is None
    assert role_arn.endswith("role/Worker") and user_arn.endswith("user/op")


async def test_root_calls_are_not_tracked(api: Api) -> None:
    await api.ok("ListUsers")
    await api.sts_ok("GetCallerIdentity")
    await flush(api)
    assert await last_accessed(api.rt.store, api.account_id) == {}


async def test_denied_attempts_count_and_failed_assumptions_do_not(api: Api) -> None:
    role_arn = await make_role(api)
    # The user may only assume the role; its denied IAM attempt still counts as iam access.
    user, _ = await api.new_user("prober", policy=allow("sts:AssumeRole"))
    denied = await api.call("ListUsers", user)
    assert denied.status == 403
    other = f"arn:aws:iam::{api.account_id}:role/Nope"
    refused = await api.sts("AssumeRole", user, RoleArn=other, RoleSessionName="s1")
    assert refused.status == 403
    await flush(api)
    data = await last_accessed(api.rt.store, api.account_id)
    prober = data[("user", "prober")]
    assert set(prober.services) == {"iam", "sts"}
    assert set(prober.services["iam"].actions) == {"ListUsers"}
    assert ("role", "worker") not in data  # nobody assumed it, and "Nope" does not exist
    assert role_arn.endswith("role/Worker")
