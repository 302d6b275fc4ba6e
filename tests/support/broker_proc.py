"""Test support: run a real ``broker serve`` process and talk to it with real clients.

``BrokerProcess`` starts ``python -m broker serve`` on a free loopback port with its own data
directory, waits for ``/healthz``, and hands out boto3 clients, ``aws`` CLI runs and raw
SigV4-signed HTTP requests (signed by botocore's own signer) aimed at it.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import botocore.config
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Creds:
    """An access key pair (and optional session token)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"Creds({self.access_key_id!r}, '***')"


@dataclass
class HttpReply:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def error_code(self) -> str | None:
        """The ``<Code>`` of an error document, if any."""
        text = self.text
        if "<Code>" not in text:
            return None
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0]

    def error_message(self) -> str | None:
        """The ``<Message>`` of an error document, if any."""
        text = self.text
        if "<Message>" not in text:
            return None
        return text.split("<Message>", 1)[1].split("</Message>", 1)[0]


class BrokerProcess:
    """A ``broker serve`` subprocess on a free port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        store: str = "sqlite",
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.store = store
        self.redis_url = redis_url
        self.port = port or free_port()
        self.workers = workers
        self.extra_env = dict(env or {})
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"broker-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--store",
            self.store,
            "--workers",
            str(self.workers),
        ]
        if self.redis_url:
            cmd += ["--redis-url", self.redis_url]
        return cmd + list(self.extra_args)

    def store_flags(self) -> list[str]:
        flags = ["--data-dir", str(self.data_dir), "--store", self.store]
        if self.redis_url:
            flags += ["--redis-url", self.redis_url]
        return flags

    def run_cli(self, args: list[str]) -> str:
        """Run ``python -m broker <args>`` with this node's store flags; return stdout."""
        out = subprocess.run(
            [sys.executable, "-m", "broker", *args, *self.store_flags()],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(REPO),
        )
        if out.returncode != 0:
            raise RuntimeError(f"broker {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "AWS_"))}
        env.update(self.extra_env)
        env["PYTHONPATH"] = str(REPO)
        return env

    def launch(self) -> BrokerProcess:
        """Start the process without waiting for it."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.environment(), stdout=log, stderr=log, cwd=str(REPO)
            )
        return self

    def wait_healthy(self, timeout: float = 30.0) -> BrokerProcess:
        """Wait until the process answers ``/healthz`` (raise with its log if it dies)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/healthz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker did not become healthy in {timeout}s:\n{self.log()}")

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        """Start the process and wait until it answers ``/healthz``."""
        return self.launch().wait_healthy(timeout)

    def log(self) -> str:
        """The process's combined output so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process and wait for it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    # -- credentials and clients -------------------------------------------------------------

    def root_creds(self) -> Creds:
        """The bootstrap root key (from the env given, else the credentials file)."""
        if "BROKER_ROOT_ACCESS_KEY_ID" in self.extra_env:
            return Creds(
                self.extra_env["BROKER_ROOT_ACCESS_KEY_ID"],
                self.extra_env["BROKER_ROOT_SECRET_ACCESS_KEY"],
            )
        data = json.loads((self.data_dir / "root-credentials.json").read_text())
        return Creds(data["AccessKeyId"], data["SecretAccessKey"])

    def account_id(self) -> str:
        data = json.loads((self.data_dir / "root-credentials.json").read_text())
        return str(data["AccountId"])

    def client(self, service: str, creds: Creds, **config: Any) -> Any:
        """A boto3 client pointed at this broker (no retries, so errors surface once)."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            config=botocore.config.Config(
                retries={"max_attempts": 1, "mode": "standard"}, **config
            ),
        )

    def aws(
        self, args: list[str], creds: Creds | None, *, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``aws`` CLI against this broker."""
        aws = Path(sys.executable).parent / "aws"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_MAX_ATTEMPTS": "1",
                "AWS_RETRY_MODE": "standard",
                "AWS_PAGER": "",
            }
        )
        if creds is not None:
            env["AWS_ACCESS_KEY_ID"] = creds.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = creds.secret_access_key
            if creds.session_token:
                env["AWS_SESSION_TOKEN"] = creds.session_token
        cmd = [
            str(aws) if aws.exists() else "aws",
            "--endpoint-url",
            self.url,
            "--output",
            "json",
            *args,
        ]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check, timeout=60)

    # -- raw HTTP --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """Send one raw HTTP request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> HttpReply:
        return self.request("GET", path)

    def signed(
        self,
        params: Mapping[str, str],
        creds: Creds | None,
        *,
        service: str = "iam",
        when: dt.datetime | None = None,
        tamper: Any = None,
    ) -> HttpReply:
        """POST a form signed by botocore's SigV4 signer (at ``when``, default now).

        ``tamper(method, headers, body)`` may change the signed request before it is sent.
        """
        body = urllib.parse.urlencode(dict(params)).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        if creds is not None:
            req = AWSRequest(method="POST", url=self.url + "/", data=body, headers=headers)
            signer = botocore.auth.SigV4Auth(
                Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
                service,
                REGION,
            )
            if when is None:
                signer.add_auth(req)
            else:
                with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
                    signer.add_auth(req)
            headers = {k: v for k, v in req.headers.items()}
        if tamper is not None:
            headers, body = tamper(headers, body)
        return self.request("POST", "/", body=body, headers=headers)
