"""Assume-role profiles end to end: the real ``aws`` CLI and boto3 read a config file we write.

The source profile holds a user's static keys in ``AWS_SHARED_CREDENTIALS_FILE``; the assumed
profile in ``AWS_CONFIG_FILE`` names ``role_arn`` + ``source_profile`` with ``external_id``,
``duration_seconds`` and ``role_session_name`` (aws-wire.md sections 6.5 and 7). Each client
signs AssumeRole with the source keys itself, then uses the session. With ``mfa_serial`` the CLI
and botocore prompt ``Enter MFA code for <serial>:``; the code (computed from the seed the broker
returned at CreateVirtualMFADevice, at the real time) goes in on standard input. Those runs start
in a new session so the prompt cannot reach a terminal and falls back to standard input.

``HOME`` points at a temporary directory, so the CLI's assume-role cache (``~/.aws/cli/cache``)
starts empty and is inspected by the tests.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from broker.core.totp import STEP_SECONDS, totp_code
from tests.support.broker_proc import REGION, BrokerProcess, Creds
from tests.support.sdk import write_aws_files

AWS = Path(sys.executable).parent / "aws"
EXTERNAL_ID = "ext-id-4242"
DURATION = 1800
SESSION_NAME = "profile-session"
SUBPROCESS_TIMEOUT_SECONDS = 60


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@dataclass
class Profiles:
    """A private ``HOME`` with an AWS config file and a shared credentials file."""

    home: Path
    endpoint: str
    endpoint_in_profiles: bool = True

    @property
    def config(self) -> Path:
        return self.home / "config"

    @property
    def credentials(self) -> Path:
        return self.home / "credentials"

    def write(self, sections: dict[str, dict[str, str]], keys: dict[str, Creds]) -> None:
        """Write ``[profile NAME]`` sections and the static keys of source profiles."""
        common = {"region": REGION}
        if self.endpoint_in_profiles:
            common["endpoint_url"] = self.endpoint
        write_aws_files(self.config, self.credentials, sections, keys, common)

    def environment(self) -> dict[str, str]:
        """A hermetic environment: no inherited ``AWS_*`` variable, files and HOME ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
        env.update(
            {
                "HOME": str(self.home),
                "AWS_CONFIG_FILE": str(self.config),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials),
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_MAX_ATTEMPTS": "1",
                "AWS_RETRY_MODE": "standard",
                "AWS_PAGER": "",
            }
        )
        if not self.endpoint_in_profiles:
            env["AWS_ENDPOINT_URL"] = self.endpoint
        return env

    def aws(self, args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run the ``aws`` CLI in a new session (no terminal), ``stdin`` as its input."""
        return subprocess.run(
            [str(AWS) if AWS.exists() else "aws", "--output", "json", *args],
            env=self.environment(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_SECONDS,
            start_new_session=True,
        )

    def cached_credentials(self) -> list[dict[str, Any]]:
        """What the CLI cached of its assume-role calls."""
        cache = self.home / ".aws" / "cli" / "cache"
        if not cache.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]


@dataclass(frozen=True)
class Setup:
    """A user with static keys and a role it may assume with an external id."""

    account: str
    user: Creds
    role_arn: str


def make_setup(broker: BrokerProcess) -> Setup:
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    iam.create_user(UserName="dev")
    key = iam.create_access_key(UserName="dev")["AccessKey"]
    trust = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{acct}:user/dev"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
        }
    )
    role = iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(
        RoleName="deployer", PolicyName="read", PolicyDocument=doc(allow("iam:List*"))
    )
    return Setup(acct, Creds(key["AccessKeyId"], key["SecretAccessKey"]), str(role["Arn"]))


def assumed_profile(setup: Setup, **overrides: str) -> dict[str, str]:
    values = {
        "role_arn": setup.role_arn,
        "source_profile": "base",
        "external_id": EXTERNAL_ID,
        "duration_seconds": str(DURATION),
        "role_session_name": SESSION_NAME,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v}


def session_record(broker: BrokerProcess, role_arn: str, name: str) -> dict[str, Any]:
    """The broker's record of the (one) live session of ``role_arn`` named ``name``."""
    listed = json.loads(broker.run_cli(["sessions", "list", "--role", role_arn]))
    found = [s for s in listed if str(s["arn"]).endswith(f"/{name}")]
    assert len(found) == 1, listed
    record: dict[str, Any] = found[0]
    return record


@pytest.mark.parametrize("endpoint", ["profile endpoint_url", "AWS_ENDPOINT_URL"])
def test_cli_with_an_assume_role_profile(
    sqlite_broker: BrokerProcess, tmp_path: Path, endpoint: str
) -> None:
    broker = sqlite_broker
    setup = make_setup(broker)
    profiles = Profiles(tmp_path / "home", broker.url, endpoint == "profile endpoint_url")
    profiles.home.mkdir()
    profiles.write(
        {
            "base": {},
            "assumed": assumed_profile(setup),
            "no-external-id": assumed_profile(setup, external_id=""),
        },
        {"base": setup.user},
    )
    out = profiles.aws(["--profile", "assumed", "sts", "get-caller-identity"])
    assert out.returncode == 0, out.stderr
    ident = json.loads(out.stdout)
    assert ident["Arn"] == f"arn:aws:sts::{setup.account}:assumed-role/deployer/{SESSION_NAME}"
    assert ident["Account"] == setup.account
    assert ident["UserId"].endswith(f":{SESSION_NAME}") and ident["UserId"].startswith("AROA")

    out = profiles.aws(["--profile", "assumed", "iam", "list-users"])
    assert out.returncode == 0, out.stderr
    assert [u["UserName"] for u in json.loads(out.stdout)["Users"]] == ["dev"]

    # duration_seconds reached the broker: the session lives exactly that long.
    record = session_record(broker, setup.role_arn, SESSION_NAME)
    assert int(record["expires_at"]) - int(record["issued_at"]) == DURATION
    assert record["caller"] == f"arn:aws:iam::{setup.account}:user/dev"
    [cached] = profiles.cached_credentials()
    assert cached["Credentials"]["AccessKeyId"] == record["akid"]
    assert cached["AssumedRoleUser"]["Arn"] == ident["Arn"]

    # external_id is what the trust policy checks: without it the CLI gets AccessDenied.
    out = profiles.aws(["--profile", "no-external-id", "sts", "get-caller-identity"])
    assert out.returncode != 0
    assert "AccessDenied" in out.stderr and "sts:AssumeRole" in out.stderr


def test_boto3_session_with_an_assume_role_profile(
    sqlite_broker: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = sqlite_broker
    setup = make_setup(broker)
    profiles = Profiles(tmp_path / "home", broker.url)
    profiles.home.mkdir()
    profiles.write({"base": {}, "assumed": assumed_profile(setup)}, {"base": setup.user})
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in profiles.environment().items():
        if name.startswith("AWS_") or name == "HOME":
            monkeypatch.setenv(name, value)

    session = boto3.Session(profile_name="assumed")
    ident = session.client("sts").get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{setup.account}:assumed-role/deployer/{SESSION_NAME}"
    users = session.client("iam").list_users()["Users"]
    assert [u["UserName"] for u in users] == ["dev"]
    credentials = session.get_credentials()
    assert credentials is not None and credentials.method == "assume-role"
    frozen = credentials.get_frozen_credentials()
    assert frozen.access_key.startswith("ASIA") and frozen.token
    record = session_record(broker, setup.role_arn, SESSION_NAME)
    assert record["akid"] == frozen.access_key
    assert int(record["expires_at"]) - int(record["issued_at"]) == DURATION


# -- MFA -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MfaUser:
    """A user with static keys and an enabled virtual MFA device."""

    name: str
    creds: Creds
    serial: str
    seed: bytes
    last_step: int  # the last time step a code of the device was accepted for


def mfa_user(broker: BrokerProcess, name: str) -> MfaUser:
    iam = broker.client("iam", broker.root_creds())
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"{name}-phone")["VirtualMFADevice"]
    seed = base64.b32decode(device["Base32StringSeed"])
    step = int(time.time()) // STEP_SECONDS
    iam.enable_mfa_device(
        UserName=name,
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp_code(seed, (step - 1) * STEP_SECONDS),
        AuthenticationCode2=totp_code(seed, step * STEP_SECONDS),
    )
    creds = Creds(key["AccessKeyId"], key["SecretAccessKey"])
    return MfaUser(name, creds, str(device["SerialNumber"]), seed, step)


def next_code(user: MfaUser) -> str:
    """A code the broker accepts now: the current step's, or the step after the last used."""
    step = max(int(time.time()) // STEP_SECONDS, user.last_step + 1)
    return totp_code(user.seed, step * STEP_SECONDS)


def mfa_setup(broker: BrokerProcess) -> tuple[str, MfaUser, MfaUser]:
    """A role whose trust policy demands MFA, and two users (one device per client)."""
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    trust = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": acct},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    )
    role = iam.create_role(RoleName="guarded", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="guarded", PolicyName="read", PolicyDocument=doc(allow("iam:List*"))
    )
    users = []
    for name in ("cli-person", "sdk-person"):
        user = mfa_user(broker, name)
        iam.put_user_policy(
            UserName=name, PolicyName="assume", PolicyDocument=doc(allow("sts:AssumeRole", role))
        )
        users.append(user)
    return str(role), users[0], users[1]


BOTO3_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import boto3
    session = boto3.Session(profile_name=sys.argv[1])
    ident = session.client("sts").get_caller_identity()
    users = session.client("iam").list_users()["Users"]
    print(json.dumps({"Arn": ident["Arn"], "Users": sorted(u["UserName"] for u in users),
                      "Method": session.get_credentials().method}))
    """
)


def test_mfa_serial_profiles_prompt_for_a_code(
    sqlite_broker: BrokerProcess, tmp_path: Path
) -> None:
    broker = sqlite_broker
    acct = broker.account_id()
    role, cli_user, sdk_user = mfa_setup(broker)
    profiles = Profiles(tmp_path / "home", broker.url)
    profiles.home.mkdir()
    sections = {
        "cli-base": {},
        "sdk-base": {},
        "cli-mfa": {"role_arn": role, "source_profile": "cli-base", "mfa_serial": cli_user.serial,
                    "role_session_name": "cli-mfa"},
        "sdk-mfa": {"role_arn": role, "source_profile": "sdk-base", "mfa_serial": sdk_user.serial,
                    "role_session_name": "sdk-mfa"},
        "cli-no-mfa": {"role_arn": role, "source_profile": "cli-base",
                       "role_session_name": "cli-no-mfa"},
    }  # fmt: skip
    profiles.write(sections, {"cli-base": cli_user.creds, "sdk-base": sdk_user.creds})

    # Without MFA the trust policy refuses.
    out = profiles.aws(["--profile", "cli-no-mfa", "sts", "get-caller-identity"])
    assert out.returncode != 0 and "AccessDenied" in out.stderr

    # The CLI prompts for the code of the profile's device and reads it from standard input.
    out = profiles.aws(
        ["--profile", "cli-mfa", "sts", "get-caller-identity"], stdin=next_code(cli_user) + "\n"
    )
    assert out.returncode == 0, out.stderr
    assert f"Enter MFA code for {cli_user.serial}:" in out.stderr
    assert json.loads(out.stdout)["Arn"] == f"arn:aws:sts::{acct}:assumed-role/guarded/cli-mfa"
    # The CLI cached the session: the next command neither prompts nor assumes the role again.
    out = profiles.aws(["--profile", "cli-mfa", "iam", "list-users"])
    assert out.returncode == 0, out.stderr
    assert "Enter MFA code" not in out.stderr
    assert "cli-person" in [u["UserName"] for u in json.loads(out.stdout)["Users"]]
    record = session_record(broker, role, "cli-mfa")
    [cached] = profiles.cached_credentials()
    assert cached["Credentials"]["AccessKeyId"] == record["akid"]

    # A code that was already used is refused (the same code, fed to a fresh cache).
    for path in (profiles.home / ".aws" / "cli" / "cache").glob("*.json"):
        path.unlink()
    out = profiles.aws(
        ["--profile", "cli-mfa", "sts", "get-caller-identity"],
        stdin=totp_code(cli_user.seed, cli_user.last_step * STEP_SECONDS) + "\n",
    )
    assert out.returncode != 0 and "AccessDenied" in out.stderr
    assert "MultiFactorAuthentication failed" in out.stderr

    # boto3 with the same kind of profile prompts through getpass the same way.
    script = subprocess.run(
        [sys.executable, "-c", BOTO3_SCRIPT, "sdk-mfa"],
        env=profiles.environment(),
        input=next_code(sdk_user) + "\n",
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        start_new_session=True,
    )
    assert script.returncode == 0, script.stderr
    assert f"Enter MFA code for {sdk_user.serial}:" in script.stderr
    result = json.loads(script.stdout)
    assert result["Arn"] == f"arn:aws:sts::{acct}:assumed-role/guarded/sdk-mfa"
    assert result["Method"] == "assume-role"
    assert "sdk-person" in result["Users"]
