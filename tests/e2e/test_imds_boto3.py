"""End to end: the instance metadata listener of a real ``broker serve``, used by boto3 and aws.

The broker starts with a test-written ``config.toml`` (``--config``) that enables the IMDS
listener and maps three loopback source addresses to three instances. Roles and instance
profiles are made through the broker's own IAM API after start-up: instance profiles are
resolved per request. SDKs run as subprocesses with a clean environment in which the metadata
endpoint is their only source of credentials.
"""

from __future__ import annotations

import asyncio
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

import aiohttp
import pytest

from tests.support.broker_proc import REGION, BrokerProcess, Creds, free_port
from tests.support.sdk import run_boto3_caller, service_trust

ACCOUNT = "111122223333"
WEB = ("127.0.0.1", "i-0123456789abcdef0", "web", "web-role")
CROWD = ("127.0.0.2", "i-00000000000000c02", "crowd", "crowd-role")
SWAP = ("127.0.0.3", "i-00000000000000c03", "swap", "swap-a")
LATE = ("127.0.0.4", "i-00000000000000c04", "late", "late-role")
SWAP_B = "swap-b"
TTL = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN = "X-aws-ec2-metadata-token"
CREDS = "/latest/meta-data/iam/security-credentials/"
TRUST_EC2 = service_trust("ec2.amazonaws.com")


def instance_table(*instances: tuple[str, str, str, str]) -> str:
    return "".join(
        "[[imds.instances]]\n"
        f'source = "{source}/32"\n'
        f'instance_id = "{instance_id}"\n'
        f'instance_profile = "arn:aws:iam::{ACCOUNT}:instance-profile/{profile}"\n'
        for source, instance_id, profile, _ in instances
    )


def write_config(path: Path, port: int, *instances: tuple[str, str, str, str], **imds: int) -> None:
    extra = "".join(f"{key} = {value}\n" for key, value in imds.items())
    path.write_text(
        f'[bootstrap]\naccount_id = "{ACCOUNT}"\n\n'
        f'[imds]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\nv1_enabled = false\n'
        f"{extra}\n" + instance_table(*instances)
    )


@dataclass
class Imds:
    """A broker with its metadata listener."""

    broker: BrokerProcess
    port: int
    config: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, source: str = ""
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(source, 0) if source else None
        )
        try:
            conn.request(method, path, headers=dict(headers or {}))
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()

    def token(self, ttl: int = 21600, source: str = "") -> str:
        status, _, body = self.request("PUT", "/latest/api/token", {TTL: str(ttl)}, source)
        assert status == 200, body
        return body

    def credentials(self, role: str, token: str, source: str = "") -> dict[str, Any]:
        status, _, body = self.request("GET", CREDS + role, {TOKEN: token}, source)
        assert status == 200, body
        doc = json.loads(body)
        assert isinstance(doc, dict)
        return doc

    def iam(self) -> Any:
        return self.broker.client("iam", self.broker.root_creds())

    def sessions(self, role: str) -> list[dict[str, Any]]:
        out = self.broker.run_cli(
            [
                "sessions",
                "list",
                "--config",
                str(self.config),
                "--account",
                ACCOUNT,
                "--role",
                f"arn:aws:iam::{ACCOUNT}:role/{role}",
            ]
        )
        found = json.loads(out)
        assert isinstance(found, list)
        return found


def start_imds(tmp: Path, *instances: tuple[str, str, str, str], **imds: int) -> Imds:
    port = free_port()
    config = tmp / "config.toml"
    write_config(config, port, *instances, **imds)
    broker = BrokerProcess(tmp / "data", extra_args=("--config", str(config))).start()
    return Imds(broker, port, config)


def make_role(iam: Any, profile: str, role: str) -> None:
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST_EC2)
    iam.create_instance_profile(InstanceProfileName=profile)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)


@pytest.fixture(scope="module")
def imds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imds]:
    """One broker for the module: instances web, crowd and swap, each with its role."""
    tmp = tmp_path_factory.mktemp("imds")
    server = start_imds(tmp, WEB, CROWD, SWAP)
    iam = server.iam()
    for _, _, profile, role in (WEB, CROWD, SWAP):
        make_role(iam, profile, role)
    iam.create_role(RoleName=SWAP_B, AssumeRolePolicyDocument=TRUST_EC2)
    yield server
    server.broker.stop()


def sdk_env(tmp: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment: no credentials anywhere but what ``extra`` points at."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_METADATA_SERVICE_TIMEOUT": "5",
        "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "2",
    }
    env.update(extra)
    return env


def run_caller(tmp: Path, extra: Mapping[str, str]) -> dict[str, str]:
    return run_boto3_caller(sdk_env(tmp, extra))


# -- unchanged SDKs ---------------------------------------------------------------------------


@pytest.mark.parametrize("v1_disabled", [True, False])
def test_boto3_gets_the_instance_role(imds: Imds, tmp_path: Path, v1_disabled: bool) -> None:
    extra = {
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
        "AWS_ENDPOINT_URL_STS": imds.broker.url,
    }
    if v1_disabled:
        extra["AWS_EC2_METADATA_V1_DISABLED"] = "true"
    doc = run_caller(tmp_path, extra)
    assert doc["method"] == "iam-role"
    assert doc["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{WEB[3]}/{WEB[1]}"


def test_aws_cli_gets_the_instance_role(imds: Imds, tmp_path: Path) -> None:
    aws = Path(sys.executable).parent / "aws"
    env = sdk_env(
        tmp_path,
        {
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
            "AWS_EC2_METADATA_V1_DISABLED": "true",
            "AWS_PAGER": "",
        },
    )
    out = subprocess.run(
        [str(aws), "--endpoint-url", imds.broker.url, "--output", "json"]
        + ["sts", "get-caller-identity"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    arn = json.loads(out.stdout)["Arn"]
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{WEB[3]}/{WEB[1]}"


# -- IMDS rules -------------------------------------------------------------------------------


def test_get_without_token_is_401(imds: Imds) -> None:
    status, _, body = imds.request("GET", CREDS)
    assert (status, body) == (401, "")


def test_token_put_with_forwarded_for_is_refused(imds: Imds) -> None:
    status, _, body = imds.request(
        "PUT", "/latest/api/token", {TTL: "21600", "X-Forwarded-For": "203.0.113.9"}
    )
    assert status == 403
    assert body == ""


@pytest.mark.parametrize("ttl", ["0", "21601"])
def test_token_ttl_out_of_range_is_400(imds: Imds, ttl: str) -> None:
    status, _, _ = imds.request("PUT", "/latest/api/token", {TTL: ttl})
    assert status == 400


def test_expired_token_is_401(imds: Imds) -> None:
    token = imds.token(ttl=1)
    assert imds.request("GET", CREDS, {TOKEN: token})[0] == 200
    time.sleep(1.2)
    status, _, body = imds.request("GET", CREDS, {TOKEN: token})
    assert (status, body) == (401, "")


def test_unknown_role_path_is_404(imds: Imds) -> None:
    token = imds.token()
    assert imds.request("GET", CREDS + "no-such-role", {TOKEN: token})[0] == 404
    status, headers, body = imds.request("GET", CREDS, {TOKEN: token})
    assert (status, body) == (200, WEB[3])
    assert headers["cache-control"] == "no-store"


# -- caching, single flight, role swaps, reload ------------------------------------------------


async def _fetch_many(port: int, source: str, token: str, role: str, count: int) -> list[str]:
    connector = aiohttp.TCPConnector(limit=count, local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> str:
            url = f"http://127.0.0.1:{port}{CREDS}{role}"
            async with session.get(url, headers={TOKEN: token}) as resp:
                assert resp.status == 200
                return str(json.loads(await resp.text())["AccessKeyId"])

        return await asyncio.gather(*(one() for _ in range(count)))


def test_200_concurrent_fetches_mint_one_session(imds: Imds) -> None:
    source, instance_id, _, role = CROWD
    token = imds.token(source=source)
    keys = asyncio.run(_fetch_many(imds.port, source, token, role, 200))
    assert len(set(keys)) == 1
    sessions = imds.sessions(role)
    assert [s["arn"] for s in sessions] == [
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{instance_id}"
    ]
    assert sessions[0]["akid"] == keys[0]


def test_swapping_the_role_changes_the_next_fetch(imds: Imds) -> None:
    source, _, profile, role = SWAP
    token = imds.token(source=source)
    first = imds.credentials(role, token, source)
    iam = imds.iam()
    iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=SWAP_B)
    status, _, body = imds.request("GET", CREDS, {TOKEN: token}, source)
    assert (status, body) == (200, SWAP_B)
    assert imds.request("GET", CREDS + role, {TOKEN: token}, source)[0] == 404
    second = imds.credentials(SWAP_B, token, source)
    assert second["AccessKeyId"] != first["AccessKeyId"]
    creds = Creds(second["AccessKeyId"], second["SecretAccessKey"], second["Token"])
    sts = imds.broker.client("sts", creds)
    assert sts.get_caller_identity()["Arn"].endswith(f":assumed-role/{SWAP_B}/{SWAP[1]}")


def test_sighup_reloads_the_instance_table(imds: Imds) -> None:
    source, instance_id, profile, role = LATE
    make_role(imds.iam(), profile, role)
    assert imds.request("PUT", "/latest/api/token", {TTL: "60"}, source)[0] == 403
    write_config(imds.config, imds.port, WEB, CROWD, SWAP, LATE)
    proc = imds.broker.proc
    assert proc is not None
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    status = 0
    while time.monotonic() < deadline:
        status = imds.request("PUT", "/latest/api/token", {TTL: "60"}, source)[0]
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200
    token = imds.token(source=source)
    assert imds.request("GET", "/latest/meta-data/instance-id", {TOKEN: token}, source)[2] == (
        instance_id
    )
    assert imds.credentials(role, token, source)["Code"] == "Success"
    assert proc.poll() is None


# -- renewal ----------------------------------------------------------------------------------


def test_polling_for_30_seconds_sees_renewed_credentials(tmp_path: Path) -> None:
    server = start_imds(tmp_path, WEB, session_seconds=900, renew_before_seconds=890)
    try:
        make_role(server.iam(), WEB[2], WEB[3])
        token = server.token()
        seen: dict[str, str] = {}
        order: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            doc = server.credentials(WEB[3], token)  # asserts a 200 every time
            assert doc["Code"] == "Success"
            if doc["AccessKeyId"] not in seen:
                seen[doc["AccessKeyId"]] = doc["Expiration"]
                order.append(doc["AccessKeyId"])
            time.sleep(0.5)
        assert len(order) >= 2
        expirations = [seen[k] for k in order]
        assert expirations == sorted(expirations)
        assert len(set(expirations)) == len(expirations)
    finally:
        server.broker.stop()
