"""Decisions of the policy engine (spec §6, §8): statements, layers, principals, trust."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy import (
    CallerKind,
    CompiledPolicy,
    Decision,
    EvaluationResult,
    PolicyKind,
    RequestContext,
    compile_policy,
    evaluate_request,
    evaluate_statements,
    evaluate_trust,
    normalize_keys,
    parse_policy,
    referenced_keys,
)
from broker.core.policy.model import ContextValue

A = "111111111111"
B = "222222222222"
USER = f"arn:aws:iam::{A}:user/team/alice"
OTHER_USER = f"arn:aws:iam::{A}:user/bob"
ROLE = f"arn:aws:iam::{A}:role/path/app"
SESSION = f"arn:aws:sts::{A}:assumed-role/app/s1"
FED = f"arn:aws:sts::{A}:federated-user/fred"
ROOT = f"arn:aws:iam::{A}:root"
BUCKET = "arn:aws:s3:::bucket/key"


def policy(
    *statements: dict[str, object],
    version: str | None = "2012-10-17",
    kind: PolicyKind = PolicyKind.IDENTITY,
) -> CompiledPolicy:
    doc: dict[str, object] = {"Statement": list(statements)}
    if version is not None:
        doc["Version"] = version
    return compile_policy(parse_policy(json.dumps(doc), kind))


def allow(
    action: str | list[str] = "s3:GetObject",
    resource: str | list[str] = "*",
    sid: str | None = None,
    **extra: object,
) -> dict[str, object]:
    st_: dict[str, object] = {"Effect": "Allow", "Action": action, "Resource": resource, **extra}
    if sid is not None:
        st_["Sid"] = sid
    return st_


def deny(
    action: str | list[str] = "s3:GetObject",
    resource: str | list[str] = "*",
    sid: str | None = None,
    **extra: object,
) -> dict[str, object]:
    return {**allow(action, resource, sid, **extra), "Effect": "Deny"}


def ctx(
    action: str = "s3:GetObject",
    resource: str = BUCKET,
    principal: str = USER,
    account: str = A,
    keys: dict[str, ContextValue] | None = None,
    *,
    caller: CallerKind | None = None,
    issuer_arn: str | None = None,
    service: str | None = None,
    has_boundary: bool = False,
    resource_unspecified: bool = False,
) -> RequestContext:
    return RequestContext(
        action,
        resource,
        principal,
        account,
        normalize_keys(keys or {}),
        caller=caller,
        issuer_arn=issuer_arn,
        service=service,
        has_boundary=has_boundary,
        resource_unspecified=resource_unspecified,
    )


def sids(result: EvaluationResult) -> list[str | None]:
    return [m.sid for m in result.matched]


# -- one policy set: explicit deny > allow > implicit deny ----------------------------------------

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)

IDENTITY_CASES: list[
    tuple[str, list[list[dict[str, object]]], RequestContext, Decision, list[str | None]]
] = [
    ("allow", [[allow(resource="arn:aws:s3:::bucket/*", sid="A")]], ctx(), Decision.ALLOW, ["A"]),
    (
        "other-resource",
        [[allow(resource="arn:aws:s3:::other/*", sid="A")]],
        ctx(),
        Decision.IMPLICIT_DENY,
        [],
    ),
    ("other-action", [[allow(action="s3:PutObject", sid="A")]], ctx(), Decision.IMPLICIT_DENY, []),
    ("no-policies", [], ctx(), Decision.IMPLICIT_DENY, []),
    ("deny-wins", [[allow(sid="A"), deny(sid="D")]], ctx(), Decision.EXPLICIT_DENY, ["D"]),
    (
        "deny-in-other-policy",
        [[allow(sid="A")], [deny(action="s3:*", sid="D")]],
        ctx(),
        Decision.EXPLICIT_DENY,
        ["D"],
    ),
    (
        "all-allows-listed",
        [[allow(sid="A1"), allow(action="s3:*", sid="A2")], [allow(action="*", sid="A3")]],
        ctx(),
        Decision.ALLOW,
        ["A1", "A2", "A3"],
    ),
    (
        "action-case-insensitive",
        [[allow(action="S3:getobject", sid="A")]],
        ctx(action="s3:GetObject"),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "action-request-case",
        [[allow(action="iam:ListUsers", sid="A")]],
        ctx(action="IAM:LISTUSERS"),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "resource-case-sensitive",
        [[allow(resource="arn:aws:s3:::Bucket/*", sid="A")]],
        ctx(),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "notaction-allow",
        [[{"Sid": "N", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]],
        ctx(),
        Decision.ALLOW,
        ["N"],
    ),
    (
        "notaction-excluded",
        [[{"Sid": "N", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]],
        ctx(action="iam:CreateUser", resource="*"),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "notaction-keeps-resource",
        [
            [
                {
                    "Sid": "N",
                    "Effect": "Allow",
                    "NotAction": "s3:DeleteBucket",
                    "Resource": "arn:aws:s3:::*",
                }
            ]
        ],
        ctx(action="ec2:RunInstances", resource="arn:aws:ec2:us-east-1:111111111111:instance/i-1"),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "notresource-deny",
        [
            [
                allow(action="s3:*", sid="A"),
                {
                    "Sid": "D",
                    "Effect": "Deny",
                    "Action": "s3:*",
                    "NotResource": "arn:aws:s3:::safe/*",
                },
            ]
        ],
        ctx(),
        Decision.EXPLICIT_DENY,
        ["D"],
    ),
    (
        "notresource-deny-spared",
        [
            [
                allow(action="s3:*", sid="A"),
                {
                    "Sid": "D",
                    "Effect": "Deny",
                    "Action": "s3:*",
                    "NotResource": "arn:aws:s3:::bucket/*",
                },
            ]
        ],
        ctx(),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "request-star-needs-star",
        [[allow(action="iam:ListUsers", resource="arn:aws:iam::*:*", sid="A")]],
        ctx(action="iam:ListUsers", resource="*"),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "request-star-star",
        [[allow(action="iam:ListUsers", resource="*", sid="A")]],
        ctx(action="iam:ListUsers", resource="*"),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "request-star-notresource",
        [
            [
                {
                    "Sid": "N",
                    "Effect": "Allow",
                    "Action": "iam:ListUsers",
                    "NotResource": "arn:aws:iam::*:user/x",
                }
            ]
        ],
        ctx(action="iam:ListUsers", resource="*"),
        Decision.ALLOW,
        ["N"],
    ),
    # MFA: a Deny on Bool ... false does not catch long-term keys (key absent) ...
    (
        "mfa-deny-long-term",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*", sid="D", Condition={"Bool": {"aws:MultiFactorAuthPresent": "false"}}
                ),
            ]
        ],
        ctx(),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "mfa-deny-session",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*", sid="D", Condition={"Bool": {"aws:MultiFactorAuthPresent": "false"}}
                ),
            ]
        ],
        ctx(keys={"aws:MultiFactorAuthPresent": "false"}),
        Decision.EXPLICIT_DENY,
        ["D"],
    ),
    # ... but BoolIfExists does
    (
        "mfa-deny-if-exists",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*",
                    sid="D",
                    Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
                ),
            ]
        ],
        ctx(),
        Decision.EXPLICIT_DENY,
        ["D"],
    ),
    (
        "mfa-allow-with-mfa",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*",
                    sid="D",
                    Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
                ),
            ]
        ],
        ctx(keys={"aws:MultiFactorAuthPresent": True}),
        Decision.ALLOW,
        ["A"],
    ),
    # revoke older sessions
    (
        "revoke-older",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*",
                    sid="Revoke",
                    Condition={"DateLessThan": {"aws:TokenIssueTime": "2024-05-01T12:00:00Z"}},
                ),
            ]
        ],
        ctx(principal=SESSION, keys={"aws:TokenIssueTime": "2024-05-01T11:59:59Z"}),
        Decision.EXPLICIT_DENY,
        ["Revoke"],
    ),
    (
        "revoke-newer",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*",
                    sid="Revoke",
                    Condition={"DateLessThan": {"aws:TokenIssueTime": "2024-05-01T12:00:00Z"}},
                ),
            ]
        ],
        ctx(principal=SESSION, keys={"aws:TokenIssueTime": T0}),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "revoke-long-term",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*",
                    sid="Revoke",
                    Condition={"DateLessThan": {"aws:TokenIssueTime": "2024-05-01T12:00:00Z"}},
                ),
            ]
        ],
        ctx(),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "stringnotequals-if-exists-missing",
        [
            [
                allow(action="*", sid="A"),
                deny(
                    action="*",
                    sid="D",
                    Condition={"StringNotEqualsIfExists": {"aws:RequestedRegion": "us-east-1"}},
                ),
            ]
        ],
        ctx(),
        Decision.EXPLICIT_DENY,
        ["D"],
    ),
    # variables
    (
        "own-user",
        [
            [
                allow(
                    action="iam:*AccessKey*",
                    resource="arn:aws:iam::*:user/team/${aws:username}",
                    sid="Self",
                )
            ]
        ],
        ctx(action="iam:CreateAccessKey", resource=USER, keys={"aws:username": "alice"}),
        Decision.ALLOW,
        ["Self"],
    ),
    (
        "other-user",
        [
            [
                allow(
                    action="iam:*AccessKey*",
                    resource="arn:aws:iam::*:user/team/${aws:username}",
                    sid="Self",
                )
            ]
        ],
        ctx(
            action="iam:CreateAccessKey",
            resource=f"arn:aws:iam::{A}:user/team/bob",
            keys={"aws:username": "alice"},
        ),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "variable-unresolved",
        [[allow(action="iam:*", resource="arn:aws:iam::*:user/team/${aws:username}", sid="Self")]],
        ctx(action="iam:GetUser", resource=f"arn:aws:iam::{A}:user/team/${{aws:username}}"),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "deny-notresource-unresolved",
        [
            [
                allow(action="s3:*", sid="A"),
                {
                    "Sid": "D",
                    "Effect": "Deny",
                    "Action": "s3:*",
                    "NotResource": "arn:aws:s3:::home/${aws:username}/*",
                },
            ]
        ],
        ctx(resource="arn:aws:s3:::home/alice/f"),
        Decision.EXPLICIT_DENY,
        ["D"],
    ),
    (
        "deny-notresource-resolved",
        [
            [
                allow(action="s3:*", sid="A"),
                {
                    "Sid": "D",
                    "Effect": "Deny",
                    "Action": "s3:*",
                    "NotResource": "arn:aws:s3:::home/${aws:username}/*",
                },
            ]
        ],
        ctx(resource="arn:aws:s3:::home/alice/f", keys={"aws:username": "alice"}),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "tag-match",
        [
            [
                allow(
                    action="ec2:StartInstances",
                    sid="A",
                    Condition={
                        "StringEquals": {"aws:ResourceTag/Team": "${aws:PrincipalTag/team}"}
                    },
                )
            ]
        ],
        ctx(
            action="ec2:StartInstances",
            resource="*",
            keys={"aws:resourcetag/team": "red", "aws:PrincipalTag/Team": "red"},
        ),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "tag-mismatch",
        [
            [
                allow(
                    action="ec2:StartInstances",
                    sid="A",
                    Condition={
                        "StringEquals": {"aws:ResourceTag/Team": "${aws:PrincipalTag/team}"}
                    },
                )
            ]
        ],
        ctx(
            action="ec2:StartInstances",
            resource="*",
            keys={"aws:resourcetag/team": "red", "aws:principaltag/team": "blue"},
        ),
        Decision.IMPLICIT_DENY,
        [],
    ),
    # ForAllValues with the key absent allows, unless guarded with Null
    (
        "forall-absent",
        [
            [
                allow(
                    action="iam:TagUser",
                    sid="A",
                    Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}},
                )
            ]
        ],
        ctx(action="iam:TagUser", resource="*"),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "forall-guarded",
        [
            [
                allow(
                    action="iam:TagUser",
                    sid="A",
                    Condition={
                        "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]},
                        "Null": {"aws:TagKeys": "false"},
                    },
                )
            ]
        ],
        ctx(action="iam:TagUser", resource="*"),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "forall-present",
        [
            [
                allow(
                    action="iam:TagUser",
                    sid="A",
                    Condition={
                        "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]},
                        "Null": {"aws:TagKeys": "false"},
                    },
                )
            ]
        ],
        ctx(action="iam:TagUser", resource="*", keys={"aws:TagKeys": ["team"]}),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "forall-extra-key",
        [
            [
                allow(
                    action="iam:TagUser",
                    sid="A",
                    Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}},
                )
            ]
        ],
        ctx(action="iam:TagUser", resource="*", keys={"aws:TagKeys": ["team", "cost"]}),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "source-ip",
        [
            [
                allow(
                    action="*",
                    sid="A",
                    Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]}},
                )
            ]
        ],
        ctx(keys={"aws:SourceIp": "2001:db8::7"}),
        Decision.ALLOW,
        ["A"],
    ),
    (
        "source-ip-outside",
        [
            [
                allow(
                    action="*",
                    sid="A",
                    Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]}},
                )
            ]
        ],
        ctx(keys={"aws:SourceIp": "198.51.100.1"}),
        Decision.IMPLICIT_DENY,
        [],
    ),
    (
        "all-conditions-and",
        [
            [
                allow(
                    action="*",
                    sid="A",
                    Condition={
                        "StringEquals": {"aws:a": "1", "aws:b": "2"},
                        "Bool": {"aws:SecureTransport": "true"},
                    },
                )
            ]
        ],
        ctx(keys={"aws:a": "1", "aws:b": "2", "aws:securetransport": False}),
        Decision.IMPLICIT_DENY,
        [],
    ),
]


@pytest.mark.parametrize(
    ("policies", "context", "decision", "matched"),
    [pytest.param(p, c, d, m, id=i) for i, p, c, d, m in IDENTITY_CASES],
)
def test_identity_decisions(
    policies: list[list[dict[str, object]]],
    context: RequestContext,
    decision: Decision,
    matched: list[str | None],
) -> None:
    compiled = [(f"p{i}", policy(*statements)) for i, statements in enumerate(policies)]
    result = evaluate_statements(compiled, context)
    assert result.decision is decision
    assert sids(result) == matched


def test_matched_statement_names_policy_and_index() -> None:
    first = policy(allow(action="ec2:*"), allow(sid="Get"))
    second = policy(deny(action="s3:Get*"))
    result = evaluate_statements([("arn:p1", first), ("arn:p2", second)], ctx())
    assert result.decision is Decision.EXPLICIT_DENY
    [m] = result.matched
    assert (m.policy_id, m.sid, m.effect, m.index) == ("arn:p2", None, "Deny", 0)
    allowed = evaluate_statements([("arn:p1", first)], ctx())
    [m] = allowed.matched
    assert (m.policy_id, m.sid, m.effect, m.index) == ("arn:p1", "Get", "Allow", 1)
    assert allowed.allowed


def test_old_version_has_no_variables() -> None:
    statements = allow(
        action="iam:GetUser", resource="arn:aws:iam::*:user/${aws:username}", sid="A"
    )
    for version in (None, "2008-10-17"):
        compiled = policy(statements, version=version)
        literal = ctx(
            action="iam:GetUser",
            resource=f"arn:aws:iam::{A}:user/${{aws:username}}",
            keys={"aws:username": "alice"},
        )
        named = ctx(
            action="iam:GetUser",
            resource=f"arn:aws:iam::{A}:user/alice",
            keys={"aws:username": "alice"},
        )
        assert evaluate_statements([("p", compiled)], literal).decision is Decision.ALLOW
        assert evaluate_statements([("p", compiled)], named).decision is Decision.IMPLICIT_DENY


def test_missing_keys_are_reported_once() -> None:
    compiled = policy(
        allow(action="*", Condition={"StringEquals": {"aws:SourceVpc": "v"}}),
        allow(
            action="*",
            Condition={
                "StringLike": {"AWS:SOURCEVPC": "v*"},
                "Bool": {"aws:ViaAWSService": "true"},
            },
        ),
    )
    result = evaluate_statements([("p", compiled)], ctx())
    assert result.decision is Decision.IMPLICIT_DENY
    assert result.missing_keys == ("aws:SourceVpc",)


def test_referenced_keys() -> None:
    parsed = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    allow(
                        action="s3:*",
                        resource="arn:aws:s3:::b/${aws:username}/*",
                        Condition={
                            "StringEquals": {
                                "aws:PrincipalTag/team": "${aws:PrincipalTag/Team, 'x'}"
                            }
                        },
                    ),
                    allow(
                        action="s3:*",
                        Condition={
                            "StringLike": {"AWS:USERNAME": "a"},
                            "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
                        },
                    ),
                ],
            }
        )
    )
    assert referenced_keys(parsed) == ("aws:username", "aws:PrincipalTag/team", "aws:SourceIp")


def test_d7_hostile_pattern_completes() -> None:
    hostile = "*a" * 60 + "*b"
    compiled = policy(
        allow(action="sts:AssumeRole", Condition={"StringLike": {"sts:ExternalId": hostile}})
    )
    result = evaluate_statements(
        [("p", compiled)], ctx(action="sts:AssumeRole", keys={"sts:ExternalId": "a" * 1224})
    )
    assert result.decision is Decision.IMPLICIT_DENY


# -- whole requests: identity, boundary, session, resource policy (§8.3) --------------------------

ID_YES = policy(allow(sid="Id"))
ID_NO = policy(allow(action="ec2:*", sid="IdOther"))
PB_YES = policy(allow(action="s3:*", sid="Pb"))
PB_NO = policy(allow(action="ec2:*", sid="PbOther"))
SP_YES = policy(allow(action="s3:Get*", sid="Sp"))
SP_NO = policy(allow(action="iam:*", sid="SpOther"))


def rp(principal: object, effect: str = "Allow", sid: str = "Rp") -> CompiledPolicy:
    return policy(
        {"Sid": sid, "Effect": effect, "Principal": principal, "Action": "s3:*", "Resource": "*"},
        kind=PolicyKind.RESOURCE,
    )


RP_USER = rp({"AWS": USER})
RP_ACCOUNT = rp({"AWS": A})
RP_ROOT = rp({"AWS": ROOT})
RP_OTHER = rp({"AWS": OTHER_USER})
RP_ROLE = rp({"AWS": ROLE})
RP_SESSION = rp({"AWS": SESSION})
RP_FED = rp({"AWS": FED})
RP_STAR = rp("*")

USER_CTX = ctx()
ROLE_CTX = ctx(principal=SESSION, issuer_arn=ROLE)
FED_CTX = ctx(principal=FED, issuer_arn=USER)


def _opt(p: CompiledPolicy | None, name: str) -> tuple[str, CompiledPolicy] | None:
    return None if p is None else (name, p)


TABLE: list[
    tuple[
        str,
        RequestContext,
        CompiledPolicy | None,
        CompiledPolicy,
        CompiledPolicy | None,
        CompiledPolicy | None,
        Decision,
        str | None,
    ]
] = [
    # (id, caller, RP, ID, PB, SP, decision, layer)
    ("user-id", USER_CTX, None, ID_YES, None, None, Decision.ALLOW, None),
    ("user-id-pb", USER_CTX, None, ID_YES, PB_YES, None, Decision.ALLOW, None),
    (
        "user-id-pb-no",
        USER_CTX,
        None,
        ID_YES,
        PB_NO,
        None,
        Decision.IMPLICIT_DENY,
        "permissions boundary",
    ),
    ("user-no-id-pb", USER_CTX, None, ID_NO, PB_YES, None, Decision.IMPLICIT_DENY, "identity"),
    ("user-rp-user", USER_CTX, RP_USER, ID_NO, None, None, Decision.ALLOW, None),
    ("user-rp-user-pb-no", USER_CTX, RP_USER, ID_NO, PB_NO, None, Decision.ALLOW, None),
    ("user-rp-user-id-pb-no", USER_CTX, RP_USER, ID_YES, PB_NO, None, Decision.ALLOW, None),
    (
        "user-rp-account",
        USER_CTX,
        RP_ACCOUNT,
        ID_NO,
        None,
        None,
        Decision.IMPLICIT_DENY,
        "identity",
    ),
    ("user-rp-root", USER_CTX, RP_ROOT, ID_NO, None, None, Decision.IMPLICIT_DENY, "identity"),
    ("user-rp-account-id", USER_CTX, RP_ACCOUNT, ID_YES, None, None, Decision.ALLOW, None),
    ("user-rp-other", USER_CTX, RP_OTHER, ID_NO, None, None, Decision.IMPLICIT_DENY, "identity"),
    ("user-rp-star", USER_CTX, RP_STAR, ID_NO, None, None, Decision.ALLOW, None),
    ("role-id", ROLE_CTX, None, ID_YES, None, None, Decision.ALLOW, None),
    ("role-id-pb-sp", ROLE_CTX, None, ID_YES, PB_YES, SP_YES, Decision.ALLOW, None),
    (
        "role-id-pb-sp-no",
        ROLE_CTX,
        None,
        ID_YES,
        PB_YES,
        SP_NO,
        Decision.IMPLICIT_DENY,
        "session policy",
    ),
    (
        "role-id-pb-no-sp",
        ROLE_CTX,
        None,
        ID_YES,
        PB_NO,
        SP_YES,
        Decision.IMPLICIT_DENY,
        "permissions boundary",
    ),
    ("role-rp-role", ROLE_CTX, RP_ROLE, ID_NO, None, None, Decision.ALLOW, None),
    (
        "role-rp-role-pb-no",
        ROLE_CTX,
        RP_ROLE,
        ID_NO,
        PB_NO,
        None,
        Decision.IMPLICIT_DENY,
        "permissions boundary",
    ),
    (
        "role-rp-role-sp-no",
        ROLE_CTX,
        RP_ROLE,
        ID_NO,
        PB_YES,
        SP_NO,
        Decision.IMPLICIT_DENY,
        "session policy",
    ),
    ("role-rp-role-pb-sp", ROLE_CTX, RP_ROLE, ID_NO, PB_YES, SP_YES, Decision.ALLOW, None),
    ("role-rp-session", ROLE_CTX, RP_SESSION, ID_NO, PB_NO, SP_NO, Decision.ALLOW, None),
    ("role-rp-user", ROLE_CTX, RP_USER, ID_NO, None, None, Decision.IMPLICIT_DENY, "identity"),
    ("fed-id-sp", FED_CTX, None, ID_YES, None, SP_YES, Decision.ALLOW, None),
    ("fed-id-no-sp", FED_CTX, None, ID_YES, None, None, Decision.IMPLICIT_DENY, "session policy"),
    ("fed-rp-fed", FED_CTX, RP_FED, ID_NO, PB_NO, SP_NO, Decision.ALLOW, None),
    ("fed-rp-parent", FED_CTX, RP_USER, ID_NO, PB_YES, SP_YES, Decision.ALLOW, None),
    (
        "fed-rp-parent-pb-no",
        FED_CTX,
        RP_USER,
        ID_NO,
        PB_NO,
        SP_YES,
        Decision.IMPLICIT_DENY,
        "permissions boundary",
    ),
    (
        "fed-rp-parent-no-sp",
        FED_CTX,
        RP_USER,
        ID_NO,
        None,
        None,
        Decision.IMPLICIT_DENY,
        "session policy",
    ),
    (
        "deny-in-rp",
        USER_CTX,
        rp({"AWS": USER}, "Deny", "RpDeny"),
        ID_YES,
        None,
        None,
        Decision.EXPLICIT_DENY,
        "resource policy",
    ),
    (
        "deny-in-pb",
        USER_CTX,
        None,
        ID_YES,
        policy(allow(action="*"), deny(sid="PbDeny")),
        None,
        Decision.EXPLICIT_DENY,
        "permissions boundary",
    ),
    (
        "deny-in-sp",
        ROLE_CTX,
        RP_SESSION,
        ID_YES,
        None,
        policy(deny(action="s3:*", sid="SpDeny")),
        Decision.EXPLICIT_DENY,
        "session policy",
    ),
    (
        "deny-in-id-beats-rp",
        USER_CTX,
        RP_USER,
        policy(deny(sid="IdDeny")),
        None,
        None,
        Decision.EXPLICIT_DENY,
        "identity",
    ),
]


@pytest.mark.parametrize(
    ("caller", "resource", "identity", "boundary", "session", "decision", "layer"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_request_decision_table(
    caller: RequestContext,
    resource: CompiledPolicy | None,
    identity: CompiledPolicy,
    boundary: CompiledPolicy | None,
    session: CompiledPolicy | None,
    decision: Decision,
    layer: str | None,
) -> None:
    result = evaluate_request(
        caller,
        identity=[("id", identity)],
        boundary=_opt(boundary, "pb"),
        session=None if session is None else [("sp", session)],
        resource_policy=_opt(resource, "rp"),
    )
    assert result.decision is decision
    assert result.layer == layer
    if decision is Decision.EXPLICIT_DENY:
        assert all(m.effect == "Deny" for m in result.matched) and result.matched
    if decision is Decision.ALLOW:
        assert result.matched and all(m.effect == "Allow" for m in result.matched)


def test_allow_lists_statements_of_every_layer() -> None:
    result = evaluate_request(
        ROLE_CTX, identity=[("id", ID_YES)], boundary=("pb", PB_YES), session=[("sp", SP_YES)]
    )
    assert [(m.policy_id, m.sid) for m in result.matched] == [
        ("id", "Id"),
        ("pb", "Pb"),
        ("sp", "Sp"),
    ]


def test_session_policy_never_widens_a_role() -> None:
    # security D1: a role allowing only iam:ListRoles plus a session policy allowing iam:*
    role = policy(allow(action="iam:ListRoles", sid="Role"))
    session = policy(allow(action="iam:*", sid="Session"))
    create = ctx(action="iam:CreateUser", resource="*", principal=SESSION, issuer_arn=ROLE)
    listing = ctx(action="iam:ListRoles", resource="*", principal=SESSION, issuer_arn=ROLE)
    denied = evaluate_request(create, identity=[("role", role)], session=[("s", session)])
    assert (denied.decision, denied.layer) == (Decision.IMPLICIT_DENY, "identity")
    allowed = evaluate_request(listing, identity=[("role", role)], session=[("s", session)])
    assert allowed.decision is Decision.ALLOW


_PATTERNS = ["iam:*", "iam:List*", "iam:ListRoles", "iam:Get*", "s3:*", "*", "iam:?etUser"]
_ACTIONS = ["iam:ListRoles", "iam:ListUsers", "iam:GetUser", "iam:CreateUser", "s3:GetObject"]


@settings(max_examples=200, deadline=None)
@given(
    role_patterns=st.lists(st.sampled_from(_PATTERNS), min_size=1, max_size=3),
    session_patterns=st.lists(st.sampled_from(_PATTERNS), min_size=1, max_size=3),
    action=st.sampled_from(_ACTIONS),
)
def test_session_policy_intersects(
    role_patterns: list[str], session_patterns: list[str], action: str
) -> None:
    role = policy(allow(action=role_patterns))
    session = policy(allow(action=session_patterns))
    request = ctx(action=action, resource="*", principal=SESSION, issuer_arn=ROLE)
    scoped = evaluate_request(request, identity=[("r", role)], session=[("s", session)]).allowed
    role_only = evaluate_request(request, identity=[("r", role)]).allowed
    session_only = evaluate_statements([("s", session)], request).allowed
    assert scoped == (role_only and session_only)


def test_root_is_allowed_in_its_account_unless_denied() -> None:
    root = ctx(principal=ROOT)
    assert evaluate_request(root).decision is Decision.ALLOW
    denied = evaluate_request(root, resource_policy=("rp", rp("*", "Deny", "NoOne")))
    assert denied.decision is Decision.EXPLICIT_DENY
    assert sids(denied) == ["NoOne"]
    elsewhere = evaluate_request(root, resource_account=B)
    assert (elsewhere.decision, elsewhere.layer) == (Decision.IMPLICIT_DENY, "identity")


# -- cross-account (§8.4) -------------------------------------------------------------------------

CROSS: list[
    tuple[str, RequestContext, CompiledPolicy | None, CompiledPolicy, Decision, str | None]
] = [
    ("rp-account-id", USER_CTX, RP_ACCOUNT, ID_YES, Decision.ALLOW, None),
    ("rp-user-id", USER_CTX, RP_USER, ID_YES, Decision.ALLOW, None),
    ("rp-user-no-id", USER_CTX, RP_USER, ID_NO, Decision.IMPLICIT_DENY, "identity"),
    ("rp-star-no-id", USER_CTX, RP_STAR, ID_NO, Decision.IMPLICIT_DENY, "identity"),
    ("no-rp", USER_CTX, None, ID_YES, Decision.IMPLICIT_DENY, "resource policy"),
    ("rp-other", USER_CTX, RP_OTHER, ID_YES, Decision.IMPLICIT_DENY, "resource policy"),
    ("rp-role", ROLE_CTX, RP_ROLE, ID_YES, Decision.ALLOW, None),
    (
        "rp-deny",
        USER_CTX,
        rp({"AWS": A}, "Deny", "X"),
        ID_YES,
        Decision.EXPLICIT_DENY,
        "resource policy",
    ),
]


@pytest.mark.parametrize(
    ("caller", "resource", "identity", "decision", "layer"),
    [pytest.param(*row[1:], id=row[0]) for row in CROSS],
)
def test_cross_account(
    caller: RequestContext,
    resource: CompiledPolicy | None,
    identity: CompiledPolicy,
    decision: Decision,
    layer: str | None,
) -> None:
    result = evaluate_request(
        caller,
        identity=[("id", identity)],
        resource_policy=_opt(resource, "rp"),
        resource_account=B,
    )
    assert (result.decision, result.layer) == (decision, layer)


# -- trust policies (§4.4, §8.5) ------------------------------------------------------------------


def trust(*statements: dict[str, object]) -> CompiledPolicy:
    return policy(*statements, kind=PolicyKind.TRUST)


def trusts(
    principal: object, action: str = "sts:AssumeRole", sid: str = "Trust", **extra: object
) -> dict[str, object]:
    return {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": action, **extra}


ASSUME = "sts:AssumeRole"
TARGET = f"arn:aws:iam::{A}:role/target"


def assume(
    principal: str = USER,
    account: str = A,
    keys: dict[str, ContextValue] | None = None,
    issuer_arn: str | None = None,
) -> RequestContext:
    return ctx(ASSUME, TARGET, principal, account, keys, issuer_arn=issuer_arn)


ALLOW_ASSUME = policy(allow(action="sts:AssumeRole", resource=TARGET))


@pytest.mark.parametrize(
    ("trust_policy", "caller", "identity", "resource_account", "decision"),
    [
        pytest.param(
            trust(trusts({"AWS": USER})), assume(), ID_NO, A, Decision.ALLOW, id="names-user"
        ),
        pytest.param(
            trust(trusts({"AWS": A})),
            assume(),
            ID_NO,
            A,
            Decision.IMPLICIT_DENY,
            id="names-account-no-id",
        ),
        pytest.param(
            trust(trusts({"AWS": A})),
            assume(),
            ALLOW_ASSUME,
            A,
            Decision.ALLOW,
            id="names-account-id",
        ),
        pytest.param(
            trust(trusts({"AWS": OTHER_USER})),
            assume(),
            ALLOW_ASSUME,
            A,
            Decision.IMPLICIT_DENY,
            id="names-other",
        ),
        pytest.param(
            trust(trusts({"AWS": ROLE})),
            assume(SESSION, issuer_arn=ROLE),
            ID_NO,
            A,
            Decision.ALLOW,
            id="names-role",
        ),
        pytest.param(
            trust(trusts({"AWS": f"arn:aws:iam::{A}:role/app"})),
            assume(SESSION, issuer_arn=ROLE),
            ID_NO,
            A,
            Decision.IMPLICIT_DENY,
            id="role-path-matters",
        ),
        pytest.param(
            trust(trusts({"AWS": ROLE})),
            assume(SESSION, keys={"aws:PrincipalArn": ROLE}),
            ID_NO,
            A,
            Decision.ALLOW,
            id="role-from-principal-arn-key",
        ),
        pytest.param(
            trust(trusts({"AWS": SESSION})),
            assume(SESSION, issuer_arn=ROLE),
            ID_NO,
            A,
            Decision.ALLOW,
            id="names-session",
        ),
        pytest.param(
            trust(trusts({"AWS": A})),
            assume(account=B, principal=f"arn:aws:iam::{B}:user/x"),
            ALLOW_ASSUME,
            B,
            Decision.IMPLICIT_DENY,
            id="other-account-caller",
        ),
        pytest.param(
            trust(trusts({"AWS": B})),
            assume(account=B, principal=f"arn:aws:iam::{B}:user/x"),
            ALLOW_ASSUME,
            A,
            Decision.ALLOW,
            id="cross-account",
        ),
        pytest.param(
            trust(trusts({"AWS": B})),
            assume(account=B, principal=f"arn:aws:iam::{B}:user/x"),
            ID_NO,
            A,
            Decision.IMPLICIT_DENY,
            id="cross-account-no-id",
        ),
        pytest.param(
            trust(trusts({"AWS": f"arn:aws:iam::{B}:user/x"})),
            assume(account=B, principal=f"arn:aws:iam::{B}:user/x"),
            ID_NO,
            A,
            Decision.IMPLICIT_DENY,
            id="cross-account-needs-id",
        ),
        pytest.param(
            trust(trusts({"AWS": USER}, action="sts:TagSession")),
            assume(),
            ID_NO,
            A,
            Decision.IMPLICIT_DENY,
            id="other-action",
        ),
        pytest.param(
            trust(
                trusts({"AWS": USER}, Condition={"StringEquals": {"sts:ExternalId": "Secret-1"}})
            ),
            assume(keys={"sts:ExternalId": "Secret-1"}),
            ID_NO,
            A,
            Decision.ALLOW,
            id="external-id",
        ),
        pytest.param(
            trust(
                trusts({"AWS": USER}, Condition={"StringEquals": {"sts:ExternalId": "Secret-1"}})
            ),
            assume(keys={"sts:ExternalId": "secret-1"}),
            ID_NO,
            A,
            Decision.IMPLICIT_DENY,
            id="external-id-case",
        ),
        pytest.param(
            trust(
                trusts({"AWS": USER}, Condition={"StringEquals": {"sts:ExternalId": "Secret-1"}})
            ),
            assume(),
            ID_NO,
            A,
            Decision.IMPLICIT_DENY,
            id="external-id-missing",
        ),
        pytest.param(
            trust(
                trusts({"AWS": A}),
                {"Sid": "No", "Effect": "Deny", "Principal": {"AWS": USER}, "Action": "sts:*"},
            ),
            assume(),
            ALLOW_ASSUME,
            A,
            Decision.EXPLICIT_DENY,
            id="deny",
        ),
    ],
)
def test_assume_role(
    trust_policy: CompiledPolicy,
    caller: RequestContext,
    identity: CompiledPolicy,
    resource_account: str,
    decision: Decision,
) -> None:
    result = evaluate_request(
        caller,
        identity=[("id", identity)],
        resource_policy=("trust", trust_policy),
        resource_account=resource_account,
        resource_policy_required=True,
    )
    assert result.decision is decision


def test_trust_is_required_even_when_identity_allows() -> None:
    result = evaluate_request(
        assume(),
        identity=[("id", ALLOW_ASSUME)],
        resource_policy=("trust", trust(trusts({"AWS": OTHER_USER}))),
        resource_policy_required=True,
    )
    assert (result.decision, result.layer) == (Decision.IMPLICIT_DENY, "resource policy")


GITHUB = f"arn:aws:iam::{A}:oidc-provider/token.actions.githubusercontent.com"
WEB_TRUST = trust(
    trusts(
        {"Federated": GITHUB},
        action="sts:AssumeRoleWithWebIdentity",
        sid="Github",
        Condition={
            "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
            "StringLike": {"token.actions.githubusercontent.com:sub": "repo:org/app:*"},
        },
    )
)


@pytest.mark.parametrize(
    ("provider", "sub", "decision"),
    [
        (GITHUB, "repo:org/app:ref:refs/heads/main", Decision.ALLOW),
        (GITHUB, "repo:org/other:ref:refs/heads/main", Decision.IMPLICIT_DENY),
        (
            f"arn:aws:iam::{A}:oidc-provider/accounts.google.com",
            "repo:org/app:x",
            Decision.IMPLICIT_DENY,
        ),
    ],
)
def test_web_identity_trust(provider: str, sub: str, decision: Decision) -> None:
    request = RequestContext(
        "sts:AssumeRoleWithWebIdentity",
        TARGET,
        "",
        A,
        normalize_keys(
            {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": sub,
            }
        ),
        caller=CallerKind.FEDERATED,
        federated_provider=provider,
    )
    result = evaluate_trust(request, ("trust", WEB_TRUST))
    assert result.decision is decision
    assert sids(result) == (["Github"] if decision is Decision.ALLOW else [])


@pytest.mark.parametrize(
    ("caller", "decision"),
    [
        (
            ctx(action=ASSUME, principal="ec2.amazonaws.com", caller=CallerKind.SERVICE),
            Decision.ALLOW,
        ),
        (
            ctx(
                action=ASSUME, principal="", service="EC2.amazonaws.com", caller=CallerKind.SERVICE
            ),
            Decision.ALLOW,
        ),
        (
            ctx(action=ASSUME, principal="lambda.amazonaws.com", caller=CallerKind.SERVICE),
            Decision.IMPLICIT_DENY,
        ),
        (ctx(action=ASSUME, principal="ec2.amazonaws.com"), Decision.IMPLICIT_DENY),
    ],
)
def test_service_principal(caller: RequestContext, decision: Decision) -> None:
    result = evaluate_trust(caller, ("t", trust(trusts({"Service": "ec2.amazonaws.com"}))))
    assert result.decision is decision


def test_star_principal_matches_anonymous() -> None:
    anonymous = ctx(action=ASSUME, principal="", account="")
    assert evaluate_trust(anonymous, ("t", trust(trusts("*")))).decision is Decision.ALLOW
    assert (
        evaluate_trust(anonymous, ("t", trust(trusts({"AWS": A})))).decision
        is Decision.IMPLICIT_DENY
    )


NOT_PRINCIPAL = policy(
    {"Sid": "All", "Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"},
    {
        "Sid": "Fence",
        "Effect": "Deny",
        "NotPrincipal": {"AWS": [USER, SESSION, A]},
        "Action": "s3:*",
        "Resource": "*",
    },
    kind=PolicyKind.RESOURCE,
)


@pytest.mark.parametrize(
    ("caller", "decision"),
    [
        pytest.param(ctx(), Decision.ALLOW, id="listed-user"),
        pytest.param(
            ctx(principal=OTHER_USER),
            Decision.EXPLICIT_DENY,
            id="account-listed-does-not-exempt-user",
        ),
        pytest.param(ctx(principal=ROOT), Decision.ALLOW, id="root-exempt-by-account"),
        pytest.param(ctx(principal=SESSION, issuer_arn=ROLE), Decision.ALLOW, id="listed-session"),
        pytest.param(
            ctx(principal=f"arn:aws:sts::{A}:assumed-role/app/s2", issuer_arn=ROLE),
            Decision.EXPLICIT_DENY,
            id="other-session",
        ),
        pytest.param(ctx(has_boundary=True), Decision.EXPLICIT_DENY, id="bounded-principal"),
    ],
)
def test_not_principal(caller: RequestContext, decision: Decision) -> None:
    result = evaluate_trust(caller, ("bucket", NOT_PRINCIPAL))
    assert result.decision is decision


# -- the simulator's unspecified resource (§4.2) --------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "decision"),
    [
        (allow(resource="arn:aws:s3:::b/*"), Decision.ALLOW),
        (
            {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::b/*"},
            Decision.ALLOW,
        ),
        ({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "*"}, Decision.IMPLICIT_DENY),
        (deny(resource="arn:aws:s3:::b/*"), Decision.IMPLICIT_DENY),
        (deny(resource=["arn:aws:s3:::b/*", "*"]), Decision.EXPLICIT_DENY),
        (
            {"Effect": "Deny", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::b/*"},
            Decision.EXPLICIT_DENY,
        ),
        ({"Effect": "Deny", "Action": "s3:GetObject", "NotResource": "*"}, Decision.IMPLICIT_DENY),
    ],
)
def test_unspecified_resource(statement: dict[str, object], decision: Decision) -> None:
    compiled = policy(statement, allow(action="ec2:*"))
    result = evaluate_statements([("p", compiled)], ctx(resource="*", resource_unspecified=True))
    assert result.decision is decision


# -- purity ---------------------------------------------------------------------------------------


def test_engine_imports_no_io_libraries() -> None:
    code = (
        "import sys\n"
        "import broker.core.policy\n"
        "bad = sorted(m for m in ('aiohttp', 'redis', 'sqlite3') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
