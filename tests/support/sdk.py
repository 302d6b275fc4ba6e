"""Test support: what the SDK-facing end-to-end tests share.

Trust policies for service principals, a boto3 "who am I" script run in a clean subprocess,
and writing AWS config/credentials files for profile-based tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.broker_proc import Creds

CALLER_SCRIPT = """
import json, boto3
session = boto3.Session()
creds = session.get_credentials()
ident = session.client("sts").get_caller_identity()
print(json.dumps({"method": creds.method, "arn": ident["Arn"]}))
"""
"""Prints the credential provider boto3 used and the caller's ARN, as JSON."""


def service_trust(service: str) -> str:
    """A role trust policy letting the AWS service principal ``service`` assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def run_boto3_caller(env: Mapping[str, str]) -> dict[str, Any]:
    """Run :data:`CALLER_SCRIPT` with exactly ``env``; return its JSON (the run must succeed)."""
    out = subprocess.run(
        [sys.executable, "-c", CALLER_SCRIPT],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert isinstance(doc, dict)
    return doc


def write_aws_files(
    config: Path,
    credentials: Path,
    profiles: Mapping[str, Mapping[str, str]],
    keys: Mapping[str, Creds],
    common: Mapping[str, str],
) -> None:
    """Write ``[profile NAME]`` sections (each with ``common`` first) and static keys (0600)."""
    lines: list[str] = []
    for name, values in profiles.items():
        lines.append(f"[profile {name}]")
        lines += [f"{k} = {v}" for k, v in {**common, **values}.items()]
        lines.append("")
    config.write_text("\n".join(lines), encoding="utf-8")
    creds: list[str] = []
    for name, key in keys.items():
        creds += [
            f"[{name}]",
            f"aws_access_key_id = {key.access_key_id}",
            f"aws_secret_access_key = {key.secret_access_key}",
            "",
        ]
    credentials.write_text("\n".join(creds), encoding="utf-8")
    credentials.chmod(0o600)
