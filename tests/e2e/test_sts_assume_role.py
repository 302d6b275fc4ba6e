"""AssumeRole end to end with boto3: trust, session policies, cross-account, ExternalId."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.broker_proc import BrokerProcess, Creds


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def trust(principal: dict[str, Any], **extra: Any) -> str:
    return doc({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra})


def new_user(iam: Any, name: str, policy: str | None = None) -> Creds:
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Creds(key["AccessKeyId"], key["SecretAccessKey"])


def creds_of(resp: dict[str, Any]) -> Creds:
    c = resp["Credentials"]
    return Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])


def test_assume_role_and_use_the_session(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    alice = new_user(iam, "alice", doc(allow("sts:AssumeRole")))
    role = iam.create_role(
        RoleName="reader", AssumeRolePolicyDocument=trust({"AWS": f"arn:aws:iam::{acct}:root"})
    )["Role"]
    iam.put_role_policy(
        RoleName="reader", PolicyName="r", PolicyDocument=doc(allow(["iam:List*", "iam:Get*"]))
    )
    sts = broker.client("sts", alice)
    resp = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
    session = creds_of(resp)
    assert session.access_key_id.startswith("ASIA")
    assert resp["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{acct}:assumed-role/reader/s1"
    assert resp["AssumedRoleUser"]["AssumedRoleId"] == f"{role['RoleId']}:s1"
    ident = broker.client("sts", session).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{acct}:assumed-role/reader/s1"
    assert ident["UserId"] == f"{role['RoleId']}:s1"
    as_role = broker.client("iam", session)
    assert [u["UserName"] for u in as_role.list_users()["Users"]] == ["alice"]
    with pytest.raises(ClientError) as err:
        as_role.create_user(UserName="nope")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert "assumed-role/reader/s1 is not authorized" in err.value.response["Error"]["Message"]

    # A session policy narrows the session to the intersection.
    narrowed = creds_of(
        sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s2",
                        Policy=doc(allow("iam:ListRoles")))
    )  # fmt: skip
    narrow = broker.client("iam", narrowed)
    assert [r["RoleName"] for r in narrow.list_roles()["Roles"]] == ["reader"]
    with pytest.raises(ClientError) as err:
        narrow.list_users()
    assert err.value.response["Error"]["Code"] == "AccessDenied"

    # The CLI with the session's credentials.
    out = broker.aws(["sts", "get-caller-identity"], session)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Arn"].endswith(":assumed-role/reader/s1")


def test_trust_rules(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    bob = new_user(iam, "bob")  # no identity policy at all
    carol = new_user(iam, "carol", doc(allow("sts:AssumeRole")))
    named = iam.create_role(
        RoleName="named", AssumeRolePolicyDocument=trust({"AWS": f"arn:aws:iam::{acct}:user/bob"})
    )["Role"]["Arn"]
    account_wide = iam.create_role(
        RoleName="account", AssumeRolePolicyDocument=trust({"AWS": acct})
    )["Role"]["Arn"]
    external = iam.create_role(
        RoleName="external",
        AssumeRolePolicyDocument=trust(
            {"AWS": acct}, Condition={"StringEquals": {"sts:ExternalId": "secret-123"}}
        ),
    )["Role"]["Arn"]
    # Named directly in the trust policy: no identity policy needed.
    broker.client("sts", bob).assume_role(RoleArn=named, RoleSessionName="xx")
    # Trusted only through the account: the caller's own policy must allow too.
    with pytest.raises(ClientError) as err:
        broker.client("sts", bob).assume_role(RoleArn=account_wide, RoleSessionName="xx")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    broker.client("sts", carol).assume_role(RoleArn=account_wide, RoleSessionName="xx")
    # ExternalId.
    with pytest.raises(ClientError) as err:
        broker.client("sts", carol).assume_role(
            RoleArn=external, RoleSessionName="xx", ExternalId="wrong-id"
        )
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    broker.client("sts", carol).assume_role(
        RoleArn=external, RoleSessionName="xx", ExternalId="secret-123"
    )
    # Root may not assume roles.
    with pytest.raises(ClientError) as err:
        broker.client("sts", broker.root_creds()).assume_role(RoleArn=named, RoleSessionName="xx")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert "Roles may not be assumed by root accounts" in err.value.response["Error"]["Message"]
    # Duration bounds.
    with pytest.raises(ClientError) as err:
        broker.client("sts", bob).assume_role(
            RoleArn=named, RoleSessionName="xx", DurationSeconds=7200
        )
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_cross_account_needs_both_sides(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    a_iam = broker.client("iam", broker.root_creds())
    a_acct = broker.account_id()
    other = json.loads(broker.run_cli(["account", "create"]))
    b_acct = other["AccountId"]
    b_iam = broker.client("iam", Creds(other["AccessKeyId"], other["SecretAccessKey"]))
    role_arn = b_iam.create_role(
        RoleName="shared", AssumeRolePolicyDocument=trust({"AWS": f"arn:aws:iam::{a_acct}:root"})
    )["Role"]["Arn"]
    b_iam.put_role_policy(RoleName="shared", PolicyName="r", PolicyDocument=doc(allow("iam:List*")))
    dave = new_user(a_iam, "dave")
    with pytest.raises(ClientError) as err:  # B trusts A, but A's user has no permission
        broker.client("sts", dave).assume_role(RoleArn=role_arn, RoleSessionName="xx")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    a_iam.put_user_policy(
        UserName="dave", PolicyName="p", PolicyDocument=doc(allow("sts:AssumeRole", role_arn))
    )
    session = creds_of(
        broker.client("sts", dave).assume_role(RoleArn=role_arn, RoleSessionName="xx")
    )
    ident = broker.client("sts", session).get_caller_identity()
    assert ident["Account"] == b_acct
    assert ident["Arn"] == f"arn:aws:sts::{b_acct}:assumed-role/shared/xx"
    assert broker.client("iam", session).list_roles()["Roles"][0]["Arn"] == role_arn
    # A role whose trust policy does not name account A refuses even an allowed caller.
    closed = b_iam.create_role(RoleName="closed", AssumeRolePolicyDocument=trust({"AWS": b_acct}))[
        "Role"
    ]["Arn"]
    a_iam.put_user_policy(
        UserName="dave", PolicyName="p", PolicyDocument=doc(allow("sts:AssumeRole"))
    )
    with pytest.raises(ClientError) as err:
        broker.client("sts", dave).assume_role(RoleArn=closed, RoleSessionName="xx")
    assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_get_session_token_and_federation_token(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    erin = new_user(iam, "erin", doc(allow(["iam:ListUsers", "sts:GetFederationToken"])))
    session = creds_of(broker.client("sts", erin).get_session_token(DurationSeconds=900))
    assert broker.client("sts", session).get_caller_identity()["Arn"] == (
        f"arn:aws:iam::{acct}:user/erin"
    )
    assert broker.client("iam", session).list_users()["Users"]
    with pytest.raises(ClientError) as err:
        broker.client("sts", session).get_session_token()
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    fed = broker.client("sts", erin).get_federation_token(
        Name="visitor", Policy=doc(allow("iam:ListUsers"))
    )
    assert fed["FederatedUser"]["Arn"] == f"arn:aws:sts::{acct}:federated-user/visitor"
    fed_creds = creds_of(fed)
    assert broker.client("sts", fed_creds).get_caller_identity()["Arn"] == (
        f"arn:aws:sts::{acct}:federated-user/visitor"
    )
    assert broker.client("iam", fed_creds).list_users()["Users"]
    with pytest.raises(ClientError):
        broker.client("iam", fed_creds).list_roles()  # not in the session policy
    info = broker.client("sts", erin).get_access_key_info(AccessKeyId=session.access_key_id)
    assert info["Account"] == acct


def test_encoded_denials_decode_for_the_same_account_only(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    iam = broker.client("iam", broker.root_creds())
    frank = new_user(iam, "frank", doc(allow("sts:DecodeAuthorizationMessage")))
    with pytest.raises(ClientError) as err:
        broker.client("iam", frank).list_users()
    message = err.value.response["Error"]["Message"]
    assert "is not authorized to perform: iam:ListUsers" in message
    encoded = message.split("Encoded authorization failure message: ", 1)[1]
    sts = broker.client("sts", frank)
    decoded = json.loads(sts.decode_authorization_message(EncodedMessage=encoded)["DecodedMessage"])
    assert decoded["allowed"] is False and decoded["explicitDeny"] is False
    assert decoded["context"]["action"] == "iam:ListUsers"
    assert decoded["context"]["principal"]["arn"].endswith(":user/frank")
    keys = {c["key"] for c in decoded["context"]["conditions"]["items"]}
    assert "aws:sourceip" in keys and "aws:principalarn" in keys
    tampered = encoded[:-2] + ("A" if encoded[-2] != "A" else "B") + encoded[-1]
    with pytest.raises(ClientError) as bad:
        sts.decode_authorization_message(EncodedMessage=tampered)
    assert bad.value.response["Error"]["Code"] == "InvalidAuthorizationMessageException"
    other = json.loads(broker.run_cli(["account", "create"]))
    with pytest.raises(ClientError) as foreign:
        broker.client(
            "sts", Creds(other["AccessKeyId"], other["SecretAccessKey"])
        ).decode_authorization_message(EncodedMessage=encoded)
    assert foreign.value.response["Error"]["Code"] == "InvalidAuthorizationMessageException"
    # The decoder itself needs permission.
    grace = new_user(iam, "grace")
    with pytest.raises(ClientError) as nope:
        broker.client("sts", grace).decode_authorization_message(EncodedMessage=encoded)
    assert nope.value.response["Error"]["Code"] == "AccessDenied"


def test_mfa_required_by_the_trust_policy(sqlite_broker: BrokerProcess) -> None:
    import base64
    import time

    from broker.core.totp import totp_code

    broker = sqlite_broker
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    henry = new_user(iam, "henry", doc(allow("sts:AssumeRole")))
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="henry-phone")["VirtualMFADevice"]
    serial = device["SerialNumber"]
    seed = base64.b32decode(
        device["Base32StringSeed"] + b"=" * (-len(device["Base32StringSeed"]) % 8)
    )
    now = int(time.time())
    iam.enable_mfa_device(
        UserName="henry", SerialNumber=serial,
        AuthenticationCode1=totp_code(seed, now - 30), AuthenticationCode2=totp_code(seed, now),
    )  # fmt: skip
    role = iam.create_role(
        RoleName="guarded",
        AssumeRolePolicyDocument=trust(
            {"AWS": acct}, Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}}
        ),
    )["Role"]["Arn"]
    sts = broker.client("sts", henry)
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=role, RoleSessionName="no-mfa")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as wrong:
        bad = f"{(int(totp_code(seed, now + 30)) + 1) % 1_000_000:06d}"
        sts.assume_role(RoleArn=role, RoleSessionName="bad", SerialNumber=serial, TokenCode=bad)
    assert wrong.value.response["Error"]["Code"] == "AccessDenied"
    code = totp_code(seed, now + 30)  # the next step: not used by EnableMFADevice
    resp = sts.assume_role(RoleArn=role, RoleSessionName="with-mfa", SerialNumber=serial,
                           TokenCode=code)  # fmt: skip
    session = creds_of(resp)
    assert (
        broker.client("sts", session)
        .get_caller_identity()["Arn"]
        .endswith("assumed-role/guarded/with-mfa")
    )
    with pytest.raises(ClientError) as replay:  # a code works once
        sts.assume_role(RoleArn=role, RoleSessionName="again", SerialNumber=serial, TokenCode=code)
    assert replay.value.response["Error"]["Code"] == "AccessDenied"
