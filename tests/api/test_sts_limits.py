"""Issuance throttling, session listing and revocation through the STS endpoint."""

from __future__ import annotations

import json

from tests.api.conftest import Api, ApiFactory, allow

TRUST = "arn:aws:iam::{acct}:root"


async def _role(api: Api) -> str:
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": api.account_id},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    created = await api.ok("CreateRole", RoleName="r", AssumeRolePolicyDocument=trust)
    await api.ok("PutRolePolicy", RoleName="r", PolicyName="p", PolicyDocument=allow("iam:List*"))
    return created.text("Role/Arn") or ""


async def test_issuance_is_throttled_per_principal(api_factory: ApiFactory) -> None:
    api = await api_factory(
        BROKER_LIMITS_ISSUE_RPS_PER_PRINCIPAL="0.001", BROKER_LIMITS_ISSUE_BURST="3"
    )
    role = await _role(api)
    creds, _ = await api.new_user("alice", policy=allow("sts:AssumeRole"))
    for i in range(3):
        await api.sts_ok("AssumeRole", creds, RoleArn=role, RoleSessionName=f"s{i}")
    reply = await api.sts("AssumeRole", creds, RoleArn=role, RoleSessionName="s9")
    reply.expect(400, "Throttling", "Rate exceeded")
    # Another principal has its own bucket.
    other, _ = await api.new_user("bob", policy=allow("sts:AssumeRole"))
    await api.sts_ok("AssumeRole", other, RoleArn=role, RoleSessionName="b1")
    # Throttled requests minted nothing.
    listed = await api.sts_ok("ListSessions", RoleArn=role)
    assert len(listed.members("Sessions")) == 4


async def test_list_and_revoke_sessions_through_the_api(api: Api) -> None:
    role = await _role(api)
    creds, _ = await api.new_user("alice", policy=allow("sts:AssumeRole"))
    minted = await api.sts_ok("AssumeRole", creds, RoleArn=role, RoleSessionName="one")
    akid = minted.text("Credentials/AccessKeyId")
    listed = await api.sts_ok("ListSessions")
    sessions = listed.members("Sessions")
    assert len(sessions) == 1
    sid = listed.member_texts("Sessions", "SessionId")[0]
    assert listed.member_texts("Sessions", "AccessKeyId") == [akid]
    assert "SecretAccessKey" not in listed.raw_text
    # A user without sts:ListSessions / sts:RevokeSessions is refused.
    (await api.sts("ListSessions", creds)).expect(403, "AccessDenied")
    (await api.sts("RevokeSessions", creds, SessionId=sid)).expect(403, "AccessDenied")
    await api.sts_ok("RevokeSessions", SessionId=sid)
    again = await api.sts_ok("ListSessions")
    assert again.member_texts("Sessions", "Revoked") == ["true"]
    (await api.sts("RevokeSessions", SessionId="0" * 32)).expect(404, "NoSuchEntity")
    (await api.sts("RevokeSessions")).expect(400, "ValidationError")
