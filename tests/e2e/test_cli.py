"""The ``broker`` command line: bootstrap options, accounts, keys, configuration errors."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.broker_proc import REPO, BrokerProcess, Creds
from tests.support.redis_server import RedisServer


def _broker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    base["PYTHONPATH"] = str(REPO)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )


def test_bootstrap_writes_private_root_credentials(sqlite_broker: BrokerProcess) -> None:
    path = sqlite_broker.data_dir / "root-credentials.json"
    data = json.loads(path.read_text())
    assert set(data) == {"AccountId", "AccessKeyId", "SecretAccessKey"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sqlite_broker.data_dir.stat().st_mode) == 0o700
    log = sqlite_broker.log()
    assert str(path) in log
    assert data["SecretAccessKey"] not in log


def test_bootstrap_from_environment_and_then_ignored(tmp_path: Path) -> None:
    env = {
        "BROKER_ROOT_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "BROKER_ROOT_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "BROKER_BOOTSTRAP_ACCOUNT_ID": "123456789012",
    }
    node = BrokerProcess(tmp_path / "data", env=env).start()
    try:
        assert not (tmp_path / "data" / "root-credentials.json").exists()
        ident = node.client("sts", node.root_creds()).get_caller_identity()
        assert ident["Arn"] == "arn:aws:iam::123456789012:root"
    finally:
        node.stop()
    other = dict(env, BROKER_ROOT_SECRET_ACCESS_KEY="another-secret-another-secret-another-sec")
    again = BrokerProcess(tmp_path / "data", env=other).start()
    try:
        # The store already holds an account: the variables are ignored, the old key stays.
        creds = Creds(env["BROKER_ROOT_ACCESS_KEY_ID"], env["BROKER_ROOT_SECRET_ACCESS_KEY"])
        assert again.client("sts", creds).get_caller_identity()["Account"] == "123456789012"
    finally:
        again.stop()


def test_account_create_prints_a_working_key_once(sqlite_broker: BrokerProcess) -> None:
    out = json.loads(sqlite_broker.run_cli(["account", "create"]))
    assert set(out) == {"AccountId", "AccessKeyId", "SecretAccessKey"}
    assert out["AccountId"] != sqlite_broker.account_id()
    creds = Creds(out["AccessKeyId"], out["SecretAccessKey"])
    ident = sqlite_broker.client("sts", creds).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:iam::{out['AccountId']}:root"
    # Each account's root sees only its own users.
    sqlite_broker.client("iam", creds).create_user(UserName="only-here")
    mine = sqlite_broker.client("iam", sqlite_broker.root_creds()).list_users()["Users"]
    assert mine == []
    listed = json.loads(sqlite_broker.run_cli(["account", "list"]))
    assert sorted(listed) == sorted([sqlite_broker.account_id(), out["AccountId"]])


def test_generate_master_key() -> None:
    out = _broker("keys", "generate-master")
    assert out.returncode == 0
    assert len(base64.b64decode(out.stdout.strip())) == 32


def test_config_errors_stop_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = 8080\nbogus = 1\n[store]\nbackend = "nosql"\n')
    out = _broker("serve", "--config", str(bad))
    assert out.returncode == 2
    assert "unknown key 'bogus' in [server]" in out.stderr
    assert "backend" in out.stderr
    ok = _broker("check-config", "--config", str(REPO / "config.toml"))
    assert ok.returncode == 0, ok.stderr
    warned = _broker("check-config", env={"BROKER_NOPE_THING": "1"})
    assert warned.returncode == 0
    assert "BROKER_NOPE_THING" in warned.stderr


def test_redis_store_requires_a_master_key(tmp_path: Path, private_redis: RedisServer) -> None:
    out = _broker(
        "serve", "--store", "redis", "--redis-url", private_redis.url,
        "--data-dir", str(tmp_path / "d"),
    )  # fmt: skip
    assert out.returncode == 1
    assert "BROKER_MASTER_KEY" in out.stderr


def test_readyz_reports_a_lost_store(tmp_path: Path, private_redis: RedisServer) -> None:
    from tests.e2e.conftest import master_key

    node = BrokerProcess(
        tmp_path / "d", store="redis", redis_url=private_redis.url,
        env={"BROKER_MASTER_KEY": master_key()},
    ).start()  # fmt: skip
    try:
        assert node.get("/readyz").status == 200
        private_redis.kill()
        reply = node.get("/readyz")
        assert reply.status == 503
        assert json.loads(reply.body)["status"] == "unavailable"
        assert node.get("/healthz").status == 200
        iam = node.signed({"Action": "CreateUser", "Version": "2010-05-08", "UserName": "x"},
                          node.root_creds())  # fmt: skip
        assert iam.status == 503
        assert iam.error_code() == "ServiceUnavailable"
    finally:
        node.stop()
