"""``broker credential-process`` end to end: profiles run it, boto3 and the ``aws`` CLI use it.

A private ``HOME`` holds an ``AWS_CONFIG_FILE`` whose profile says
``credential_process = <python> -m broker credential-process --role-arn ... --source-profile
base ...`` and an ``AWS_SHARED_CREDENTIALS_FILE`` with the ``base`` user's static keys. The SDKs
run the command themselves (spec/aws-wire.md 6.3) and must see the assumed-role ARN. The broker's
session records (``broker sessions list``) count the STS calls, and a stopped broker proves that a
second call within validity is answered from the cache. Failure paths print one line on stderr,
nothing on stdout, and exit non-zero. An MFA code is asked for on the controlling terminal (a
pseudo-terminal here), never on standard input.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import select
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import CredentialRetrievalError

from broker.core.totp import STEP_SECONDS, totp_code
from broker.delivery_cli import REFRESH_BEFORE_SECONDS
from tests.support.broker_proc import REGION, REPO, BrokerProcess, Creds
from tests.support.oidc_issuer import OidcIssuer, trust_policy
from tests.support.sdk import write_aws_files

AWS = Path(sys.executable).parent / "aws"
EXTERNAL_ID = "cp-external-7"
SESSION_NAME = "cp-session"
DURATION = 1800
TIMEOUT_SECONDS = 60
AUDIENCE = "sts.amazonaws.com"


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def process_command(*args: str) -> list[str]:
    """``python -m broker credential-process ARGS`` as a profile would run it."""
    return [sys.executable, "-m", "broker", "credential-process", *args]


@dataclass(frozen=True)
class Setup:
    """A user with static keys, the role it may assume (with an external id) and the broker."""

    broker: BrokerProcess
    account: str
    user: Creds
    role_arn: str

    def args(self, **overrides: str | None) -> list[str]:
        """The usual credential-process arguments, with ``overrides`` (None drops one)."""
        values: dict[str, str | None] = {
            "role-arn": self.role_arn,
            "source-profile": "base",
            "session-name": SESSION_NAME,
            "external-id": EXTERNAL_ID,
            "duration": str(DURATION),
            "endpoint-url": self.broker.url,
        }
        values.update({k.replace("_", "-"): v for k, v in overrides.items()})
        out: list[str] = []
        for name, value in values.items():
            if value is not None:
                out += [f"--{name}", value]
        return out

    def sessions(self, role_arn: str | None = None) -> list[dict[str, Any]]:
        """The broker's live sessions of the role (one per STS call that minted)."""
        listed: list[dict[str, Any]] = json.loads(
            self.broker.run_cli(["sessions", "list", "--role", role_arn or self.role_arn])
        )
        return listed


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
    iam.put_role_policy(RoleName="deployer", PolicyName="r", PolicyDocument=doc(allow("iam:List*")))
    return Setup(broker, acct, Creds(key["AccessKeyId"], key["SecretAccessKey"]), role["Arn"])


@dataclass
class Home:
    """A private ``HOME``: AWS config and credentials files, and the cache directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials"

    @property
    def xdg_cache(self) -> Path:
        return self.root / "xdg-cache"

    @property
    def cache_dir(self) -> Path:
        return self.xdg_cache / "broker" / "credential-process"

    def write(self, profiles: dict[str, dict[str, str]], keys: dict[str, Creds]) -> None:
        write_aws_files(self.config, self.credentials, profiles, keys, {"region": REGION})

    def environment(self) -> dict[str, str]:
        """No inherited ``AWS_*``/``BROKER_*`` variable; our files, HOME and cache."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
        env.update(
            {
                "HOME": str(self.root),
                "XDG_CACHE_HOME": str(self.xdg_cache),
                "PYTHONPATH": str(REPO),
                "AWS_CONFIG_FILE": str(self.config),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials),
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_MAX_ATTEMPTS": "1",
                "AWS_RETRY_MODE": "standard",
                "AWS_PAGER": "",
            }
        )
        return env

    def run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``broker credential-process ARGS`` in a new session (no terminal)."""
        return subprocess.run(
            process_command(*args),
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            start_new_session=True,
            cwd=str(self.root),
            **kwargs,
        )

    def cache_files(self) -> list[Path]:
        return sorted(self.cache_dir.glob("*.json")) if self.cache_dir.is_dir() else []


@pytest.fixture
def setup(sqlite_broker: BrokerProcess) -> Setup:
    return make_setup(sqlite_broker)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    root = tmp_path / "home"
    root.mkdir()
    return Home(root)


def ok_document(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON document a successful run printed (and nothing else)."""
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    document: dict[str, Any] = json.loads(out.stdout)
    assert out.stdout.strip().count("\n") == 0
    return document


def one_line_failure(out: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """Assert a failure: exit ``code``, nothing on stdout, exactly one line on stderr."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("broker credential-process: ")
    return lines[0]


def expiration_of(document: dict[str, Any]) -> dt.datetime:
    return dt.datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


# -- the SDKs run the command ---------------------------------------------------------------------


def test_boto3_and_the_aws_cli_use_a_credential_process_profile(
    setup: Setup, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = shlex.join(process_command(*setup.args()))
    home.write(
        {"app": {"credential_process": command, "endpoint_url": setup.broker.url}, "base": {}},
        {"base": setup.user},
    )
    expected = f"arn:aws:sts::{setup.account}:assumed-role/deployer/{SESSION_NAME}"
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in home.environment().items():
        monkeypatch.setenv(name, value)

    # boto3, unchanged: the profile's process gives the role session.
    session = boto3.Session(profile_name="app")
    ident = session.client("sts").get_caller_identity()
    assert ident["Arn"] == expected
    assert ident["Account"] == setup.account
    credentials = session.get_credentials()
    assert credentials is not None and credentials.method == "custom-process"
    frozen = credentials.get_frozen_credentials()
    assert frozen.access_key.startswith("ASIA") and frozen.token
    users = session.client("iam").list_users()["Users"]
    assert [u["UserName"] for u in users] == ["dev"]

    # The broker minted exactly one session, as long as asked, for the source user.
    [record] = setup.sessions()
    assert record["akid"] == frozen.access_key
    assert int(record["expires_at"]) - int(record["issued_at"]) == DURATION
    assert record["caller"] == f"arn:aws:iam::{setup.account}:user/dev"

    # The cache: one file, 0600, in a 0700 directory, holding what boto3 got.
    [cached] = home.cache_files()
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.cache_dir.parent.stat().st_mode) == 0o700
    assert json.loads(cached.read_text())["AccessKeyId"] == frozen.access_key

    # The aws CLI with the same profile: same role, and the cached session (no new mint).
    out = subprocess.run(
        [str(AWS) if AWS.exists() else "aws", "--profile", "app", "--output", "json",
         "sts", "get-caller-identity"],
        env=home.environment(), capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Arn"] == expected
    assert [s["akid"] for s in setup.sessions()] == [frozen.access_key]


def test_a_failing_process_reaches_boto3_with_its_one_line(
    setup: Setup, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong external id: the broker refuses, botocore raises with the command's reason."""
    command = shlex.join(process_command(*setup.args(external_id="not-the-id")))
    home.write({"app": {"credential_process": command}, "base": {}}, {"base": setup.user})
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in home.environment().items():
        monkeypatch.setenv(name, value)
    session = boto3.Session(profile_name="app")
    with pytest.raises(CredentialRetrievalError) as err:
        session.get_credentials()
    message = str(err.value)
    assert "broker credential-process: AccessDenied:" in message
    assert "sts:AssumeRole" in message
    assert setup.user.secret_access_key not in message
    assert home.cache_files() == []
    assert setup.sessions() == []


# -- the cache ------------------------------------------------------------------------------------


def test_second_call_within_validity_makes_no_sts_call(setup: Setup, home: Home) -> None:
    home.write({"base": {}}, {"base": setup.user})
    first = ok_document(home.run(setup.args()))
    assert first["Version"] == 1
    assert first["AccessKeyId"].startswith("ASIA")
    assert first["SecretAccessKey"] and first["SessionToken"]
    assert first["AccountId"] == setup.account
    lifetime = expiration_of(first) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=DURATION - 120) < lifetime <= dt.timedelta(seconds=DURATION)
    assert len(setup.sessions()) == 1

    # Same arguments again: the same credentials, no new session.
    assert ok_document(home.run(setup.args())) == first
    assert [s["akid"] for s in setup.sessions()] == [first["AccessKeyId"]]

    # With the broker gone, the cache still answers ...
    setup.broker.stop()
    assert ok_document(home.run(setup.args())) == first
    # ... but different arguments (another cache entry) need STS and fail on one line.
    line = one_line_failure(home.run(setup.args(session_name="other-session")))
    assert "Could not connect to the endpoint URL" in line
    assert len(home.cache_files()) == 1


def test_cache_is_reused_until_five_minutes_before_expiry(setup: Setup, home: Home) -> None:
    home.write({"base": {}}, {"base": setup.user})
    real = ok_document(home.run(setup.args()))
    [path] = home.cache_files()
    now = dt.datetime.now(dt.UTC)

    def plant(left: dt.timedelta, mode: int = 0o600) -> dict[str, Any]:
        fake = dict(real, AccessKeyId="ASIAPLANTEDPLANTED00")
        fake["Expiration"] = (now + left).strftime("%Y-%m-%dT%H:%M:%SZ")
        path.write_text(json.dumps(fake))
        path.chmod(mode)
        return fake

    # More than REFRESH_BEFORE_SECONDS left: what the cache holds is handed out as is.
    planted = plant(dt.timedelta(seconds=REFRESH_BEFORE_SECONDS + 120))
    assert ok_document(home.run(setup.args())) == planted
    assert len(setup.sessions()) == 1

    # Less than that left: a new session is minted and replaces the cached one.
    plant(dt.timedelta(seconds=REFRESH_BEFORE_SECONDS - 60))
    renewed = ok_document(home.run(setup.args()))
    assert renewed["AccessKeyId"] not in (real["AccessKeyId"], planted["AccessKeyId"])
    assert len(setup.sessions()) == 2
    assert json.loads(path.read_text()) == renewed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # A cache file that others may read is not trusted; it is replaced by a private one.
    plant(dt.timedelta(hours=1), mode=0o644)
    again = ok_document(home.run(setup.args()))
    assert again["AccessKeyId"] != planted["AccessKeyId"]
    assert len(setup.sessions()) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A corrupt cache file is a miss, not a failure.
    path.write_text("{not json")
    path.chmod(0o600)
    assert ok_document(home.run(setup.args()))["AccessKeyId"].startswith("ASIA")
    assert len(setup.sessions()) == 4


def test_cache_lives_under_home_without_xdg_cache_home(setup: Setup, home: Home) -> None:
    home.write({"base": {}}, {"base": setup.user})
    env = home.environment()
    del env["XDG_CACHE_HOME"]
    out = subprocess.run(
        process_command(*setup.args()), env=env, capture_output=True, text=True,
        timeout=TIMEOUT_SECONDS, start_new_session=True,
    )  # fmt: skip
    document = ok_document(out)
    directory = home.root / ".cache" / "broker" / "credential-process"
    [path] = directory.glob("*.json")
    assert json.loads(path.read_text()) == document
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


# -- failure paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code", "needle"),
    [
        ({"role_arn": None}, 2, "--role-arn is required"),
        ({"web_identity_token_file": "token-file"}, 2, "not both"),
        ({"duration": "an hour"}, 2, "--duration must be a number of seconds"),
        ({"token_code": "123456"}, 2, "--token-code needs --mfa-serial"),
        ({"source_profile": "nobody"}, 1, "The config profile (nobody) could not be found"),
        ({"external_id": "wrong-external"}, 1, "AccessDenied: "),
        ({"duration": "7200"}, 1, "ValidationError: "),
        ({"role_arn": "arn:aws:iam::000000000000:role/ghost"}, 1, "AccessDenied: "),
    ],
)
def test_failures_print_one_line_and_exit_non_zero(
    setup: Setup, home: Home, overrides: dict[str, str | None], code: int, needle: str
) -> None:
    home.write({"base": {}}, {"base": setup.user})
    line = one_line_failure(home.run(setup.args(**overrides)), code)
    assert needle in line
    assert setup.user.secret_access_key not in line
    assert home.cache_files() == []
    assert setup.sessions() == []


def test_web_identity_failures(setup: Setup, home: Home) -> None:
    missing = home.root / "no-such-token"
    base = {"source_profile": None, "external_id": None, "web_identity_token_file": str(missing)}
    line = one_line_failure(home.run(setup.args(**base)))
    assert f"cannot read web identity token file {missing}" in line
    empty = home.root / "empty-token"
    empty.write_text("\n")
    line = one_line_failure(home.run(setup.args(**dict(base, web_identity_token_file=str(empty)))))
    assert "is empty" in line
    line = one_line_failure(
        home.run(setup.args(**dict(base, external_id="x-y-z"))), code=2
    )  # fmt: skip
    assert "do not apply to a web identity" in line
    # A token the broker cannot verify (no such provider): its STS error, on one line.
    bogus = home.root / "bogus-token"
    bogus.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    line = one_line_failure(home.run(setup.args(**dict(base, web_identity_token_file=str(bogus)))))
    assert "InvalidIdentityToken" in line or "AccessDenied" in line
    assert "eyJ" not in line


def test_a_profile_that_runs_itself_fails_instead_of_recursing(setup: Setup, home: Home) -> None:
    command = shlex.join(process_command(*setup.args(source_profile="loop")))
    home.write({"loop": {"credential_process": command}}, {})
    line = one_line_failure(home.run(setup.args(source_profile="loop")))
    assert "nested" in line
    assert setup.sessions() == []


# -- web identity -------------------------------------------------------------------------------


@pytest.fixture
def lab_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker that accepts the test issuer's ``http://127.0.0.1:PORT`` URL."""
    broker = BrokerProcess(
        tmp_path / "data", env={"BROKER_FEDERATION_ALLOW_HTTP_ISSUERS": "true"}
    ).start()
    yield broker
    broker.stop()


def test_web_identity_token_file(lab_broker: BrokerProcess, home: Home) -> None:
    broker = lab_broker
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    with OidcIssuer() as issuer:
        provider = iam.create_open_id_connect_provider(Url=issuer.url, ClientIDList=[AUDIENCE])[
            "OpenIDConnectProviderArn"
        ]
        role = iam.create_role(
            RoleName="workload",
            AssumeRolePolicyDocument=trust_policy(
                provider, {"StringEquals": {f"{issuer.provider_id}:sub": "system:job"}}
            ),
        )["Role"]["Arn"]
        token_file = home.root / "token"
        token_file.write_text(issuer.token(sub="system:job", aud=AUDIENCE))
        home.write({}, {})
        args = ["--role-arn", role, "--web-identity-token-file", str(token_file),
                "--session-name", "job-7", "--endpoint-url", broker.url]  # fmt: skip
        document = ok_document(home.run(args))
        assert document["AccountId"] == acct
        session = Creds(
            document["AccessKeyId"], document["SecretAccessKey"], document["SessionToken"]
        )
        ident = broker.client("sts", session).get_caller_identity()
        assert ident["Arn"] == f"arn:aws:sts::{acct}:assumed-role/workload/job-7"
        # The cache answers the next call even though the token file is gone.
        token_file.unlink()
        assert ok_document(home.run(args)) == document
        # A token whose subject the trust policy does not name is refused.
        other = home.root / "other-token"
        other.write_text(issuer.token(sub="system:intruder", aud=AUDIENCE))
        line = one_line_failure(
            home.run(["--role-arn", role, "--web-identity-token-file", str(other),
                      "--endpoint-url", broker.url])
        )  # fmt: skip
        assert "AccessDenied" in line


# -- MFA ----------------------------------------------------------------------------------------


@dataclass
class MfaDevice:
    serial: str
    seed: bytes
    last_step: int

    def next_code(self, *, use: bool = True) -> str:
        """A code the broker has not seen: this step's, or the one after the last used.

        ``use=False`` leaves it unused (for a code that is offered but must not be read).
        """
        step = max(int(time.time()) // STEP_SECONDS, self.last_step + 1)
        if use:
            self.last_step = step
        return totp_code(self.seed, step * STEP_SECONDS)


def mfa_setup(setup: Setup) -> tuple[str, MfaDevice]:
    """A role demanding MFA that ``dev`` may assume, and ``dev``'s enabled device."""
    iam = setup.broker.client("iam", setup.broker.root_creds())
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="dev-phone")["VirtualMFADevice"]
    seed = base64.b32decode(device["Base32StringSeed"])
    step = int(time.time()) // STEP_SECONDS
    iam.enable_mfa_device(
        UserName="dev",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp_code(seed, (step - 1) * STEP_SECONDS),
        AuthenticationCode2=totp_code(seed, step * STEP_SECONDS),
    )
    trust = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{setup.account}:user/dev"},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    )
    role = iam.create_role(RoleName="guarded", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    return str(role), MfaDevice(str(device["SerialNumber"]), seed, step)


TAKE_TERMINAL = (
    "import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR)); os.execv(sys.argv[2], sys.argv[2:])"
)


def run_on_a_terminal(
    command: list[str], env: dict[str, str], answer: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``command`` with a pseudo-terminal as its controlling terminal (stdin: /dev/null).

    Types ``answer`` on the terminal once the command has asked; returns the finished
    process (stdout/stderr captured apart from the terminal) and what the terminal showed.
    """
    master, slave = os.openpty()
    terminal = os.ttyname(slave)
    os.close(slave)
    # In a new session, the first terminal a session leader opens becomes its controlling
    # terminal; the wrapper opens ours, then becomes the command.
    proc = subprocess.Popen(
        [sys.executable, "-c", TAKE_TERMINAL, terminal, *command], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    shown = b""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        while b"Enter MFA code" not in shown and proc.poll() is None:
            assert time.monotonic() < deadline, f"no prompt on the terminal: {shown!r}"
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    shown += os.read(master, 1024)
                except OSError:  # EIO until the command has opened the terminal
                    time.sleep(0.05)
        os.write(master, answer.encode() + b"\n")
        stdout, stderr = proc.communicate(timeout=TIMEOUT_SECONDS)
        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    return done, shown.decode("utf-8", "replace")


def test_mfa_code_from_the_command_line(setup: Setup, home: Home) -> None:
    role, device = mfa_setup(setup)
    home.write({"base": {}}, {"base": setup.user})
    base = {"role_arn": role, "external_id": None, "mfa_serial": device.serial}
    # Without a code the trust policy refuses (no MFA in the request).
    line = one_line_failure(home.run(setup.args(**dict(base, mfa_serial=None))))
    assert "AccessDenied" in line
    document = ok_document(home.run(setup.args(**dict(base, token_code=device.next_code()))))
    session = Creds(document["AccessKeyId"], document["SecretAccessKey"], document["SessionToken"])
    ident = setup.broker.client("sts", session).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{setup.account}:assumed-role/guarded/{SESSION_NAME}"
    # The cache is keyed without the code: the next run needs neither a code nor a terminal.
    assert ok_document(home.run(setup.args(**base))) == document
    assert len(setup.sessions(role)) == 1


def test_mfa_prompt_goes_to_the_terminal_never_to_stdin(setup: Setup, home: Home) -> None:
    role, device = mfa_setup(setup)
    home.write({"base": {}}, {"base": setup.user})
    args = setup.args(role_arn=role, external_id=None, mfa_serial=device.serial)
    # No terminal: a fresh code offered on standard input is not read; one line says why.
    out = home.run(args, input=device.next_code(use=False) + "\n")
    line = one_line_failure(out)
    assert "--mfa-serial needs --token-code or a terminal" in line
    assert "Enter MFA code" not in out.stderr
    assert setup.sessions(role) == []

    # With a terminal: the question and the answer stay on it; stdout has only the document.
    code = device.next_code()
    done, shown = run_on_a_terminal(process_command(*args), home.environment(), code)
    document = ok_document(done)
    assert f"Enter MFA code for {device.serial}: " in shown
    assert code not in shown  # typed without echo
    session = Creds(document["AccessKeyId"], document["SecretAccessKey"], document["SessionToken"])
    ident = setup.broker.client("sts", session).get_caller_identity()
    assert ident["Arn"].endswith(f":assumed-role/guarded/{SESSION_NAME}")
    # Cached: the next run (no terminal at all) does not ask.
    assert ok_document(home.run(args)) == document
    assert len(setup.sessions(role)) == 1
