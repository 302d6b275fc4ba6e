"""Core ARNs: build and take apart IAM/STS resource names (pure)."""

from __future__ import annotations

from dataclasses import dataclass

PARTITION = "aws"
AWS_MANAGED_ACCOUNT = "aws"


@dataclass(frozen=True, slots=True)
class Arn:
    """A parsed ARN: ``arn:partition:service:region:account:resource``."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def parse_arn(text: str) -> Arn | None:
    """Return the parsed ARN, or ``None`` when ``text`` is not shaped like one."""
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1] or not parts[2]:
        return None
    return Arn(parts[1], parts[2], parts[3], parts[4], parts[5])


def iam_arn(account_id: str, kind: str, path: str, name: str) -> str:
    """Return the ARN of an IAM entity: ``arn:aws:iam::ACCT:<kind><path><name>``."""
    return f"arn:{PARTITION}:iam::{account_id}:{kind}{path}{name}"


def root_arn(account_id: str) -> str:
    """Return the ARN of an account's root user."""
    return f"arn:{PARTITION}:iam::{account_id}:root"


def policy_arn(account_id: str, path: str, name: str) -> str:
    """Return a managed policy's ARN (``account_id`` is ``aws`` for AWS-managed ones)."""
    return iam_arn(account_id, "policy", path, name)


def split_policy_arn(text: str) -> tuple[str, str, str] | None:
    """Return ``(account, path, name)`` of a managed-policy ARN, or ``None``."""
    arn = parse_arn(text)
    if arn is None or arn.service != "iam" or arn.region or not arn.resource.startswith("policy/"):
        return None
    rest = arn.resource[len("policy") :]
    cut = rest.rfind("/")
    path, name = rest[: cut + 1], rest[cut + 1 :]
    if not name:
        return None
    return arn.account, path, name
