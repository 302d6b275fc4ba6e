"""End to end: the container credentials listener of a real ``broker serve``.

The broker starts with a test-written ``config.toml`` (``--config``) that enables the
container listener with two mappings: one with an inline token, one whose token is in a file.
boto3 and the ``aws`` CLI run as subprocesses whose only credential source is
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` plus ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` (or
``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker_proc import REGION, BrokerProcess, free_port
from tests.support.sdk import run_boto3_caller, service_trust

ACCOUNT = "111122223333"
ROLE = "app-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
INLINE_TOKEN = "inline-token-0123456789abcdef"
FILE_TOKEN = "file-token-0123456789abcdef"
PATH = "/v1/credentials"
TRUST_ECS = service_trust("ecs-tasks.amazonaws.com")


def write_config(path: Path, port: int, token_file: Path, extra_mapping: str = "") -> None:
    path.write_text(
        f'[bootstrap]\naccount_id = "{ACCOUNT}"\n\n'
        f'[container]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n\n'
        "[[container.mappings]]\n"
        f'name = "app"\ntoken = "{INLINE_TOKEN}"\nrole_arn = "{ROLE_ARN}"\n\n'
        "[[container.mappings]]\n"
        f'name = "from-file"\ntoken_file = "{token_file}"\nrole_arn = "{ROLE_ARN}"\n\n'
        + extra_mapping
    )


@dataclass
class Container:
    """A broker with its container listener."""

    broker: BrokerProcess
    port: int
    config: Path
    token_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def get(self, token: str | None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {} if token is None else {"Authorization": token}
            conn.request("GET", PATH, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    tmp = tmp_path_factory.mktemp("container")
    port = free_port()
    token_file = tmp / "ecs-token"
    token_file.write_text(FILE_TOKEN)
    config = tmp / "config.toml"
    write_config(config, port, token_file)
    broker = BrokerProcess(tmp / "data", extra_args=("--config", str(config))).start()
    iam = broker.client("iam", broker.root_creds())
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=TRUST_ECS)
    yield Container(broker, port, config, token_file)
    broker.stop()


def sdk_env(tmp: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment: no credentials anywhere but what ``extra`` points at."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra)
    return env


def run_caller(tmp: Path, extra: Mapping[str, str]) -> dict[str, Any]:
    return run_boto3_caller(sdk_env(tmp, extra))


def test_boto3_with_an_authorization_token(container: Container, tmp_path: Path) -> None:
    doc = run_caller(
        tmp_path,
        {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": container.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": INLINE_TOKEN,
            "AWS_ENDPOINT_URL_STS": container.broker.url,
        },
    )
    assert doc["method"] == "container-role"
    assert doc["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/app"


def test_boto3_with_an_authorization_token_file(container: Container, tmp_path: Path) -> None:
    client_file = tmp_path / "token"
    client_file.write_text(FILE_TOKEN)
    doc = run_caller(
        tmp_path,
        {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": container.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(client_file),
            "AWS_ENDPOINT_URL_STS": container.broker.url,
        },
    )
    assert doc["method"] == "container-role"
    assert doc["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/from-file"


def test_aws_cli_with_an_authorization_token(container: Container, tmp_path: Path) -> None:
    aws = Path(sys.executable).parent / "aws"
    env = sdk_env(
        tmp_path,
        {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": container.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": INLINE_TOKEN,
            "AWS_PAGER": "",
        },
    )
    out = subprocess.run(
        [str(aws), "--endpoint-url", container.broker.url, "--output", "json"]
        + ["sts", "get-caller-identity"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/app"


def test_document_shape(container: Container) -> None:
    status, body = container.get(INLINE_TOKEN)
    assert status == 200
    doc = json.loads(body)
    assert doc["RoleArn"] == ROLE_ARN
    assert doc["AccessKeyId"].startswith("ASIA")
    assert time.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ")


def test_missing_token_is_401_and_wrong_token_403(container: Container) -> None:
    status, body = container.get(None)
    assert status == 401
    assert "AccessKeyId" not in body
    for wrong in ("not-the-token-0123456789", INLINE_TOKEN + "x", "Bearer " + INLINE_TOKEN):
        status, body = container.get(wrong)
        assert status == 403
        assert set(json.loads(body)) == {"code", "message"}


def test_rotated_token_file_is_picked_up_without_restart(container: Container) -> None:
    rotated = "rotated-token-0123456789abcdef"
    container.token_file.write_text(rotated)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and container.get(rotated)[0] != 200:
        time.sleep(0.25)
    assert container.get(rotated)[0] == 200
    assert container.get(FILE_TOKEN)[0] == 403


def test_sighup_reloads_the_mappings(container: Container) -> None:
    new_token = "sighup-token-0123456789abcdef"
    assert container.get(new_token)[0] == 403
    extra = (
        f'[[container.mappings]]\nname = "added"\ntoken = "{new_token}"\nrole_arn = "{ROLE_ARN}"\n'
    )
    write_config(container.config, container.port, container.token_file, extra)
    proc = container.broker.proc
    assert proc is not None
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and container.get(new_token)[0] != 200:
        time.sleep(0.1)
    status, body = container.get(new_token)
    assert status == 200
    assert json.loads(body)["RoleArn"] == ROLE_ARN
    assert proc.poll() is None
