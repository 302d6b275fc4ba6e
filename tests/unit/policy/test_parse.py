"""Parsing and validation of policy documents (spec §2, §3): findings and IAM's messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy import (
    MAX_WILDCARDS,
    Condition,
    Policy,
    PolicyKind,
    Principal,
    PrincipalType,
    Statement,
    parse_policy,
    policy_size,
    render_policy,
)
from broker.errors import MalformedPolicyError

ACCT = "123456789012"
SYNTAX = "Syntax errors in policy."
VERSION = "Policy document must be version 2012-10-17 or greater."
LEGACY = "The policy failed legacy parsing"
VENDOR = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
SID_FORMAT = (
    "Statement IDs (SID) must be alpha-numeric. "
    "Check that your input satisfies the regular expression [0-9A-Za-z]*"
)
TRUST_ACTION = (
    "Trust Policy statement actions can only be sts:AssumeRole, sts:AssumeRoleWithSAML, "
    "and sts:AssumeRoleWithWebIdentity"
)
IAM_PATH = (
    'IAM resource path must either be "*" or start with user/, federated-user/, role/, group/, '
    "instance-profile/, mfa/, server-certificate/, policy/, sms-mfa/, saml-provider/, "
    "oidc-provider/, report/, access-report/."
)
SID_UNIQUE = "Statement IDs (SID) in a single policy must be unique."
NO_ACTIONS = "Policy statement must contain actions."
NO_RESOURCES = "Policy statement must contain resources."
NO_PRINCIPAL = "Policy document should not specify a principal."
WILDCARDS = f"A pattern in the policy has more than {MAX_WILDCARDS} wildcard characters."
_DROP = object()
_V12 = "2012-10-17"


def s(**fields: object) -> dict[str, object]:
    """A statement: Allow s3:* on * unless overridden; a field set to _DROP is left out."""
    body: dict[str, object] = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not _DROP}


def t(**fields: object) -> dict[str, object]:
    """A trust statement: Allow sts:AssumeRole to the account unless overridden."""
    base: dict[str, object] = {
        "Principal": {"AWS": ACCT},
        "Action": "sts:AssumeRole",
        "Resource": _DROP,
    }
    return s(**{**base, **fields})


def d(*statements: dict[str, object], version: object = _V12, **top: object) -> str:
    """A document of ``statements`` (one statement is written as an object)."""
    doc: dict[str, object] = {}
    if version is not _DROP:
        doc["Version"] = version
    doc.update(top)
    doc["Statement"] = statements[0] if len(statements) == 1 else list(statements)
    return json.dumps(doc)


def cond(block: object) -> dict[str, object]:
    return s(Condition=block)


def _error(
    text: str, kind: PolicyKind = PolicyKind.IDENTITY, managed: bool = False
) -> MalformedPolicyError:
    with pytest.raises(MalformedPolicyError) as info:
        parse_policy(text, kind, managed=managed)
    err = info.value
    assert err.code == "MalformedPolicyDocument"
    assert err.status == 400
    assert err.findings, "an error always carries its findings"
    assert err.message == err.findings[0].detail
    return err


# -- documents IAM rejects, with the message it gives ---------------------------------------------

IDN, T, S, R = PolicyKind.IDENTITY, PolicyKind.TRUST, PolicyKind.SESSION, PolicyKind.RESOURCE
ROOT = f"arn:aws:iam::{ACCT}:root"
GOOD = d(s())

INVALID: list[tuple[str, PolicyKind, bool, str, str]] = [
    # (id, kind, managed, document, message)
    # 1. syntax
    ("not-json", IDN, False, "{", SYNTAX),
    ("trailing-garbage", IDN, False, GOOD + "x", SYNTAX),
    ("empty-text", IDN, False, "", SYNTAX),
    ("top-level-array", IDN, False, "[]", SYNTAX),
    ("top-level-string", IDN, False, '"policy"', SYNTAX),
    ("unknown-top-key", IDN, False, d(s(), Foo=1), SYNTAX),
    ("lower-case-key", IDN, False, d(s(Effect=_DROP, effect="Allow")), SYNTAX),
    ("unknown-statement-key", IDN, False, d(s(Resources="*")), SYNTAX),
    ("missing-statement", IDN, False, '{"Version": "2012-10-17"}', SYNTAX),
    ("empty-statement-list", IDN, False, '{"Statement": []}', SYNTAX),
    ("statement-number", IDN, False, '{"Statement": [1]}', SYNTAX),
    ("statement-string", IDN, False, '{"Statement": "s"}', SYNTAX),
    ("missing-effect", IDN, False, d(s(Effect=_DROP)), SYNTAX),
    ("effect-number", IDN, False, d(s(Effect=1)), SYNTAX),
    ("effect-permit", IDN, False, d(s(Effect="Permit")), SYNTAX),
    ("action-and-notaction", IDN, False, d(s(NotAction="s3:Get*")), SYNTAX),
    ("resource-and-notresource", IDN, False, d(s(NotResource="*")), SYNTAX),
    ("action-object", IDN, False, d(s(Action={"a": 1})), SYNTAX),
    ("action-nested-list", IDN, False, d(s(Action=[["s3:*"]])), SYNTAX),
    ("action-number", IDN, False, d(s(Action=[5])), SYNTAX),
    ("resource-object", IDN, False, d(s(Resource={})), SYNTAX),
    ("condition-list", IDN, False, d(cond([])), SYNTAX),
    ("unknown-operator", IDN, False, d(cond({"StringEqualz": {"aws:a": "b"}})), SYNTAX),
    ("lower-case-operator", IDN, False, d(cond({"stringequals": {"aws:a": "b"}})), SYNTAX),
    ("null-if-exists", IDN, False, d(cond({"NullIfExists": {"aws:a": "true"}})), SYNTAX),
    ("operator-not-object", IDN, False, d(cond({"StringEquals": "x"})), SYNTAX),
    ("value-object", IDN, False, d(cond({"StringEquals": {"aws:a": {"b": "c"}}})), SYNTAX),
    ("value-null", IDN, False, d(cond({"StringEquals": {"aws:a": None}})), SYNTAX),
    ("value-nested-list", IDN, False, d(cond({"StringEquals": {"aws:a": [["b"]]}})), SYNTAX),
    ("sid-number", IDN, False, d(s(Sid=1)), SYNTAX),
    ("id-number", IDN, False, d(s(), Id=7), SYNTAX),
    ("bad-version", IDN, False, d(s(), version="2012-10-18"), SYNTAX),
    ("version-number", IDN, False, d(s(), version=2012), SYNTAX),
    ("duplicate-key", IDN, False, GOOD[:-2] + ', "Action": "ec2:*"}}', SYNTAX),
    ("nan", IDN, False, d(cond({"NumericEquals": {"aws:a": 7}})).replace("7", "NaN"), SYNTAX),
    ("too-deep", IDN, False, d(cond({"StringEquals": {"aws:a": [[[[[[["x"]]]]]]]}})), SYNTAX),
    ("very-deep", IDN, False, "[" * 100_000 + "]" * 100_000, SYNTAX),
    ("syntax-beats-version", IDN, True, '{"Statement": []}', SYNTAX),
    ("principal-map-empty", T, False, d(t(Principal={})), SYNTAX),
    ("both-principal", T, False, d(t(Principal="*", NotPrincipal="*")), SYNTAX),
    # 2. version (managed policies only)
    ("managed-no-version", IDN, True, d(s(), version=_DROP), VERSION),
    ("managed-2008", IDN, True, d(s(), version="2008-10-17"), VERSION),
    # 3. legacy parsing
    ("effect-lower-case", IDN, False, d(s(Effect="allow")), LEGACY),
    ("effect-upper-case", IDN, False, d(s(Effect="DENY")), LEGACY),
    (
        "date-month-13",
        IDN,
        False,
        d(cond({"DateGreaterThan": {"aws:CurrentTime": "2024-13-01"}})),
        LEGACY,
    ),
    (
        "date-word",
        IDN,
        False,
        d(cond({"DateLessThanIfExists": {"aws:CurrentTime": "yesterday"}})),
        LEGACY,
    ),
    (
        "date-variable",
        IDN,
        False,
        d(cond({"ForAnyValue:DateEquals": {"aws:CurrentTime": "${aws:CurrentTime}"}})),
        LEGACY,
    ),
    ("date-bool", IDN, False, d(cond({"DateEquals": {"aws:CurrentTime": True}})), LEGACY),
    ("short-arn-empty-field", IDN, False, d(s(Resource="arn:aws:s3::bucket")), LEGACY),
    ("arn-empty-service", IDN, False, d(s(Resource="arn:aws:::123456789012:x")), LEGACY),
    # 4. Sid
    ("sid-duplicate", IDN, False, d(s(Sid="A"), s(Sid="A", Action="ec2:*")), SID_UNIQUE),
    ("sid-space", IDN, False, d(s(Sid="my sid")), SID_FORMAT),
    ("sid-unicode", S, False, d(s(Sid="caf\u00e9")), SID_FORMAT),
    ("sid-in-trust", T, False, d(t(Sid="a-b")), SID_FORMAT),
    # 5. actions
    ("no-action", IDN, False, d(s(Action=_DROP)), NO_ACTIONS),
    ("empty-action-list", IDN, False, d(s(Action=[])), NO_ACTIONS),
    ("empty-notaction-list", IDN, False, d(s(Action=_DROP, NotAction=[])), NO_ACTIONS),
    # 6. resources
    ("no-resource", IDN, False, d(s(Resource=_DROP)), NO_RESOURCES),
    ("empty-resource-list", IDN, False, d(s(Resource=[])), NO_RESOURCES),
    ("session-no-resource", S, False, d(s(Resource=_DROP)), NO_RESOURCES),
    (
        "resource-no-colon",
        IDN,
        False,
        d(s(Resource="bucket")),
        'Resource bucket must be in ARN format or "*".',
    ),
    ("resource-empty", IDN, False, d(s(Resource="")), 'Resource  must be in ARN format or "*".'),
    (
        "resource-partition",
        IDN,
        False,
        d(s(Resource="arn:aws-xx:s3:::b")),
        'Partition "aws-xx" is not valid for resource "arn:aws-xx:s3:::b".',
    ),
    (
        "resource-partition-short",
        IDN,
        False,
        d(s(Resource="arn:foo:sqs")),
        'Partition "foo" is not valid for resource "arn:foo:sqs:*:*:*".',
    ),
    (
        "resource-vendor",
        IDN,
        False,
        d(s(Resource="arn:aws")),
        "Resource vendor must be fully qualified and cannot contain regexes.",
    ),
    (
        "s3-region",
        IDN,
        False,
        d(s(Resource="arn:aws:s3:us-east-1::b")),
        "Resource arn:aws:s3:us-east-1::b can not contain region information.",
    ),
    (
        "iam-region",
        IDN,
        False,
        d(s(Resource="arn:aws:iam:us-east-1:1:user/x")),
        "IAM resource arn:aws:iam:us-east-1:1:user/x cannot contain region information.",
    ),
    ("iam-path", IDN, False, d(s(Resource="arn:aws:iam::123456789012:bogus/x")), IAM_PATH),
    ("iam-root-resource", IDN, False, d(s(Resource=ROOT)), IAM_PATH),
    (
        "notresource-bad",
        IDN,
        False,
        d(s(Effect="Deny", Resource=_DROP, NotResource="bucket")),
        'Resource bucket must be in ARN format or "*".',
    ),
    # 7. action prefixes
    ("action-no-colon", IDN, False, d(s(Action="s3GetObject")), VENDOR),
    ("action-empty", IDN, False, d(s(Action="")), VENDOR),
    ("action-empty-vendor", IDN, False, d(s(Action=":GetObject")), VENDOR),
    (
        "action-two-colons",
        IDN,
        False,
        d(s(Action="s3:Get:Object")),
        "Actions/Condition can contain only one colon.",
    ),
    ("action-bad-vendor", IDN, False, d(s(Action="s3 x:GetObject")), "Vendor s3 x is not valid"),
    ("action-wildcard-vendor", IDN, False, d(s(Action="*:GetObject")), "Vendor * is not valid"),
    ("notaction-bad", IDN, False, d(s(Action=_DROP, NotAction=["s3:*", "bad"])), VENDOR),
    ("condition-key-no-vendor", IDN, False, d(cond({"StringEquals": {"sourceip": "x"}})), VENDOR),
    # 8. type-specific
    ("identity-principal", IDN, False, d(s(Principal="*")), NO_PRINCIPAL),
    (
        "session-notprincipal",
        S,
        False,
        d(s(Effect="Deny", NotPrincipal={"AWS": ACCT})),
        NO_PRINCIPAL,
    ),
    ("trust-resource", T, False, d(t(Resource="*")), "Has prohibited field Resource."),
    ("trust-notresource", T, False, d(t(NotResource="*")), "Has prohibited field NotResource."),
    ("trust-no-principal", T, False, d(t(Principal=_DROP)), "Missing required field Principal."),
    (
        "trust-notprincipal",
        T,
        False,
        d(t(Effect="Deny", Principal=_DROP, NotPrincipal={"AWS": ACCT})),
        "Has prohibited field NotPrincipal.",
    ),
    ("trust-action", T, False, d(t(Action="s3:GetObject")), TRUST_ACTION),
    ("trust-action-wildcard", T, False, d(t(Action="sts:Get*")), TRUST_ACTION),
    (
        "principal-partial-wildcard",
        T,
        False,
        d(t(Principal={"AWS": f"arn:aws:iam::{ACCT}:user/*"})),
        f'Invalid principal in policy: "AWS":"arn:aws:iam::{ACCT}:user/*"',
    ),
    (
        "principal-garbage",
        T,
        False,
        d(t(Principal={"AWS": "bob"})),
        'Invalid principal in policy: "AWS":"bob"',
    ),
    (
        "principal-short-account",
        T,
        False,
        d(t(Principal={"AWS": "12345"})),
        'Invalid principal in policy: "AWS":"12345"',
    ),
    (
        "principal-unknown-type",
        T,
        False,
        d(t(Principal={"User": "x"})),
        'Invalid principal in policy: "User":"x"',
    ),
    (
        "principal-bare-arn",
        T,
        False,
        d(t(Principal=ROOT)),
        f'Invalid principal in policy: "AWS":"{ROOT}"',
    ),
    (
        "principal-session-bad",
        T,
        False,
        d(t(Principal={"AWS": f"arn:aws:sts::{ACCT}:assumed-role/r"})),
        f'Invalid principal in policy: "AWS":"arn:aws:sts::{ACCT}:assumed-role/r"',
    ),
    (
        "principal-service-star",
        T,
        False,
        d(t(Principal={"Service": "*"})),
        'Invalid principal in policy: "Service":"*"',
    ),
    ("resource-policy-no-principal", R, False, d(s()), "Missing required field Principal."),
    # 9. wildcard limit
    (
        "too-many-wildcards",
        IDN,
        False,
        d(s(Resource="arn:aws:s3:::" + "*a" * (MAX_WILDCARDS + 1))),
        WILDCARDS,
    ),
    (
        "too-many-wildcards-like",
        IDN,
        False,
        d(cond({"StringLike": {"sts:ExternalId": "?" * (MAX_WILDCARDS + 1)}})),
        WILDCARDS,
    ),
]


@pytest.mark.parametrize(
    ("kind", "managed", "text", "message"),
    [pytest.param(k, m, text, msg, id=i) for i, k, m, text, msg in INVALID],
)
def test_invalid_documents(kind: PolicyKind, managed: bool, text: str, message: str) -> None:
    assert _error(text, kind, managed).message == message


def test_all_findings_are_collected_in_group_order() -> None:
    text = d(
        s(Sid="A", Effect="allow", Action="s3 x:Get", Resource="bucket"),
        s(Sid="A", Effect="Permit", Action=[]),
        version=_DROP,
    )
    err = _error(text, managed=True)
    assert [(f.code, f.path) for f in err.findings] == [
        ("syntax.bad-effect", "$.Statement[1].Effect"),
        ("version.required", "$.Version"),
        ("legacy.effect-case", "$.Statement[0].Effect"),
        ("sid.duplicate", "$.Statement[1].Sid"),
        ("action.missing", "$.Statement[1].Action"),
        ("resource.format", "$.Statement[0].Resource"),
        ("action.bad-vendor", "$.Statement[0].Action"),
    ]
    assert err.message == SYNTAX
    assert err.findings[5].detail == 'Resource bucket must be in ARN format or "*".'
    assert err.findings[6].detail == "Vendor s3 x is not valid"


ODD_TEXTS = ["\ufeff{}", "\x00", '{"Statement": ' + "{" * 5000, "1e999999", '"\\ud800"', "null"]


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_no_other_exception_escapes_for_odd_input(text: str) -> None:
    with pytest.raises(MalformedPolicyError):
        parse_policy(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_malformed(text: str) -> None:
    try:
        parse_policy(text)
    except MalformedPolicyError as err:
        assert err.findings


_KEYS = ["Version", "Statement", "Effect", "Action", "Resource", "Condition", "Sid", "x"]
_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    st.sampled_from(["*", "s3:*", "Allow"]),
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_any_json_parses_or_raises_malformed(value: object) -> None:
    for kind in PolicyKind:
        try:
            parse_policy(json.dumps(value), kind)
        except MalformedPolicyError as err:
            assert err.findings


# -- documents IAM accepts ----------------------------------------------------------------------

ADMIN_TRUST = {
    "AWS": [
        ACCT,
        ROOT,
        f"arn:aws:iam::{ACCT}:user/p/alice",
        f"arn:aws:iam::{ACCT}:role/r",
        f"arn:aws:sts::{ACCT}:assumed-role/r/s",
        f"arn:aws:sts::{ACCT}:federated-user/f",
        "AROAEXAMPLEEXAMPLE123",
    ]
}
GITHUB = "token.actions.githubusercontent.com"
OIDC_TRUST = t(
    Principal={"Federated": f"arn:aws:iam::{ACCT}:oidc-provider/{GITHUB}"},
    Action="sts:AssumeRoleWithWebIdentity",
    Condition={
        "StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com"},
        "StringLike": {f"{GITHUB}:sub": "repo:org/*"},
    },
)
MFA_DENY = t(
    Sid="Deny1",
    Effect="Deny",
    Principal="*",
    Condition={"Bool": {"aws:MultiFactorAuthPresent": "false"}},
)
LITERALS = {
    "Bool": {"aws:SecureTransport": True},
    "NumericLessThan": {"s3:max-keys": 10},
    "DateLessThan": {"aws:EpochTime": 1714564800},
}
FENCE = s(Sid="any sid", Effect="Deny", NotPrincipal={"AWS": f"arn:aws:iam::{ACCT}:user/a"})
PRETTY = json.dumps(json.loads(GOOD), indent=4) + "\n"
IAM_WILD = ["arn:aws:iam::*:*", "arn:aws:iam::*:u*", "arn:aws:iam::*:role*"]
ACCESS_POINT = "arn:aws:s3:us-west-2:123456789012:accesspoint/ap"
SELF = "arn:aws:iam::123456789012:user/${aws:username}"
TRUST_ACTIONS = ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]

VALID: list[tuple[str, PolicyKind, bool, str]] = [
    ("minimal", IDN, True, d(s(Action="s3:GetObject", Resource="arn:aws:s3:::b/*"))),
    ("empty-condition", IDN, False, d(cond({}))),
    ("unknown-operator-empty", IDN, False, d(cond({"Whatever": {}}))),
    ("known-operator-empty", IDN, False, d(cond({"StringEquals": {}}))),
    (
        "set-operator-single",
        IDN,
        False,
        d(cond({"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}})),
    ),
    ("unknown-action-name", IDN, False, d(s(Action="fsx:ListBucket"))),
    ("service-mismatch", IDN, False, d(s(Action="ec2:RunInstances", Resource="arn:aws:s3:::b"))),
    ("arn-and-star", IDN, False, d(s(Resource=["arn:aws:s3:::b", "*"]))),
    ("json-literals", IDN, False, d(cond(LITERALS))),
    ("empty-value-list", IDN, False, d(cond({"StringEquals": {"aws:a": []}}))),
    ("pretty-printed", IDN, False, PRETTY),
    ("variable-in-resource", IDN, True, d(s(Action="iam:*", Resource=SELF))),
    ("iam-wildcard-path", IDN, False, d(s(Action="iam:*", Resource=IAM_WILD))),
    ("short-pattern", IDN, False, d(s(Action="sqs:*", Resource="arn:aws:sqs:us-east-1:*"))),
    ("s3-access-point", IDN, False, d(s(Resource=ACCESS_POINT))),
    ("other-partition", IDN, False, d(s(Resource="arn:aws-cn:s3:::b"))),
    ("wildcard-partition", IDN, False, d(s(Resource="arn:*:s3:::b"))),
    ("inline-2008", IDN, False, d(s(), version="2008-10-17")),
    ("inline-no-version", IDN, False, d(s(), version=_DROP)),
    ("id-accepted", IDN, False, d(s(), Id="my-id")),
    ("empty-sids", IDN, False, d(s(Sid=""), s(Sid="", Action="ec2:*"))),
    ("action-with-space", IDN, False, d(s(Action="s3:Get Object"))),
    (
        "notaction-notresource",
        IDN,
        False,
        d(s(Action=_DROP, Resource=_DROP, NotAction="iam:*", NotResource="arn:aws:iam::*:*")),
    ),
    ("64-wildcards", IDN, False, d(s(Resource="arn:aws:s3:::" + "*a" * (MAX_WILDCARDS - 1)))),
    ("trust-aws", T, False, d(t(Principal=ADMIN_TRUST, Action=TRUST_ACTIONS))),
    ("trust-star", T, False, d(t(Principal="*", Action="sts:*"))),
    ("trust-service", T, False, d(t(Principal={"Service": "ec2.amazonaws.com"}))),
    ("trust-federated", T, False, d(OIDC_TRUST)),
    ("trust-wildcard-action", T, False, d(t(Principal={"AWS": "*"}, Action="sts:Assume*"))),
    ("trust-deny", T, False, d(MFA_DENY, t())),
    ("resource-notprincipal-deny", R, False, d(FENCE)),
]


@pytest.mark.parametrize(
    ("kind", "managed", "text"), [pytest.param(k, m, t, id=i) for i, k, m, t in VALID]
)
def test_valid_documents(kind: PolicyKind, managed: bool, text: str) -> None:
    policy = parse_policy(text, kind, managed=managed)
    assert policy.statements
    assert parse_policy(render_policy(policy), kind, managed=managed) == policy


def test_model_normalises_forms() -> None:
    text = d(
        s(
            Sid="One",
            Action="s3:GetObject",
            Condition={
                "Bool": {"aws:SecureTransport": True},
                "NumericLessThan": {"s3:max-keys": [10, 2.50]},
                "Whatever": {},
            },
        ),
        s(
            Effect="Deny",
            Action=_DROP,
            Resource=_DROP,
            NotAction=["iam:*", "sts:*"],
            NotResource=["arn:aws:s3:::b"],
        ),
    )
    policy = parse_policy(text)
    assert policy == Policy(
        "2012-10-17",
        None,
        (
            Statement(
                sid="One",
                effect="Allow",
                actions=("s3:GetObject",),
                resources=("*",),
                conditions=(
                    Condition("Bool", "aws:SecureTransport", ("true",)),
                    Condition("NumericLessThan", "s3:max-keys", ("10", "2.5")),
                ),
            ),
            Statement(
                sid=None,
                effect="Deny",
                not_actions=("iam:*", "sts:*"),
                not_resources=("arn:aws:s3:::b",),
            ),
        ),
    )
    assert policy.variables_enabled


def test_json_numbers_keep_their_spelling() -> None:
    raw = '{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", '
    raw += '"Condition": {"NumericEquals": {"s3:max-keys": [10, 2.50, -0.0, 1E3]}}}}'
    [condition] = parse_policy(raw).statements[0].conditions or ()
    assert condition.values == ("10", "2.50", "-0.0", "1E3")


def test_condition_absent_differs_from_empty() -> None:
    without = parse_policy(d(s()))
    empty = parse_policy(d(cond({})))
    assert without.statements[0].conditions is None
    assert empty.statements[0].conditions == ()


def test_principal_forms() -> None:
    star = parse_policy(d(t(Principal="*")), T)
    aws_star = parse_policy(d(t(Principal={"AWS": "*"})), T)
    mixed = parse_policy(d(t(Principal={"Service": "ec2.amazonaws.com", "AWS": [ACCT]})), T)
    assert star.statements[0].principals == (Principal(PrincipalType.ANY, "*"),)
    assert aws_star.statements[0].principals == (Principal(PrincipalType.AWS, "*"),)
    assert mixed.statements[0].principals == (
        Principal(PrincipalType.SERVICE, "ec2.amazonaws.com"),
        Principal(PrincipalType.AWS, ACCT),
    )
    for policy in (star, aws_star, mixed):
        assert parse_policy(render_policy(policy), T) == policy


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("", 0),
        ("{}", 2),
        ('{ "a" : 1 }', 7),
        ('{\n\t"a":\r\n 1}', 7),
        ('{"a b": 1}', 8),
    ],
)
def test_policy_size(text: str, size: int) -> None:
    assert policy_size(text) == size


# -- render/parse round trip ----------------------------------------------------------------------

_ACTIONS = st.lists(
    st.sampled_from(["s3:GetObject", "iam:*", "*", "ec2:Describe*", "sts:Get?"]),
    min_size=1,
    max_size=3,
)
_RESOURCES = st.lists(
    st.sampled_from(
        [
            "*",
            "arn:aws:s3:::b/*",
            "arn:aws:iam::123456789012:user/${aws:username}",
            "arn:aws:sqs:us-east-1:*",
        ]
    ),
    min_size=1,
    max_size=3,
)
_CONDITION_VALUES = st.lists(
    st.sampled_from(["a", "b*", "${aws:username}", "10", "true"]), max_size=3
)
_CONDITIONS = st.none() | st.dictionaries(
    st.sampled_from(
        [
            "StringEquals",
            "ForAnyValue:StringLike",
            "StringNotEqualsIfExists",
            "Bool",
            "NumericLessThan",
        ]
    ),
    st.dictionaries(
        st.sampled_from(["aws:a", "s3:prefix", "aws:PrincipalTag/x"]),
        _CONDITION_VALUES | st.sampled_from(["x", "5"]),
        max_size=2,
    ),
    max_size=2,
)


@st.composite
def _documents(draw: st.DrawFn) -> str:
    statements = []
    for i in range(draw(st.integers(1, 3))):
        body: dict[str, object] = {"Effect": draw(st.sampled_from(["Allow", "Deny"]))}
        if draw(st.booleans()):
            body["Sid"] = f"S{i}"
        body["NotAction" if draw(st.booleans()) else "Action"] = draw(_ACTIONS | st.just("s3:*"))
        body["NotResource" if draw(st.booleans()) else "Resource"] = draw(_RESOURCES | st.just("*"))
        conditions = draw(_CONDITIONS)
        if conditions is not None:
            body["Condition"] = conditions
        statements.append(body)
    top: dict[str, object] = {
        "Statement": statements if len(statements) > 1 or draw(st.booleans()) else statements[0]
    }
    version = draw(st.sampled_from([None, "2012-10-17", "2008-10-17"]))
    if version is not None:
        top["Version"] = version
    return json.dumps(top, indent=draw(st.sampled_from([None, 2])))


@settings(max_examples=200, deadline=None)
@given(_documents())
def test_parse_render_round_trip(text: str) -> None:
    policy = parse_policy(text)
    rendered = render_policy(policy)
    assert parse_policy(rendered) == policy
    assert render_policy(parse_policy(rendered)) == rendered
