"""Root user rules end to end: a real ``broker serve`` process driven by boto3.

- A root access key acts only in its own account.
- The root user can delete its access keys; the account lives on through its IAM users.
- ``[security] restrict_root_access_keys`` refuses root credentials (long-term and the root's
  ``GetSessionToken`` credentials) everything but setting up administrators.
- At start-up the broker warns about root access keys used beyond that set in the last days.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.core.model import key_hint
from tests.support.broker_proc import BrokerProcess, Creds

ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"
TRUST_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
ALLOW_LISTS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:List*", "Resource": "*"}],
    }
)
RESTRICT = {"BROKER_SECURITY_RESTRICT_ROOT_ACCESS_KEYS": "true"}


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: dict[str, Any] = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def creds_of(key: dict[str, Any]) -> Creds:
    return Creds(key["AccessKeyId"], key["SecretAccessKey"])


def new_admin(iam: Any, name: str = "admin") -> Creds:
    iam.create_user(UserName=name)
    iam.attach_user_policy(UserName=name, PolicyArn=ADMIN_POLICY)
    return creds_of(iam.create_access_key(UserName=name)["AccessKey"])


def test_root_key_acts_only_in_its_own_account(sqlite_broker: BrokerProcess) -> None:
    broker = sqlite_broker
    a_root = broker.root_creds()
    a_acct = broker.account_id()
    other = json.loads(broker.run_cli(["account", "create"]))
    b_acct, b_root = other["AccountId"], Creds(other["AccessKeyId"], other["SecretAccessKey"])
    assert b_acct != a_acct
    a_iam, b_iam = broker.client("iam", a_root), broker.client("iam", b_root)

    b_user = b_iam.create_user(UserName="bea")["User"]
    b_key = b_iam.create_access_key(UserName="bea")["AccessKey"]["AccessKeyId"]
    b_policy = b_iam.create_policy(PolicyName="b-lists", PolicyDocument=ALLOW_LISTS)["Policy"]
    b_role = b_iam.create_role(RoleName="b-role", AssumeRolePolicyDocument=TRUST_EC2)["Role"]

    # Names of account B are unknown in account A, whatever the root key of A asks.
    probes: list[Callable[[], object]] = [
        lambda: a_iam.get_user(UserName="bea"),
        lambda: a_iam.get_role(RoleName="b-role"),
        lambda: a_iam.get_policy(PolicyArn=b_policy["Arn"]),
        lambda: a_iam.list_access_keys(UserName="bea"),
        lambda: a_iam.delete_access_key(AccessKeyId=b_root.access_key_id),
        lambda: a_iam.delete_access_key(UserName="bea", AccessKeyId=b_key),
        lambda: a_iam.update_access_key(AccessKeyId=b_root.access_key_id, Status="Inactive"),
    ]
    for call in probes:
        with pytest.raises(ClientError) as err:
            call()
        assert error_of(err) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as err:
        a_iam.get_access_key_last_used(AccessKeyId=b_key)
    assert error_of(err) == ("AccessDenied", 403)
    a_iam.create_user(UserName="amir")
    with pytest.raises(ClientError) as err:  # another account's policy is not attachable
        a_iam.attach_user_policy(UserName="amir", PolicyArn=b_policy["Arn"])
    assert error_of(err) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as err:  # B's role trusts nobody in A
        broker.client("sts", a_root).assume_role(RoleArn=b_role["Arn"], RoleSessionName="xx")
    assert error_of(err) == ("AccessDenied", 403)

    # What A's root creates lands in A; B is untouched.
    a_bea = a_iam.create_user(UserName="bea")["User"]
    assert a_bea["Arn"] == f"arn:aws:iam::{a_acct}:user/bea"
    assert a_bea["UserId"] != b_user["UserId"]
    assert [u["UserName"] for u in b_iam.list_users()["Users"]] == ["bea"]
    assert b_iam.get_user(UserName="bea")["User"]["UserId"] == b_user["UserId"]
    assert b_iam.list_attached_user_policies(UserName="bea")["AttachedPolicies"] == []
    [b_meta] = b_iam.list_access_keys()["AccessKeyMetadata"]
    assert (b_meta["AccessKeyId"], b_meta["Status"]) == (b_root.access_key_id, "Active")
    assert broker.client("sts", b_root).get_caller_identity()["Account"] == b_acct
    assert broker.client("sts", a_root).get_caller_identity()["Account"] == a_acct


def test_deleting_root_keys_leaves_the_account_to_its_admins(
    sqlite_broker: BrokerProcess,
) -> None:
    broker = sqlite_broker
    root = broker.root_creds()
    iam = broker.client("iam", root)
    admin = new_admin(iam)
    second = creds_of(iam.create_access_key()["AccessKey"])  # a second root key
    keys = {k["AccessKeyId"] for k in iam.list_access_keys()["AccessKeyMetadata"]}
    assert keys == {root.access_key_id, second.access_key_id}
    assert iam.get_account_summary()["SummaryMap"]["AccountAccessKeysPresent"] == 1

    # The root user deletes its keys, the last one with itself.
    iam.delete_access_key(AccessKeyId=second.access_key_id)
    iam.delete_access_key(AccessKeyId=root.access_key_id)

    for gone in (root, second):
        with pytest.raises(ClientError) as err:
            broker.client("sts", gone).get_caller_identity()
        assert error_of(err) == ("InvalidClientTokenId", 403)
        with pytest.raises(ClientError) as err:
            broker.client("iam", gone).list_users()
        assert error_of(err) == ("InvalidClientTokenId", 403)

    # The admin runs the account: users, keys, roles, and sees no root key left.
    admin_iam = broker.client("iam", admin)
    summary = admin_iam.get_account_summary()["SummaryMap"]
    assert summary["AccountAccessKeysPresent"] == 0
    admin_iam.create_user(UserName="dev")
    dev = creds_of(admin_iam.create_access_key(UserName="dev")["AccessKey"])
    admin_iam.create_role(RoleName="svc", AssumeRolePolicyDocument=TRUST_EC2)
    assert {u["UserName"] for u in admin_iam.list_users()["Users"]} == {"admin", "dev"}
    ident = broker.client("sts", dev).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:iam::{broker.account_id()}:user/dev"


def test_restricted_root_keys_only_set_up_admins(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Without the switch: the root user takes session credentials (GetSessionToken).
    node = BrokerProcess(data).start()
    try:
        root = node.root_creds()
        session = node.client("sts", root).get_session_token()["Credentials"]
        root_session = Creds(
            session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"]
        )
        node.client("iam", root).create_role(RoleName="before", AssumeRolePolicyDocument=TRUST_EC2)
    finally:
        node.stop()

    node = BrokerProcess(data, env=RESTRICT).start()
    try:
        account = node.account_id()
        iam, sts = node.client("iam", root), node.client("sts", root)
        assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{account}:root"
        # Setting up an administrator works.
        admin = new_admin(iam)
        iam.create_group(GroupName="admins")
        iam.add_user_to_group(GroupName="admins", UserName="admin")
        assert iam.get_account_summary()["SummaryMap"]["Users"] == 1
        # Anything else is refused, for the key and for the root's session credentials.
        for creds in (root, root_session):
            with pytest.raises(ClientError) as err:
                node.client("iam", creds).create_role(
                    RoleName="after", AssumeRolePolicyDocument=TRUST_EC2
                )
            assert error_of(err) == ("AccessDenied", 403)
            message = err.value.response["Error"]["Message"]
            assert "iam:CreateRole" in message
            assert "root user" in message
            with pytest.raises(ClientError) as err:
                node.client("iam", creds).list_roles()
            assert error_of(err) == ("AccessDenied", 403)
        with pytest.raises(ClientError) as err:
            sts.get_session_token()
        assert error_of(err) == ("AccessDenied", 403)
        ident = node.client("sts", root_session).get_caller_identity()
        assert ident["Arn"] == f"arn:aws:iam::{account}:root"
        # The administrator is not restricted; nothing refused was done.
        admin_iam = node.client("iam", admin)
        assert [r["RoleName"] for r in admin_iam.list_roles()["Roles"]] == ["before"]
        admin_iam.create_role(RoleName="after", AssumeRolePolicyDocument=TRUST_EC2)
        # Retiring the root key is part of the set.
        iam.delete_access_key(AccessKeyId=root.access_key_id)
        assert admin_iam.get_account_summary()["SummaryMap"]["AccountAccessKeysPresent"] == 0
    finally:
        node.stop()


def _new_lines(node: BrokerProcess, since: int) -> str:
    return node.log()[since:]


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "level=WARNING" in line and "root access" in line]


def test_start_up_warns_about_root_keys_used_beyond_setup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"BROKER_TRACKING_FLUSH_SECONDS": "0.2"}
    node = BrokerProcess(data, env=env).start()
    try:
        root = node.root_creds()
        iam = node.client("iam", root)
        iam.create_user(UserName="admin")  # setup only
        node.client("sts", root).get_caller_identity()
        time.sleep(0.6)  # let the write-behind flush run (stop flushes too)
    finally:
        node.stop()
    node = BrokerProcess(data, env=env)
    mark = len(node.log())
    node.start()
    try:
        assert _warnings(_new_lines(node, mark)) == []
        iam = node.client("iam", root)
        iam.create_role(RoleName="ops", AssumeRolePolicyDocument=TRUST_EC2)
        time.sleep(0.6)  # flushed on its own ...
        iam.create_user(UserName="later")  # ... so this later setup call's flush must keep it
        time.sleep(0.6)
    finally:
        node.stop()

    node = BrokerProcess(data, env=env)
    mark = len(node.log())
    node.start()
    try:
        text = _new_lines(node, mark)
        [line] = _warnings(text)
        assert f"account={node.account_id()}" in line
        assert key_hint(root.access_key_id) in line
        assert "iam:CreateRole" in line
        assert root.access_key_id not in text
        assert root.secret_access_key not in text
        # Once the root key is gone, the warning is too.
        node.client("iam", root).delete_access_key(AccessKeyId=root.access_key_id)
    finally:
        node.stop()
    node = BrokerProcess(data, env=env)
    mark = len(node.log())
    node.start()
    try:
        assert _warnings(_new_lines(node, mark)) == []
    finally:
        node.stop()
