"""API tests: access keys (create, list, update, delete, last used) for users and root."""

from __future__ import annotations

import asyncio
import re

from broker.core import limits
from tests.api.conftest import REGION, Api, Creds, allow

AKID = re.compile(r"^AKIA[A-Z2-7]{16}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


async def test_create_access_key(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    created = await api.ok("CreateAccessKey", UserName="alice")
    akid = created.text("AccessKey/AccessKeyId") or ""
    secret = created.text("AccessKey/SecretAccessKey") or ""
    assert AKID.match(akid)
    assert len(secret) == 40
    assert created.text("AccessKey/Status") == "Active"
    assert created.text("AccessKey/UserName") == "alice"
    assert TIMESTAMP.match(created.text("AccessKey/CreateDate") or "")
    # The new key works at once.
    ident = await api.sts("GetCallerIdentity", Creds(akid, secret))
    assert ident.text("Arn") == f"arn:aws:iam::{api.account_id}:user/alice"
    assert ident.text("Account") == api.account_id


async def test_list_access_keys_never_shows_secrets(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    first = await api.ok("CreateAccessKey", UserName="alice")
    second = await api.ok("CreateAccessKey", UserName="alice")
    secrets = [r.text("AccessKey/SecretAccessKey") or "" for r in (first, second)]
    listed = await api.ok("ListAccessKeys", UserName="alice")
    ids = sorted(r.text("AccessKey/AccessKeyId") or "" for r in (first, second))
    assert sorted(listed.member_texts("AccessKeyMetadata", "AccessKeyId")) == ids
    assert listed.member_texts("AccessKeyMetadata", "Status") == ["Active", "Active"]
    assert listed.member_texts("AccessKeyMetadata", "UserName") == ["alice", "alice"]
    for secret in secrets:
        assert secret.encode() not in listed.body
    assert b"SecretAccessKey" not in listed.body
    assert listed.text("IsTruncated") == "false"
    page = await api.ok("ListAccessKeys", UserName="alice", MaxItems=1)
    assert page.text("IsTruncated") == "true"
    assert len(page.members("AccessKeyMetadata")) == 1
    (await api.call("ListAccessKeys", UserName="ghost")).expect(404, "NoSuchEntity")


async def test_third_key_is_limit_exceeded(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    for _ in range(limits.ACCESS_KEYS_PER_USER):
        await api.ok("CreateAccessKey", UserName="alice")
    (await api.call("CreateAccessKey", UserName="alice")).expect(409, "LimitExceeded")
    listed = await api.ok("ListAccessKeys", UserName="alice")
    assert len(listed.members("AccessKeyMetadata")) == limits.ACCESS_KEYS_PER_USER


async def test_inactive_key_is_rejected_and_can_be_reactivated(api: Api) -> None:
    creds, arn = await api.new_user("alice")
    await api.ok(
        "UpdateAccessKey", UserName="alice", AccessKeyId=creds.access_key_id, Status="Inactive"
    )
    listed = await api.ok("ListAccessKeys", UserName="alice")
    assert listed.member_texts("AccessKeyMetadata", "Status") == ["Inactive"]
    reply = await api.sts("GetCallerIdentity", creds)
    reply.expect(
        403, "InvalidClientTokenId", "The security token included in the request is invalid."
    )
    (await api.call("ListUsers", creds)).expect(403, "InvalidClientTokenId")
    await api.ok(
        "UpdateAccessKey", UserName="alice", AccessKeyId=creds.access_key_id, Status="Active"
    )
    assert (await api.sts("GetCallerIdentity", creds)).text("Arn") == arn


async def test_update_access_key_validation(api: Api) -> None:
    creds, _ = await api.new_user("alice")
    (
        await api.call(
            "UpdateAccessKey", UserName="alice", AccessKeyId=creds.access_key_id, Status="Off"
        )
    ).expect(400, "ValidationError")
    (
        await api.call(
            "UpdateAccessKey",
            UserName="alice",
            AccessKeyId="AKIAAAAAAAAAAAAAAAAA",
            Status="Inactive",
        )
    ).expect(404, "NoSuchEntity", "The Access Key with id AKIAAAAAAAAAAAAAAAAA cannot be found.")
    # A key is found only under its own user.
    await api.ok("CreateUser", UserName="bob")
    (
        await api.call(
            "UpdateAccessKey", UserName="bob", AccessKeyId=creds.access_key_id, Status="Inactive"
        )
    ).expect(404, "NoSuchEntity")
    assert (await api.sts("GetCallerIdentity", creds)).ok


async def test_delete_access_key(api: Api) -> None:
    creds, _ = await api.new_user("alice")
    await api.ok("DeleteAccessKey", UserName="alice", AccessKeyId=creds.access_key_id)
    assert (await api.ok("ListAccessKeys", UserName="alice")).members("AccessKeyMetadata") == []
    (await api.sts("GetCallerIdentity", creds)).expect(403, "InvalidClientTokenId")
    (await api.call("DeleteAccessKey", UserName="alice", AccessKeyId=creds.access_key_id)).expect(
        404, "NoSuchEntity"
    )
    # The freed slot can be used again.
    for _ in range(limits.ACCESS_KEYS_PER_USER):
        await api.ok("CreateAccessKey", UserName="alice")


async def test_root_manages_its_own_keys(api: Api) -> None:
    listed = await api.ok("ListAccessKeys")
    assert listed.member_texts("AccessKeyMetadata", "AccessKeyId") == [api.root.access_key_id]
    assert (
        listed.members("AccessKeyMetadata")[0].find(
            "{https://iam.amazonaws.com/doc/2010-05-08/}UserName"
        )
        is None
    )
    created = await api.ok("CreateAccessKey")
    akid = created.text("AccessKey/AccessKeyId") or ""
    secret = created.text("AccessKey/SecretAccessKey") or ""
    assert AKID.match(akid) and len(secret) == 40
    second_root = Creds(akid, secret)
    ident = await api.sts("GetCallerIdentity", second_root)
    assert ident.text("Arn") == f"arn:aws:iam::{api.account_id}:root"
    # Root has the same two-key quota.
    (await api.call("CreateAccessKey")).expect(409, "LimitExceeded")
    listed = await api.ok("ListAccessKeys")
    assert sorted(listed.member_texts("AccessKeyMetadata", "AccessKeyId")) == sorted(
        [api.root.access_key_id, akid]
    )
    # Root keys never show up as a user's keys, and users' keys never as root's.
    await api.ok("CreateUser", UserName="alice")
    await api.ok("CreateAccessKey", UserName="alice")
    assert len((await api.ok("ListAccessKeys")).members("AccessKeyMetadata")) == 2
    await api.ok("UpdateAccessKey", AccessKeyId=akid, Status="Inactive")
    (await api.sts("GetCallerIdentity", second_root)).expect(403, "InvalidClientTokenId")
    await api.ok("DeleteAccessKey", AccessKeyId=akid)
    assert (await api.ok("ListAccessKeys")).member_texts("AccessKeyMetadata", "AccessKeyId") == [
        api.root.access_key_id
    ]


async def test_list_access_keys_without_user_name_as_user(api: Api) -> None:
    creds, _ = await api.new_user(
        "alice", policy=allow(["iam:ListAccessKeys", "iam:CreateAccessKey"])
    )
    await api.ok("CreateUser", UserName="bob")
    await api.ok("CreateAccessKey", UserName="bob")
    mine = await api.ok("ListAccessKeys", creds)
    assert mine.member_texts("AccessKeyMetadata", "AccessKeyId") == [creds.access_key_id]
    assert mine.member_texts("AccessKeyMetadata", "UserName") == ["alice"]
    # CreateAccessKey without UserName creates a key for the caller.
    created = await api.ok("CreateAccessKey", creds)
    assert created.text("AccessKey/UserName") == "alice"
    mine = await api.ok("ListAccessKeys", creds)
    assert len(mine.members("AccessKeyMetadata")) == 2


async def test_access_key_last_used(api: Api) -> None:
    creds, _ = await api.new_user("alice")
    never = await api.ok("GetAccessKeyLastUsed", AccessKeyId=creds.access_key_id)
    assert never.text("UserName") == "alice"
    assert never.text("AccessKeyLastUsed/ServiceName") == "N/A"
    assert never.text("AccessKeyLastUsed/Region") == "N/A"
    assert never.find("AccessKeyLastUsed/LastUsedDate") is None

    await api.sts("GetCallerIdentity", creds)
    await api.rt.tracker.flush()
    used = await api.ok("GetAccessKeyLastUsed", AccessKeyId=creds.access_key_id)
    assert used.text("AccessKeyLastUsed/ServiceName") == "sts"
    assert used.text("AccessKeyLastUsed/Region") == REGION
    assert TIMESTAMP.match(used.text("AccessKeyLastUsed/LastUsedDate") or "")

    # A denied IAM call still counts as a use of the key.
    (await api.call("ListUsers", creds)).expect(403, "AccessDenied")
    await api.rt.tracker.flush()
    used = await api.ok("GetAccessKeyLastUsed", AccessKeyId=creds.access_key_id)
    assert used.text("AccessKeyLastUsed/ServiceName") == "iam"


async def test_access_key_last_used_of_root_key(api: Api) -> None:
    await api.rt.tracker.flush()
    used = await api.ok("GetAccessKeyLastUsed", AccessKeyId=api.root.access_key_id)
    assert used.find("UserName") is None
    assert used.text("AccessKeyLastUsed/ServiceName") in {"sts", "iam"}
    assert used.text("AccessKeyLastUsed/Region") == REGION


async def test_key_quota_holds_under_concurrency(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    replies = await asyncio.gather(
        *[api.call("CreateAccessKey", UserName="alice") for _ in range(5)]
    )
    assert sum(r.ok for r in replies) == limits.ACCESS_KEYS_PER_USER
    assert all((r.status, r.code) == (409, "LimitExceeded") for r in replies if not r.ok)
    listed = await api.ok("ListAccessKeys", UserName="alice")
    created = sorted(r.text("AccessKey/AccessKeyId") or "" for r in replies if r.ok)
    assert sorted(listed.member_texts("AccessKeyMetadata", "AccessKeyId")) == created
