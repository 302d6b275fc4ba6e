"""Benchmark: policy decisions per second, ours against cedarpy on equivalent policies.

Cases (see bench/README.md): a one-statement policy, a typical principal (10 policies, 50
statements, mixed Allow/Deny, some conditions), and a 200-statement worst case whose statements
nearly all cover the requested actions (so the action index skips little) and carry conditions
and policy variables, plus the same worst case without variables so that Cedar can take part.

For each case the script prints decisions per second of ``evaluate_request`` (with a
``PolicySet`` and with a plain tuple of pairs) and of cedarpy's ``is_authorized`` (one call per
decision) and ``is_authorized_batch`` (one call per batch), and how many decisions of the two
engines disagree. Not collected by pytest; asserts nothing; bounded by ``--seconds`` per
measurement.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

# Run from a checkout without installing: the repository root holds the ``broker`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.core.policy import (  # noqa: E402
    CompiledPolicy,
    Decision,
    Policy,
    PolicyKind,
    PolicySet,
    RequestContext,
    compile_policy,
    evaluate_request,
    parse_policy,
)
from broker.core.policy.conditions import Family, SetQualifier, parse_operator  # noqa: E402
from broker.core.policy.match import ActionMatcher  # noqa: E402
from broker.core.policy.model import ContextValue, Statement  # noqa: E402

ACCOUNT = "111122223333"
NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)


# -- workloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One decision to make: the caller (an IAM user), action, resource and context keys."""

    user: str
    action: str
    resource: str
    keys: dict[str, ContextValue]


@dataclass
class Case:
    """Policies (id, JSON text) of one principal and the requests decided against them."""

    name: str
    documents: list[tuple[str, str]]
    requests: list[Request]
    statements: int = 0
    note: str = ""
    compiled: list[tuple[str, CompiledPolicy]] = field(default_factory=list)


def base_keys(
    user: str = "alice",
    *,
    team: str = "payments",
    ip: str = "10.1.2.3",
    secure: bool = True,
    region: str = "us-east-1",
    extra: Mapping[str, ContextValue] | None = None,
) -> dict[str, ContextValue]:
    """The context an authenticated IAM user's request carries (names lower-cased)."""
    keys: dict[str, ContextValue] = {
        "aws:principalarn": f"arn:aws:iam::{ACCOUNT}:user/team/{user}",
        "aws:principalaccount": ACCOUNT,
        "aws:principaltype": "User",
        "aws:userid": f"AIDA{user.upper():0<16}",
        "aws:username": user,
        "aws:sourceip": ip,
        "aws:securetransport": secure,
        "aws:currenttime": NOW,
        "aws:epochtime": int(NOW.timestamp()),
        "aws:requestedregion": region,
        "aws:principaltag/team": team,
    }
    keys.update({name.lower(): value for name, value in (extra or {}).items()})
    return keys


def doc(*statements: dict[str, object]) -> str:
    """A 2012-10-17 policy document, pretty-printed as people write them."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=2)


def allow(action: object, resource: object = "*", **condition: object) -> dict[str, object]:
    """An Allow statement; ``condition`` keyword is the Condition block if given."""
    out: dict[str, object] = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        out["Condition"] = condition["when"]
    return out


def deny(action: object, resource: object = "*", **condition: object) -> dict[str, object]:
    """A Deny statement."""
    return {**allow(action, resource, **condition), "Effect": "Deny"}


def case_single() -> Case:
    """(a) one policy with one statement."""
    documents = [("S3Read", doc(allow("s3:GetObject", "arn:aws:s3:::app-data/*")))]
    requests = [
        Request("alice", "s3:GetObject", "arn:aws:s3:::app-data/reports/q1.csv", base_keys()),
        Request("alice", "s3:GetObject", "arn:aws:s3:::other-bucket/x", base_keys()),
        Request("alice", "s3:PutObject", "arn:aws:s3:::app-data/reports/q1.csv", base_keys()),
        Request("alice", "ec2:DescribeInstances", "*", base_keys()),
    ]
    return Case("a: 1 statement", documents, requests)


def _typical_documents() -> list[tuple[str, str]]:
    a = ACCOUNT
    return [
        (
            "S3AppData",
            doc(
                allow(["s3:GetObject", "s3:GetObjectVersion"], "arn:aws:s3:::app-data/*"),
                allow(
                    "s3:ListBucket",
                    "arn:aws:s3:::app-data",
                    when={"StringLike": {"s3:prefix": ["home/*", "shared/*"]}},
                ),
                allow(
                    "s3:PutObject",
                    "arn:aws:s3:::app-data/uploads/*",
                    when={"Bool": {"aws:SecureTransport": "true"}},
                ),
                deny(["s3:DeleteObject", "s3:DeleteBucket"], "arn:aws:s3:::app-data*"),
                allow("s3:ListAllMyBuckets"),
            ),
        ),
        (
            "Ec2Operators",
            doc(
                allow("ec2:Describe*"),
                allow(
                    ["ec2:StartInstances", "ec2:StopInstances", "ec2:RebootInstances"],
                    f"arn:aws:ec2:us-east-1:{a}:instance/*",
                    when={"StringEquals": {"aws:ResourceTag/team": "payments"}},
                ),
                deny("ec2:TerminateInstances"),
                allow(
                    "ec2:CreateTags",
                    f"arn:aws:ec2:*:{a}:instance/*",
                    when={"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}},
                ),
                deny(
                    "ec2:*",
                    when={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}},
                ),
            ),
        ),
        (
            "OrdersTable",
            doc(
                allow(
                    ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"],
                    [
                        f"arn:aws:dynamodb:us-east-1:{a}:table/orders",
                        f"arn:aws:dynamodb:us-east-1:{a}:table/orders/index/*",
                    ],
                ),
                allow(
                    ["dynamodb:PutItem", "dynamodb:UpdateItem"],
                    f"arn:aws:dynamodb:us-east-1:{a}:table/orders",
                    when={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
                ),
                deny("dynamodb:DeleteTable"),
                allow(["dynamodb:ListTables", "dynamodb:DescribeTable"]),
                deny("dynamodb:*", when={"Bool": {"aws:SecureTransport": "false"}}),
            ),
        ),
        (
            "Messaging",
            doc(
                allow(
                    ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"],
                    f"arn:aws:sqs:us-east-1:{a}:orders-*",
                ),
                allow(["sqs:GetQueueAttributes", "sqs:GetQueueUrl"], f"arn:aws:sqs:*:{a}:*"),
                allow("sns:Publish", f"arn:aws:sns:us-east-1:{a}:alerts"),
                deny(["sqs:DeleteQueue", "sqs:PurgeQueue"]),
                allow("sns:ListTopics"),
            ),
        ),
        (
            "Functions",
            doc(
                allow("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{a}:function:orders-*"),
                allow(["lambda:GetFunction", "lambda:ListFunctions"]),
                deny(
                    "lambda:UpdateFunctionCode",
                    when={"StringNotEquals": {"aws:PrincipalTag/role": "deployer"}},
                ),
                allow(
                    "lambda:UpdateFunctionCode", f"arn:aws:lambda:us-east-1:{a}:function:orders-*"
                ),
                allow(
                    ["logs:CreateLogStream", "logs:PutLogEvents"],
                    f"arn:aws:logs:us-east-1:{a}:log-group:/aws/lambda/orders-*",
                ),
            ),
        ),
        (
            "Keys",
            doc(
                allow(
                    "kms:Decrypt",
                    f"arn:aws:kms:us-east-1:{a}:key/*",
                    when={"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
                ),
                allow(["kms:Encrypt", "kms:GenerateDataKey"], f"arn:aws:kms:us-east-1:{a}:key/k1*"),
                deny(["kms:ScheduleKeyDeletion", "kms:DisableKey"]),
                allow(["kms:ListKeys", "kms:ListAliases"]),
                deny("kms:CreateGrant", when={"Bool": {"kms:GrantIsForAWSResource": "false"}}),
            ),
        ),
        (
            "SelfService",
            doc(
                allow(["iam:GetUser", "iam:ListAccessKeys"], f"arn:aws:iam::{a}:user/team/*"),
                allow("iam:List*"),
                allow(
                    ["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:UpdateAccessKey"],
                    f"arn:aws:iam::{a}:user/team/alice",
                ),
                deny(["iam:CreateUser", "iam:DeleteUser", "iam:AttachUserPolicy"]),
                deny(
                    "iam:*", when={"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}
                ),
            ),
        ),
        (
            "Monitoring",
            doc(
                allow(
                    [
                        "cloudwatch:GetMetricData",
                        "cloudwatch:ListMetrics",
                        "cloudwatch:DescribeAlarms",
                    ]
                ),
                allow(
                    "cloudwatch:PutMetricData",
                    when={"StringEquals": {"cloudwatch:namespace": "Orders"}},
                ),
                allow(
                    ["logs:Describe*", "logs:Get*", "logs:FilterLogEvents"],
                    f"arn:aws:logs:us-east-1:{a}:log-group:*",
                ),
                deny("logs:DeleteLogGroup"),
                allow("xray:PutTraceSegments"),
            ),
        ),
        (
            "Sessions",
            doc(
                allow("sts:AssumeRole", f"arn:aws:iam::{a}:role/app/*"),
                allow("sts:GetCallerIdentity"),
                deny("sts:AssumeRole", "arn:aws:iam::*:role/admin*"),
                allow(
                    "sts:TagSession",
                    when={"ForAnyValue:StringEquals": {"aws:TagKeys": ["project"]}},
                ),
                allow("sts:DecodeAuthorizationMessage"),
            ),
        ),
        (
            "Guardrails",
            doc(
                {
                    "Effect": "Deny",
                    "NotAction": [
                        "iam:*",
                        "sts:*",
                        "s3:*",
                        "ec2:*",
                        "dynamodb:*",
                        "sqs:*",
                        "sns:*",
                        "lambda:*",
                        "logs:*",
                        "kms:*",
                        "cloudwatch:*",
                        "xray:*",
                    ],
                    "Resource": "*",
                },
                deny(
                    "*", when={"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}
                ),
                deny("s3:*", ["arn:aws:s3:::audit-logs", "arn:aws:s3:::audit-logs/*"]),
                allow("s3:GetBucketLocation"),
                deny(
                    "ec2:RunInstances",
                    "arn:aws:ec2:*:*:instance/*",
                    when={"StringNotLike": {"ec2:InstanceType": ["t3.*", "m5.large"]}},
                ),
            ),
        ),
    ]


def case_typical() -> Case:
    """(b) a typical principal: 10 policies, 50 statements, some conditions."""
    a = ACCOUNT
    k = base_keys
    requests = [
        Request("alice", "s3:GetObject", "arn:aws:s3:::app-data/reports/q1.csv", k()),
        Request("alice", "s3:GetObject", "arn:aws:s3:::audit-logs/2025/01.log", k()),
        Request(
            "alice", "s3:ListBucket", "arn:aws:s3:::app-data", k(extra={"s3:prefix": "home/a"})
        ),
        Request("alice", "s3:ListBucket", "arn:aws:s3:::app-data", k(extra={"s3:prefix": "etc/"})),
        Request("alice", "s3:PutObject", "arn:aws:s3:::app-data/uploads/f.bin", k()),
        Request("alice", "s3:PutObject", "arn:aws:s3:::app-data/uploads/f.bin", k(secure=False)),
        Request("alice", "s3:DeleteObject", "arn:aws:s3:::app-data/uploads/f.bin", k()),
        Request("alice", "s3:ListAllMyBuckets", "*", k()),
        Request("alice", "s3:GetBucketLocation", "arn:aws:s3:::app-data", k()),
        Request("alice", "ec2:DescribeInstances", "*", k()),
        Request("alice", "ec2:DescribeInstances", "*", k(region="ap-south-1")),
        Request(
            "alice",
            "ec2:StopInstances",
            f"arn:aws:ec2:us-east-1:{a}:instance/i-0abc",
            k(extra={"aws:ResourceTag/team": "payments"}),
        ),
        Request(
            "alice",
            "ec2:StopInstances",
            f"arn:aws:ec2:us-east-1:{a}:instance/i-0abc",
            k(extra={"aws:ResourceTag/team": "search"}),
        ),
        Request("alice", "ec2:TerminateInstances", f"arn:aws:ec2:us-east-1:{a}:instance/i-1", k()),
        Request(
            "alice",
            "ec2:CreateTags",
            f"arn:aws:ec2:us-east-1:{a}:instance/i-1",
            k(extra={"aws:TagKeys": ["team"]}),
        ),
        Request(
            "alice",
            "ec2:CreateTags",
            f"arn:aws:ec2:us-east-1:{a}:instance/i-1",
            k(extra={"aws:TagKeys": ["team", "owner"]}),
        ),
        Request(
            "alice",
            "ec2:RunInstances",
            f"arn:aws:ec2:us-east-1:{a}:instance/*",
            k(extra={"ec2:InstanceType": "p4d.24xlarge"}),
        ),
        Request("alice", "dynamodb:Query", f"arn:aws:dynamodb:us-east-1:{a}:table/orders", k()),
        Request(
            "alice",
            "dynamodb:Query",
            f"arn:aws:dynamodb:us-east-1:{a}:table/orders/index/by-date",
            k(),
        ),
        Request("alice", "dynamodb:PutItem", f"arn:aws:dynamodb:us-east-1:{a}:table/orders", k()),
        Request(
            "alice",
            "dynamodb:PutItem",
            f"arn:aws:dynamodb:us-east-1:{a}:table/orders",
            k(ip="192.168.4.4"),
        ),
        Request(
            "alice", "dynamodb:DeleteTable", f"arn:aws:dynamodb:us-east-1:{a}:table/orders", k()
        ),
        Request("alice", "dynamodb:ListTables", "*", k(secure=False)),
        Request("alice", "sqs:SendMessage", f"arn:aws:sqs:us-east-1:{a}:orders-new", k()),
        Request("alice", "sqs:SendMessage", f"arn:aws:sqs:us-east-1:{a}:billing", k()),
        Request("alice", "sqs:GetQueueUrl", f"arn:aws:sqs:eu-west-1:{a}:billing", k()),
        Request("alice", "sqs:PurgeQueue", f"arn:aws:sqs:us-east-1:{a}:orders-new", k()),
        Request("alice", "sns:Publish", f"arn:aws:sns:us-east-1:{a}:alerts", k()),
        Request(
            "alice", "lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{a}:function:orders-a", k()
        ),
        Request(
            "alice",
            "lambda:UpdateFunctionCode",
            f"arn:aws:lambda:us-east-1:{a}:function:orders-a",
            k(extra={"aws:PrincipalTag/role": "deployer"}),
        ),
        Request(
            "alice",
            "lambda:UpdateFunctionCode",
            f"arn:aws:lambda:us-east-1:{a}:function:orders-a",
            k(),
        ),
        Request(
            "alice",
            "logs:PutLogEvents",
            f"arn:aws:logs:us-east-1:{a}:log-group:/aws/lambda/orders-a:log-stream:x",
            k(),
        ),
        Request("alice", "logs:GetLogEvents", f"arn:aws:logs:us-east-1:{a}:log-group:/app:x", k()),
        Request("alice", "logs:DeleteLogGroup", f"arn:aws:logs:us-east-1:{a}:log-group:/app", k()),
        Request(
            "alice",
            "kms:Decrypt",
            f"arn:aws:kms:us-east-1:{a}:key/k1-abc",
            k(extra={"kms:ViaService": "s3.us-east-1.amazonaws.com"}),
        ),
        Request("alice", "kms:Decrypt", f"arn:aws:kms:us-east-1:{a}:key/k1-abc", k()),
        Request("alice", "kms:GenerateDataKey", f"arn:aws:kms:us-east-1:{a}:key/k1-abc", k()),
        Request("alice", "iam:GetUser", f"arn:aws:iam::{a}:user/team/alice", k()),
        Request("alice", "iam:ListRoles", "*", k()),
        Request("alice", "iam:CreateAccessKey", f"arn:aws:iam::{a}:user/team/alice", k()),
        Request("alice", "iam:CreateAccessKey", f"arn:aws:iam::{a}:user/team/bob", k()),
        Request("alice", "iam:CreateUser", f"arn:aws:iam::{a}:user/team/carol", k()),
        Request("alice", "sts:AssumeRole", f"arn:aws:iam::{a}:role/app/orders", k()),
        Request("alice", "sts:AssumeRole", f"arn:aws:iam::{a}:role/app/orders", k(ip="8.8.8.8")),
        Request("alice", "sts:AssumeRole", f"arn:aws:iam::{a}:role/admin-all", k()),
        Request("alice", "sts:GetCallerIdentity", "*", k()),
        Request("alice", "sts:TagSession", "*", k(extra={"aws:TagKeys": ["project", "cost"]})),
        Request(
            "alice", "cloudwatch:PutMetricData", "*", k(extra={"cloudwatch:namespace": "Orders"})
        ),
        Request("alice", "cloudwatch:GetMetricData", "*", k()),
        Request("alice", "rds:DescribeDBInstances", "*", k()),
    ]
    return Case("b: typical principal", _typical_documents(), requests)


WORST_USERS = ("alice", "bob", "carol", "dave")
WORST_STATEMENTS = 200


def case_worst(variables: bool) -> Case:
    """(c) 200 S3 statements, most covering the requested actions, each with conditions.

    With ``variables``, resources and string conditions use ``${aws:username}`` and
    ``${aws:PrincipalTag/team}``; without, the same shapes name one fixed user and team.
    """
    rng = random.Random(200)
    actions = [
        "s3:*",
        "s3:Get*",
        "s3:GetObject",
        "s3:*Object",
        "*",
        ["s3:GetObject", "s3:PutObject"],
    ]
    statements: list[dict[str, object]] = []
    for i in range(WORST_STATEMENTS):
        user = "${aws:username}" if variables else "alice"
        team = "${aws:PrincipalTag/team}" if variables else "payments"
        bucket = f"bucket-{i % 20}"
        resource = rng.choice(
            [
                f"arn:aws:s3:::{bucket}/home/{user}/*",
                f"arn:aws:s3:::{bucket}/teams/{team}/*",
                f"arn:aws:s3:::{bucket}/*",
                f"arn:aws:s3:::{bucket}/shared/*/{user}*",
            ]
        )
        conditions: list[dict[str, object]] = [
            {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "172.16.0.0/12"]}},
            {"Bool": {"aws:SecureTransport": "true"}},
            {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
            {"StringEquals": {"aws:PrincipalTag/team": [team, "platform"]}},
            {"StringLike": {"s3:prefix": [f"home/{user}/*", "public/*"]}},
            {"StringNotEquals": {"aws:RequestedRegion": "ap-south-1"}},
            {"ForAnyValue:StringEquals": {"aws:TagKeys": ["project", "cost"]}},
        ]
        chosen = rng.sample(conditions, rng.choice([1, 2, 2, 3]))
        block: dict[str, object] = {}
        for c in chosen:
            block.update(c)
        statement: dict[str, object] = {
            "Effect": "Deny" if i % 10 == 9 else "Allow",
            "Action": rng.choice(actions),
            "Resource": resource,
            "Condition": block,
        }
        statements.append(statement)
    documents = [
        (f"Worst{n}", doc(*statements[n * 20 : (n + 1) * 20]))
        for n in range(WORST_STATEMENTS // 20)
    ]
    requests: list[Request] = []
    teams = ("payments", "platform", "search")
    for j in range(64):
        user = WORST_USERS[j % len(WORST_USERS)] if variables else "alice"
        bucket = f"bucket-{rng.randrange(24)}"
        key = rng.choice(
            [f"home/{user}/f{j}", f"teams/{teams[j % 3]}/f{j}", f"shared/x/{user}-{j}", "other/k"]
        )
        extra: dict[str, ContextValue] = {}
        if j % 3 == 0:
            extra["s3:prefix"] = f"home/{user}/"
        if j % 4 == 0:
            extra["aws:TagKeys"] = ["project"] if j % 8 == 0 else ["owner"]
        keys = base_keys(
            user,
            team=teams[j % 3] if variables else "payments",
            ip="10.9.8.7" if j % 5 else "203.0.113.5",
            secure=j % 7 != 0,
            region="ap-south-1" if j % 11 == 0 else "us-east-1",
            extra=extra,
        )
        action = rng.choice(["s3:GetObject", "s3:PutObject", "s3:GetObjectTagging"])
        requests.append(Request(user, action, f"arn:aws:s3:::{bucket}/{key}", keys))
    name = "c: 200 stmts + variables" if variables else "c': 200 stmts, no variables"
    return Case(name, documents, requests)


# -- our engine --------------------------------------------------------------------------------


def compile_case(case: Case) -> None:
    """Parse and compile the case's documents (not timed)."""
    case.compiled = [
        (pid, compile_policy(parse_policy(text, PolicyKind.IDENTITY)))
        for pid, text in case.documents
    ]
    case.statements = sum(len(c.statements) for _, c in case.compiled)


def our_contexts(case: Case) -> list[RequestContext]:
    """One prebuilt :class:`RequestContext` per request (as a server builds per request)."""
    return [
        RequestContext(
            action=r.action,
            resource=r.resource,
            principal_arn=f"arn:aws:iam::{ACCOUNT}:user/team/{r.user}",
            principal_account=ACCOUNT,
            keys=r.keys,
        )
        for r in case.requests
    ]


def rate(run_once: Callable[[], int], seconds: float) -> float:
    """Call ``run_once`` (which makes some decisions and returns how many) for ``seconds``."""
    run_once()  # warm caches and memos, as a long-running server has them
    done = 0
    start = time.perf_counter()
    while True:
        done += run_once()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def ours_rate(
    identity: Sequence[tuple[str, CompiledPolicy]], contexts: list[RequestContext], seconds: float
) -> float:
    """Decisions per second of ``evaluate_request`` over ``contexts``."""

    def run_once() -> int:
        for ctx in contexts:
            evaluate_request(ctx, identity=identity)
        return len(contexts)

    return rate(run_once, seconds)


# -- the same policies in Cedar ----------------------------------------------------------------


class NotExpressible(Exception):
    """A policy construct without an equivalent Cedar form."""


def cedar_string(text: str) -> str:
    """A Cedar string literal."""
    return json.dumps(text, ensure_ascii=False)


def cedar_like(pattern: str) -> str:
    """A Cedar ``like`` literal for an IAM glob (``*`` only; ``?`` has no Cedar form)."""
    if "?" in pattern:
        raise NotExpressible("'?' wildcard")
    escaped = json.dumps(pattern.replace("*", "\0"), ensure_ascii=False)
    return escaped.replace("\\u0000", "*")


def _no_variables(text: str, where: str) -> str:
    if "${" in text:
        raise NotExpressible(f"policy variable in {where} (Cedar patterns are literals)")
    return text


def cedar_resource(pattern: str) -> str:
    """Cedar condition for one Resource entry, matched field by field as IAM does."""
    if pattern and pattern.count("*") == len(pattern):
        return "true"
    _no_variables(pattern, "Resource")
    parts = pattern.split(":", 5)
    if len(parts) < 6:
        if not parts[-1].endswith("*"):
            return "false"
        parts += ["*"] * (6 - len(parts))
    heads, tail = parts[:5], parts[5]
    if not any("*" in h or "?" in h for h in heads):
        return f"resource.arn like {cedar_like(pattern)}"
    names = ("scheme", "partition", "service", "region", "account")
    checks = [
        f"resource.{name} like {cedar_like(h)}"
        for name, h in zip(names, heads, strict=True)
        if h != "*"
    ]
    checks.append(f"resource.rest like {cedar_like(tail)}")
    return "(" + " && ".join(checks) + ")"


def _attr(key: str) -> str:
    return f"context[{cedar_string(key.lower())}]"


def _has(key: str) -> str:
    return f"context has {cedar_string(key.lower())}"


def _value_expr(value: str) -> tuple[str, str | None]:
    """A string policy value as a Cedar expression, with the key a variable needs present."""
    if value.startswith("${") and value.endswith("}") and value.count("${") == 1:
        var = value[2:-1]
        if ", '" in var or var in ("*", "?", "$"):
            raise NotExpressible("policy variable with default or escape")
        return _attr(var), _has(var)
    return cedar_string(_no_variables(value, "condition value")), None


def cedar_condition(operator: str, key: str, values: Sequence[str]) -> str:
    """Cedar expression for one condition key under one operator (IAM missing-key rules)."""
    spec = parse_operator(operator)
    if spec is None:
        raise NotExpressible(operator)
    attr, present = _attr(key), _has(key)
    family = spec.family
    if family is Family.NULL:
        return f"!({present})" if values[0].lower() == "true" else f"({present})"
    if spec.qualifier is not None:
        if family is not Family.STRING or spec.negated or spec.if_exists:
            raise NotExpressible(f"{operator} (only ForAnyValue/ForAllValues:StringEquals)")
        literal = "[" + ", ".join(cedar_string(_no_variables(v, "set")) for v in values) + "]"
        if spec.qualifier is SetQualifier.FOR_ANY_VALUE:
            return f"({present} && {attr}.containsAny({literal}))"
        return f"(!({present}) || {literal}.containsAll({attr}))"
    tests: list[str] = []
    for value in values:
        if family is Family.STRING:
            expr, needs = _value_expr(value)
            test = f"{attr} == {expr}"
            tests.append(f"({needs} && {test})" if needs else test)
        elif family is Family.STRING_LIKE:
            tests.append(f"{attr} like {cedar_like(_no_variables(value, 'StringLike'))}")
        elif family is Family.BOOL:
            tests.append(f"{attr} == {value.lower()}")
        elif family is Family.IP:
            tests.append(f"{attr}.isInRange(ip({cedar_string(value)}))")
        elif family is Family.DATE:
            instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
            cmp = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[spec.comparison]
            tests.append(f"{attr} {cmp} {int(instant.timestamp())}")
        elif family is Family.NUMERIC:
            cmp = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[spec.comparison]
            tests.append(f"{attr} {cmp} {int(value)}")
        else:
            raise NotExpressible(f"{operator} ({family.value})")
    if not tests:
        raise NotExpressible("condition without values")
    if spec.negated:
        body = " && ".join(f"!({t})" for t in tests)
        return f"(!({present}) || ({body}))"
    body = " || ".join(tests)
    if spec.if_exists:
        return f"(!({present}) || ({body}))"
    return f"({present} && ({body}))"


def _cedar_actions(patterns: Sequence[str], universe: Sequence[str]) -> list[str]:
    matcher = ActionMatcher(patterns)
    return [a for a in universe if matcher.matches(a.lower())]


def cedar_statement(st: Statement, universe: Sequence[str]) -> str:
    """One IAM statement as a Cedar ``permit``/``forbid`` policy."""
    effect = "forbid" if st.is_deny else "permit"
    when: list[str] = []
    if st.actions is not None:
        names = _cedar_actions(st.actions, universe)
        if not names:
            return ""
        scope = "action in [" + ", ".join(f"Action::{cedar_string(n)}" for n in names) + "]"
    else:
        scope = "action"
        names = _cedar_actions(st.not_actions or (), universe)
        if names:
            excluded = ", ".join(f"Action::{cedar_string(n)}" for n in names)
            when.append(f"!(action in [{excluded}])")
    if st.resources is not None:
        when.append("(" + " || ".join(cedar_resource(r) for r in st.resources) + ")")
    elif st.not_resources is not None:
        when.append("!(" + " || ".join(cedar_resource(r) for r in st.not_resources) + ")")
    for cond in st.conditions or ():
        when.append(cedar_condition(cond.operator, cond.key, cond.values))
    body = " && ".join(when) if when else "true"
    return f"{effect}(principal, {scope}, resource) when {{ {body} }};"


def cedar_policies(policies: Sequence[Policy], universe: Sequence[str]) -> str:
    """Every statement of ``policies`` as Cedar text (raises :class:`NotExpressible`)."""
    out = [cedar_statement(st, universe) for p in policies for st in p.statements]
    return "\n".join(s for s in out if s)


def _cedar_value(value: object) -> Any:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, IPv4Address | IPv6Address):
        return {"__extn": {"fn": "ip", "arg": str(value)}}
    if isinstance(value, list | tuple):
        return [_cedar_value(v) for v in value]
    raise NotExpressible(f"context value {value!r}")


def cedar_request(r: Request) -> dict[str, Any]:
    """The Cedar request for one of ours (IP keys as ``ip`` extension values)."""
    context: dict[str, Any] = {}
    for key, value in r.keys.items():
        if key in ("aws:sourceip",) and isinstance(value, str):
            context[key] = {"__extn": {"fn": "ip", "arg": value}}
        else:
            context[key] = _cedar_value(value)
    return {
        "principal": {"type": "User", "id": r.user},
        "action": {"type": "Action", "id": r.action},
        "resource": {"type": "Resource", "id": r.resource},
        "context": context,
    }


def cedar_entities(requests: Sequence[Request]) -> str:
    """Users and resources as Cedar entities; resources carry the ARN and its fields."""
    entities: dict[tuple[str, str], dict[str, Any]] = {}
    for r in requests:
        entities[("User", r.user)] = {
            "uid": {"type": "User", "id": r.user},
            "attrs": {},
            "parents": [],
        }
        fields = r.resource.split(":", 5)
        if len(fields) < 6:
            fields += [""] * (6 - len(fields))
        names = ("scheme", "partition", "service", "region", "account", "rest")
        attrs = dict(zip(names, fields, strict=True))
        attrs["arn"] = r.resource
        entities[("Resource", r.resource)] = {
            "uid": {"type": "Resource", "id": r.resource},
            "attrs": attrs,
            "parents": [],
        }
    return json.dumps(list(entities.values()))


# -- running -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table."""

    case: str
    statements: int
    ours: float
    ours_tuple: float
    single: float | None = None
    batch: float | None = None
    disagreements: int | None = None
    mix: str = ""
    note: str = ""


BATCH_SIZE = 1000
"""Requests per ``is_authorized_batch`` call (the case's requests repeated)."""


def run_case(case: Case, seconds: float, cedar: Any) -> Row:
    """Measure one case with both engines; compare their decisions."""
    compile_case(case)
    contexts = our_contexts(case)
    bundle = PolicySet(case.compiled)
    plain = tuple(case.compiled)
    row = Row(
        case.name,
        case.statements,
        ours_rate(bundle, contexts, seconds),
        ours_rate(plain, contexts, seconds),
    )
    ours = [evaluate_request(ctx, identity=bundle).decision for ctx in contexts]
    row.mix = "/".join(str(ours.count(d)) for d in Decision)
    if cedar is None:
        row.note = "cedarpy not installed"
        return row
    universe = sorted({r.action for r in case.requests})
    try:
        text = cedar_policies([c.source for _, c in case.compiled], universe)
        requests = [cedar_request(r) for r in case.requests]
    except NotExpressible as exc:
        row.note = f"not expressible in Cedar: {exc}"
        return row
    policies = cedar.PolicySet.from_str(text)
    entities = cedar.Entities.from_json_str(cedar_entities(case.requests))
    theirs = cedar.is_authorized_batch(requests, policies, entities)
    errors = [e for res in theirs for e in res.diagnostics.errors]
    if errors:
        row.note = f"cedar evaluation errors: {errors[0]}"
    row.disagreements = sum(
        (d is Decision.ALLOW) != res.allowed for d, res in zip(ours, theirs, strict=True)
    )

    def single_once() -> int:
        for req in requests:
            cedar.is_authorized(req, policies, entities)
        return len(requests)

    batch = (requests * (BATCH_SIZE // len(requests) + 1))[:BATCH_SIZE]

    def batch_once() -> int:
        cedar.is_authorized_batch(batch, policies, entities)
        return len(batch)

    row.single = rate(single_once, seconds)
    row.batch = rate(batch_once, seconds)
    return row


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def print_table(rows: Sequence[Row]) -> None:
    """Print the result table and notes."""
    header = (
        f"{'case':<30} {'stmts':>5} {'ours/s':>10} {'ours tuple/s':>13} {'cedar single/s':>15} "
        f"{'cedar batch/s':>14} {'ours/batch':>10} {'disagree':>8} {'A/X/I':>9}"
    )
    print(header)
    for row in rows:
        ratio = "n/a" if row.batch is None else f"{row.ours / row.batch:.1f}x"
        disagree = "n/a" if row.disagreements is None else str(row.disagreements)
        print(
            f"{row.case:<30} {row.statements:>5} {_fmt(row.ours):>10} {_fmt(row.ours_tuple):>13} "
            f"{_fmt(row.single):>15} {_fmt(row.batch):>14} {ratio:>10} {disagree:>8} "
            f"{row.mix:>9}"
        )
    for row in rows:
        if row.note:
            print(f"  {row.case}: {row.note}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every case and print the table; exit 1 if the engines disagree anywhere."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="timed seconds per measurement (default 2)"
    )
    parser.add_argument("--no-cedar", action="store_true", help="measure our engine only")
    args = parser.parse_args(argv)
    seconds = max(0.05, min(args.seconds, 10.0))
    cedar: Any = None
    if not args.no_cedar:
        try:
            import cedarpy

            cedar = cedarpy
        except ImportError:
            cedar = None
    cases = [case_single(), case_typical(), case_worst(True), case_worst(False)]
    rows = [run_case(case, seconds, cedar) for case in cases]
    print(
        f"python {sys.version.split()[0]}, one thread; {seconds:g} s per measurement; "
        f"cedar batch = {BATCH_SIZE} requests per call"
    )
    print_table(rows)
    print(
        "A/X/I: how the case's distinct requests are decided (allowed / explicit deny / "
        "implicit deny); disagree: requests where cedarpy decides otherwise"
    )
    return 1 if any(row.disagreements for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
