"""The AWS SDK for JavaScript v3, unchanged, gets role credentials from every delivery channel.

``@aws-sdk/client-sts`` and ``@aws-sdk/credential-providers`` are installed from the npm registry
into a temporary directory once per test session, next to ``tests/support/js/*.mjs``. For each
provider (``fromProcess``, ``fromTokenFile``, ``fromInstanceMetadata``,
``fromContainerMetadata``) a Node process finds its credentials through the SDK's own discovery
(a ``~/.aws/config`` in a temporary ``HOME``, the web identity variables, the metadata endpoint
variables) and calls ``sts:GetCallerIdentity`` on a real broker, which must name the expected
assumed role. The only skip is a machine without ``node`` or ``npm``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker_proc import REGION, REPO, BrokerProcess, Creds, free_port
from tests.support.oidc_issuer import OidcIssuer, trust_policy

JS_DIR = REPO / "tests" / "support" / "js"
SCRIPT = "caller_identity.mjs"
PACKAGES = ("@aws-sdk/client-sts", "@aws-sdk/credential-providers")
NPM_TIMEOUT_SECONDS = 600
NODE_TIMEOUT_SECONDS = 90
AUDIENCE = "sts.amazonaws.com"

# A fixed account, so the listener config can name its instance profile and role up front.
ACCOUNT = "111122223333"
INSTANCE_ID = "i-0123456789abcdef0"
CONTAINER_TOKEN = "js-sdk-container-token-7f3a9c2e51"
CONTAINER_NAME = "js-task"


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust(service: str) -> str:
    return doc({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


@pytest.fixture(scope="session")
def js_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the SDK packages installed and the test scripts beside them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "JavaScript SDK tests NOT RUN: `node` and `npm` are not on PATH "
            "(install Node.js >= 18 and npm to run them)"
        )
    root = tmp_path_factory.mktemp("js-sdk")
    (root / "package.json").write_text(
        json.dumps({"name": "broker-js-sdk-tests", "private": True, "type": "module"})
    )
    out = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
        cwd=root, capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS,
    )  # fmt: skip
    assert out.returncode == 0, f"npm install {' '.join(PACKAGES)} failed:\n{out.stderr}"
    # Node resolves a module's imports from the module's own folder: the scripts sit beside
    # node_modules.
    for script in JS_DIR.glob("*.mjs"):
        shutil.copy(script, root / script.name)
    return root


def node_environment(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """No inherited ``AWS_*``/``BROKER_*``/``XDG_CACHE_HOME``; a private ``HOME``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "BROKER_")) and k != "XDG_CACHE_HOME"
    }
    env.update(
        {
            "HOME": str(home),
            "PYTHONPATH": str(REPO),
            "BROKER_ENDPOINT": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    env.update(extra)
    return env


def run_js(js_sdk: Path, provider: str, env: dict[str, str]) -> dict[str, Any]:
    """Run the script with ``provider``; return the JSON it printed."""
    out = subprocess.run(
        ["node", str(js_sdk / SCRIPT), provider],
        cwd=js_sdk, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_SECONDS,
    )  # fmt: skip
    assert out.returncode == 0, f"{provider} failed:\n{out.stderr}"
    result: dict[str, Any] = json.loads(out.stdout)
    assert result["provider"] == provider
    return result


def assert_role_session(result: dict[str, Any], arn: str) -> None:
    assert result["arn"] == arn
    assert result["account"] == arn.split(":")[4]
    assert result["accessKeyId"].startswith("ASIA")
    assert result["hasSessionToken"] is True
    assert result["expiration"] is not None


# -- credential_process ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSetup:
    account: str
    user: Creds
    role_arn: str


def process_setup(broker: BrokerProcess) -> ProcessSetup:
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    iam.create_user(UserName="js-dev")
    key = iam.create_access_key(UserName="js-dev")["AccessKey"]
    trust = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{acct}:user/js-dev"},
            "Action": "sts:AssumeRole",
        }
    )
    role = iam.create_role(RoleName="js-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    return ProcessSetup(acct, Creds(key["AccessKeyId"], key["SecretAccessKey"]), str(role))


def test_from_process(js_sdk: Path, sqlite_broker: BrokerProcess, tmp_path: Path) -> None:
    broker = sqlite_broker
    setup = process_setup(broker)
    home = tmp_path / "home"
    aws_dir = home / ".aws"
    aws_dir.mkdir(parents=True)
    command = shlex.join(
        [sys.executable, "-m", "broker", "credential-process", "--role-arn", setup.role_arn,
         "--source-profile", "base", "--session-name", "js-process",
         "--endpoint-url", broker.url]
    )  # fmt: skip
    (aws_dir / "config").write_text(
        f"[profile app]\nregion = {REGION}\ncredential_process = {command}\n"
    )
    (aws_dir / "credentials").write_text(
        f"[base]\naws_access_key_id = {setup.user.access_key_id}\n"
        f"aws_secret_access_key = {setup.user.secret_access_key}\n"
    )
    env = node_environment(home, broker.url, JS_PROFILE="app")

    first = run_js(js_sdk, "fromProcess", env)
    assert_role_session(first, f"arn:aws:sts::{setup.account}:assumed-role/js-role/js-process")
    assert first["accountId"] == setup.account

    # The command cached under ~/.cache (no XDG_CACHE_HOME): the next run reuses it.
    cache = home / ".cache" / "broker" / "credential-process"
    [path] = cache.glob("*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["AccessKeyId"] == first["accessKeyId"]
    second = run_js(js_sdk, "fromProcess", env)
    assert second["accessKeyId"] == first["accessKeyId"]
    listed = json.loads(broker.run_cli(["sessions", "list", "--role", setup.role_arn]))
    assert [s["akid"] for s in listed] == [first["accessKeyId"]]


# -- web identity ------------------------------------------------------------------------------


@pytest.fixture
def lab_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker that accepts the test issuer's ``http://127.0.0.1:PORT`` URL."""
    broker = BrokerProcess(
        tmp_path / "data", env={"BROKER_FEDERATION_ALLOW_HTTP_ISSUERS": "true"}
    ).start()
    yield broker
    broker.stop()


def test_from_token_file(js_sdk: Path, lab_broker: BrokerProcess, tmp_path: Path) -> None:
    broker = lab_broker
    acct = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    with OidcIssuer() as issuer:
        provider = iam.create_open_id_connect_provider(Url=issuer.url, ClientIDList=[AUDIENCE])[
            "OpenIDConnectProviderArn"
        ]
        role = iam.create_role(
            RoleName="js-web",
            AssumeRolePolicyDocument=trust_policy(
                provider, {"StringEquals": {f"{issuer.provider_id}:sub": "system:js"}}
            ),
        )["Role"]["Arn"]
        token = tmp_path / "token"
        token.write_text(issuer.token(sub="system:js", aud=AUDIENCE))
        home = tmp_path / "home"
        home.mkdir()
        env = node_environment(
            home,
            broker.url,
            AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
            AWS_ROLE_ARN=role,
            AWS_ROLE_SESSION_NAME="js-web-session",
        )
        result = run_js(js_sdk, "fromTokenFile", env)
    assert_role_session(result, f"arn:aws:sts::{acct}:assumed-role/js-web/js-web-session")


# -- instance metadata and container endpoint --------------------------------------------------


@dataclass
class Listeners:
    """A broker with the IMDS and container listeners on, and their roles in place."""

    broker: BrokerProcess
    imds_port: int
    container_port: int


def listener_config(path: Path, imds_port: int, container_port: int) -> Path:
    path.write_text(
        f"""
[bootstrap]
account_id = "{ACCOUNT}"

[imds]
enabled = true
host = "127.0.0.1"
port = {imds_port}
v1_enabled = false

[[imds.instances]]
source = "127.0.0.1/32"
instance_id = "{INSTANCE_ID}"
instance_profile = "arn:aws:iam::{ACCOUNT}:instance-profile/web"

[container]
enabled = true
host = "127.0.0.1"
port = {container_port}

[[container.mappings]]
token = "{CONTAINER_TOKEN}"
role_arn = "arn:aws:iam::{ACCOUNT}:role/app"
name = "{CONTAINER_NAME}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[Listeners]:
    imds_port, container_port = free_port(), free_port()
    while container_port == imds_port:
        container_port = free_port()
    config = listener_config(tmp_path / "broker.toml", imds_port, container_port)
    broker = BrokerProcess(tmp_path / "data", extra_args=("--config", str(config))).start()
    try:
        assert broker.account_id() == ACCOUNT
        iam = broker.client("iam", broker.root_creds())
        iam.create_role(
            RoleName="web-role", AssumeRolePolicyDocument=service_trust("ec2.amazonaws.com")
        )
        iam.create_instance_profile(InstanceProfileName="web")
        iam.add_role_to_instance_profile(InstanceProfileName="web", RoleName="web-role")
        iam.create_role(
            RoleName="app", AssumeRolePolicyDocument=service_trust("ecs-tasks.amazonaws.com")
        )
        yield Listeners(broker, imds_port, container_port)
    finally:
        broker.stop()


def test_from_instance_metadata(js_sdk: Path, listeners: Listeners, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = node_environment(
        home,
        listeners.broker.url,
        AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{listeners.imds_port}/",
        AWS_EC2_METADATA_V1_DISABLED="true",
    )
    del env["AWS_EC2_METADATA_DISABLED"]
    result = run_js(js_sdk, "fromInstanceMetadata", env)
    assert_role_session(result, f"arn:aws:sts::{ACCOUNT}:assumed-role/web-role/{INSTANCE_ID}")


def test_from_container_metadata(js_sdk: Path, listeners: Listeners, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = node_environment(
        home,
        listeners.broker.url,
        AWS_CONTAINER_CREDENTIALS_FULL_URI=(
            f"http://127.0.0.1:{listeners.container_port}/v1/credentials"
        ),
        AWS_CONTAINER_AUTHORIZATION_TOKEN=CONTAINER_TOKEN,
    )
    result = run_js(js_sdk, "fromContainerMetadata", env)
    assert_role_session(result, f"arn:aws:sts::{ACCOUNT}:assumed-role/app/{CONTAINER_NAME}")
