"""API tests: GetAccountSummary (every ``SummaryMap`` key of the model, counts and quotas).

The broker runs in-process on a ``MemoryStore``; replies are parsed with botocore's own
``QueryParser``, so ``SummaryMap`` is read exactly as boto3 reads it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from broker.core import limits
from broker.core.totp import STEP_SECONDS, totp_code
from tests.api.conftest import TRUST_EC2, Api, allow, boto_parse, q, service_model

MANAGED_ARN = "arn:aws:iam::aws:policy/ReadOnlyAccess"


def summary_keys() -> set[str]:
    """The model's ``summaryKeyType`` enum: every key AWS may put in ``SummaryMap``."""
    shape = service_model("iam").shape_for("summaryKeyType")
    return set(shape.enum)


async def summary(api: Api, creds: Any = None) -> dict[str, int]:
    reply = await api.ok("GetAccountSummary", creds)
    parsed = boto_parse(reply)
    found: dict[str, int] = parsed["SummaryMap"]
    return found


def consecutive_codes(seed: bytes) -> tuple[str, str]:
    step = int(time.time()) // STEP_SECONDS
    return totp_code(seed, (step - 1) * STEP_SECONDS), totp_code(seed, step * STEP_SECONDS)


async def test_fresh_account_reports_every_model_key_with_quotas(api: Api) -> None:
    found = await summary(api)
    assert set(found) == summary_keys()
    assert all(isinstance(v, int) for v in found.values())
    assert found["Users"] == found["Groups"] == found["Roles"] == 0
    assert found["Policies"] == found["InstanceProfiles"] == found["Providers"] == 0
    assert found["MFADevices"] == found["MFADevicesInUse"] == found["PolicyVersionsInUse"] == 0
    assert found["UsersQuota"] == limits.USERS_PER_ACCOUNT
    assert found["GroupsQuota"] == limits.GROUPS_PER_ACCOUNT
    assert found["RolesQuota"] == limits.ROLES_PER_ACCOUNT
    assert found["PoliciesQuota"] == limits.POLICIES_PER_ACCOUNT
    assert found["InstanceProfilesQuota"] == limits.INSTANCE_PROFILES_PER_ACCOUNT
    assert found["GroupsPerUserQuota"] == limits.GROUPS_PER_USER
    assert found["AttachedPoliciesPerUserQuota"] == limits.ATTACHED_POLICIES_PER_USER
    assert found["AttachedPoliciesPerGroupQuota"] == limits.ATTACHED_POLICIES_PER_GROUP
    assert found["AttachedPoliciesPerRoleQuota"] == limits.ATTACHED_POLICIES_PER_ROLE
    assert found["VersionsPerPolicyQuota"] == limits.VERSIONS_PER_POLICY
    assert found["AccessKeysPerUserQuota"] == limits.ACCESS_KEYS_PER_USER
    assert found["SigningCertificatesPerUserQuota"] == limits.SIGNING_CERTIFICATES_PER_USER
    assert found["UserPolicySizeQuota"] == limits.USER_INLINE_POLICY_SIZE
    assert found["GroupPolicySizeQuota"] == limits.GROUP_INLINE_POLICY_SIZE
    assert found["RolePolicySizeQuota"] == limits.ROLE_INLINE_POLICY_SIZE
    assert found["PolicySizeQuota"] == limits.MANAGED_POLICY_SIZE
    assert found["AssumeRolePolicySizeQuota"] == limits.ASSUME_ROLE_POLICY_SIZE
    assert found["ServerCertificatesQuota"] == limits.SERVER_CERTIFICATES_PER_ACCOUNT
    assert found["PolicyVersionsInUseQuota"] == limits.ATTACHED_POLICIES_PER_ACCOUNT
    # The root user: one access key from account creation, no MFA, no password, no certs.
    assert found["AccountAccessKeysPresent"] == 1
    assert found["AccountMFAEnabled"] == 0
    assert found["AccountPasswordPresent"] == 0
    assert found["AccountSigningCertificatesPresent"] == 0
    assert found["ServerCertificates"] == 0
    assert found["GlobalEndpointTokenVersion"] == 1


async def test_counts_follow_the_account(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("CreateUser", UserName="bob")
    await api.ok("CreateGroup", GroupName="admins")
    await api.ok("CreateRole", RoleName="worker", AssumeRolePolicyDocument=TRUST_EC2)
    await api.ok("CreateInstanceProfile", InstanceProfileName="worker")
    policy = await api.ok("CreatePolicy", PolicyName="lists", PolicyDocument=allow("iam:List*"))
    policy_arn = policy.text("Policy/Arn")
    assert policy_arn is not None
    await api.ok("AttachUserPolicy", UserName="alice", PolicyArn=policy_arn)
    await api.ok("AttachGroupPolicy", GroupName="admins", PolicyArn=policy_arn)
    await api.ok("AttachRolePolicy", RoleName="worker", PolicyArn=MANAGED_ARN)
    await api.ok("CreateVirtualMFADevice", VirtualMFADeviceName="spare")

    found = await summary(api)
    assert found["Users"] == 2
    assert found["Groups"] == 1
    assert found["Roles"] == 1
    assert found["InstanceProfiles"] == 1
    assert found["Policies"] == 1  # customer managed only
    assert found["PolicyVersionsInUse"] == 3  # attachments of customer and AWS managed policies
    assert found["MFADevices"] == 1
    assert found["MFADevicesInUse"] == 0
    assert found["AccountMFAEnabled"] == 0

    await api.ok("DetachUserPolicy", UserName="alice", PolicyArn=policy_arn)
    await api.ok("DeleteUser", UserName="bob")
    found = await summary(api)
    assert found["Users"] == 1
    assert found["PolicyVersionsInUse"] == 2


async def test_root_mfa_and_root_keys_flags(api: Api) -> None:
    created = await api.ok("CreateVirtualMFADevice", VirtualMFADeviceName="root-account-mfa-device")
    serial = created.text("VirtualMFADevice/SerialNumber")
    assert serial is not None
    await api.ok("CreateUser", UserName="carol")
    await api.ok("CreateVirtualMFADevice", VirtualMFADeviceName="carol-phone")

    found = await summary(api)
    assert (found["MFADevices"], found["MFADevicesInUse"], found["AccountMFAEnabled"]) == (2, 0, 0)

    # Enable the root user's device (the model requires UserName: the account id names the root).
    seed = await _seed(api, "root-account-mfa-device")
    code1, code2 = consecutive_codes(seed)
    await api.ok(
        "EnableMFADevice",
        UserName=api.account_id,
        SerialNumber=serial,
        AuthenticationCode1=code1,
        AuthenticationCode2=code2,
    )
    found = await summary(api)
    assert (found["MFADevices"], found["MFADevicesInUse"], found["AccountMFAEnabled"]) == (2, 1, 1)

    # An admin user deletes every root access key: the flag drops to 0.
    admin, _ = await api.new_user("admin", policy=allow("*"))
    root_key = api.root.access_key_id
    await api.ok("DeleteAccessKey", AccessKeyId=root_key)
    found = await summary(api, admin)
    assert found["AccountAccessKeysPresent"] == 0
    assert found["Users"] == 2


async def _seed(api: Api, name: str) -> bytes:
    """The device's TOTP seed, unsealed as the broker does (the test stands in for the app)."""
    record = await api.rt.store.get(api.account_id, f"mfa/{name}")
    assert record is not None
    doc = json.loads(record.value)
    return api.rt.keyring.unseal(doc["seed"], aad=doc["serial"].encode("utf-8"))


async def test_authorized_as_get_account_summary(api: Api) -> None:
    nobody, nobody_arn = await api.new_user("nobody")
    reply = await api.call("GetAccountSummary", nobody)
    reply.expect(
        403,
        "AccessDenied",
        f"User: {nobody_arn} is not authorized to perform: iam:GetAccountSummary on resource: * "
        "because no identity-based policy allows the iam:GetAccountSummary action",
    )
    reader, _ = await api.new_user("reader", policy=allow("iam:GetAccountSummary"))
    found = await summary(api, reader)
    assert found["Users"] == 2


async def test_summary_map_is_rendered_as_entries(api: Api) -> None:
    reply = await api.ok("GetAccountSummary")
    node = reply.find("SummaryMap")
    assert node is not None
    entries = node.findall(q("entry"))
    assert len(entries) == len(summary_keys())
    pairs = {e.findtext(q("key")): e.findtext(q("value")) for e in entries}
    assert pairs["UsersQuota"] == str(limits.USERS_PER_ACCOUNT)
    assert pairs["AccountAccessKeysPresent"] == "1"
