"""Console passwords, the password policy and account aliases through boto3 and the ``aws`` CLI,
on a real ``broker serve`` process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.broker_proc import BrokerProcess, Creds

CHEAP_HASHING = {
    "BROKER_SIGNIN_HASH_TIME_COST": "1",
    "BROKER_SIGNIN_HASH_MEMORY_KIB": "64",
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", env=CHEAP_HASHING).start()
    yield proc
    proc.stop()


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: dict[str, Any] = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


STRICT_POLICY = {
    "MinimumPasswordLength": 12,
    "RequireSymbols": True,
    "RequireNumbers": True,
    "RequireUppercaseCharacters": True,
    "RequireLowercaseCharacters": True,
    "AllowUsersToChangePassword": True,
    "PasswordReusePrevention": 3,
}

# (password, the rule it breaks): each breaks exactly one rule of STRICT_POLICY.
VIOLATIONS = [
    ("Sh0rt!pass", "minimum length"),
    ("no-uppercase-1x", "uppercase"),
    ("NO-LOWERCASE-1X", "lowercase"),
    ("No-Numbers-Here", "number"),
    ("NoSymbolsHere12", "symbol"),
]
COMPLIANT = "Compliant-Passw0rd"


def test_policy_matrix_and_reuse_prevention(broker: BrokerProcess) -> None:
    iam = broker.client("iam", broker.root_creds())
    iam.update_account_password_policy(**STRICT_POLICY)
    policy = iam.get_account_password_policy()["PasswordPolicy"]
    for key, value in STRICT_POLICY.items():
        assert policy[key] == value
    assert policy["ExpirePasswords"] is False

    iam.create_user(UserName="alice")
    for password, rule in VIOLATIONS:
        with pytest.raises(iam.exceptions.PasswordPolicyViolationException) as bad:
            iam.create_login_profile(UserName="alice", Password=password)
        assert error_of(bad) == ("PasswordPolicyViolation", 400)
        assert rule in bad.value.response["Error"]["Message"]
        assert password not in bad.value.response["Error"]["Message"]
    profile = iam.create_login_profile(UserName="alice", Password=COMPLIANT)["LoginProfile"]
    assert profile["UserName"] == "alice" and profile["PasswordResetRequired"] is False
    for password, _ in VIOLATIONS:  # the rules hold for administrators' resets too
        with pytest.raises(iam.exceptions.PasswordPolicyViolationException):
            iam.update_login_profile(UserName="alice", Password=password)

    # Alice changes her own password: the last 3 (the current one included) are remembered.
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    alice = broker.client("iam", Creds(key["AccessKeyId"], key["SecretAccessKey"]))
    history = [COMPLIANT] + [f"Rotation-{n}-Passw0rd" for n in range(1, 4)]
    for old, new in zip(history, history[1:], strict=False):
        alice.change_password(OldPassword=old, NewPassword=new)
    current = history[-1]
    for reused in history[-3:]:
        with pytest.raises(iam.exceptions.PasswordPolicyViolationException) as bad:
            alice.change_password(OldPassword=current, NewPassword=reused)
        assert "previous 3 passwords" in bad.value.response["Error"]["Message"]
    # The fourth one back is forgotten.
    alice.change_password(OldPassword=current, NewPassword=history[0])

    with pytest.raises(ClientError) as wrong:
        alice.change_password(OldPassword="Not-The-Passw0rd", NewPassword="Whatever-Passw0rd1")
    assert error_of(wrong) == ("InvalidInput", 400)
    with pytest.raises(iam.exceptions.InvalidUserTypeException):
        iam.change_password(OldPassword=COMPLIANT, NewPassword="Whatever-Passw0rd1")


def test_login_profile_blocks_delete_user(broker: BrokerProcess) -> None:
    iam = broker.client("iam", broker.root_creds())
    iam.create_user(UserName="bob")
    iam.create_login_profile(UserName="bob", Password=COMPLIANT, PasswordResetRequired=True)
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_login_profile(UserName="bob", Password=COMPLIANT)
    assert iam.get_login_profile(UserName="bob")["LoginProfile"]["PasswordResetRequired"] is True
    with pytest.raises(iam.exceptions.DeleteConflictException) as conflict:
        iam.delete_user(UserName="bob")
    assert "login profile" in conflict.value.response["Error"]["Message"]
    iam.delete_login_profile(UserName="bob")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_login_profile(UserName="bob")
    iam.delete_user(UserName="bob")


def test_aws_cli_password_policy_and_alias(broker: BrokerProcess) -> None:
    root = broker.root_creds()
    missing = broker.aws(["iam", "get-account-password-policy"], root)
    assert missing.returncode != 0 and "NoSuchEntity" in missing.stderr

    done = broker.aws(
        [
            "iam",
            "update-account-password-policy",
            "--minimum-password-length",
            "16",
            "--require-numbers",
            "--max-password-age",
            "45",
            "--password-reuse-prevention",
            "2",
            "--hard-expiry",
        ],
        root,
    )
    assert done.returncode == 0, done.stderr
    got = broker.aws(["iam", "get-account-password-policy"], root, check=True)
    policy = json.loads(got.stdout)["PasswordPolicy"]
    assert policy["MinimumPasswordLength"] == 16
    assert policy["RequireNumbers"] is True and policy["RequireSymbols"] is False
    assert policy["ExpirePasswords"] is True and policy["MaxPasswordAge"] == 45
    assert policy["PasswordReusePrevention"] == 2 and policy["HardExpiry"] is True

    bad = broker.aws(
        ["iam", "update-account-password-policy", "--minimum-password-length", "5"], root
    )
    assert bad.returncode != 0

    assert (
        broker.aws(["iam", "create-account-alias", "--account-alias", "cli-corp"], root).returncode
        == 0
    )
    aliases = json.loads(broker.aws(["iam", "list-account-aliases"], root, check=True).stdout)
    assert aliases["AccountAliases"] == ["cli-corp"]
    assert (
        broker.aws(["iam", "delete-account-alias", "--account-alias", "cli-corp"], root).returncode
        == 0
    )
    aliases = json.loads(broker.aws(["iam", "list-account-aliases"], root, check=True).stdout)
    assert aliases["AccountAliases"] == []

    assert broker.aws(["iam", "delete-account-password-policy"], root).returncode == 0
    again = broker.aws(["iam", "get-account-password-policy"], root)
    assert again.returncode != 0 and "NoSuchEntity" in again.stderr
