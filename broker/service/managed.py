"""Service data: the AWS-managed policies present in every account.

They live in code, not in the store: every account sees the same documents under
``arn:aws:iam::aws:policy/``. Only per-account attachment counts are stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.core.arn import AWS_MANAGED_ACCOUNT, policy_arn

_CREATED = datetime(2015, 2, 6, 18, 39, 46, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AwsManagedPolicy:
    """One AWS-managed policy: name, path, stable id, description and default document."""

    name: str
    policy_id: str
    description: str
    document: str
    path: str = "/"
    version_id: str = "v1"
    created: datetime = _CREATED

    @property
    def arn(self) -> str:
        """The policy's ARN under the ``aws`` pseudo-account."""
        return policy_arn(AWS_MANAGED_ACCOUNT, self.path, self.name)


def _doc(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=4)


AWS_MANAGED_POLICIES: tuple[AwsManagedPolicy, ...] = (
    AwsManagedPolicy(
        name="AdministratorAccess",
        policy_id="ANPAIWMBCKSKIEE64ZLYK",
        description="Provides full access to AWS services and resources.",
        document=_doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    ),
    AwsManagedPolicy(
        name="ReadOnlyAccess",
        policy_id="ANPAILL3HVNFSB6DCOWYQ",
        description="Provides read-only access to AWS services and resources.",
        document=_doc(
            {
                "Effect": "Allow",
                "Action": [
                    "iam:Generate*",
                    "iam:Get*",
                    "iam:List*",
                    "iam:Simulate*",
                    "sts:GetAccessKeyInfo",
                    "sts:GetCallerIdentity",
                ],
                "Resource": "*",
            }
        ),
    ),
    AwsManagedPolicy(
        name="IAMFullAccess",
        policy_id="ANPAI7XKCFMBPM3QQRRVQ",
        description="Provides full access to IAM via the AWS Management Console.",
        document=_doc({"Effect": "Allow", "Action": "iam:*", "Resource": "*"}),
    ),
    AwsManagedPolicy(
        name="IAMReadOnlyAccess",
        policy_id="ANPAJKSO7NDY4T57MWDSQ",
        description="Provides read only access to IAM via the AWS Management Console.",
        document=_doc(
            {
                "Effect": "Allow",
                "Action": ["iam:GenerateCredentialReport", "iam:Get*", "iam:List*"],
                "Resource": "*",
            }
        ),
    ),
    AwsManagedPolicy(
        name="IAMUserChangePassword",
        policy_id="ANPAJ4L4MM2A7QIEB56MS",
        description="Provides the ability for an IAM user to change their own password.",
        document=_doc(
            {
                "Effect": "Allow",
                "Action": ["iam:ChangePassword"],
                "Resource": ["arn:aws:iam::*:user/${aws:username}"],
            },
            {"Effect": "Allow", "Action": ["iam:GetAccountPasswordPolicy"], "Resource": "*"},
        ),
    ),
)

BY_ARN: dict[str, AwsManagedPolicy] = {p.arn: p for p in AWS_MANAGED_POLICIES}
