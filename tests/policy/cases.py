"""Tests: the table of policy-evaluation cases (plain data) shared by two runners.

Each :class:`Case` is one simulated request: identity policies (JSON texts), an optional
permissions boundary, an optional resource-based policy with the caller ARN and the resource
owner, optional session policies, one action, one resource, context entries typed the way
``SimulateCustomPolicy`` types them, and the expected outcome: a decision string (``allowed``,
``explicitDeny``, ``implicitDeny``) or :data:`MALFORMED` when a document must be rejected.
``matched`` optionally lists the Sids of the statements that produced the decision.

``tests/policy/test_engine_cases.py`` runs every case through ``broker.core.policy``;
``tests/policy/test_simulate_cases_e2e.py`` sends every case that the simulator API can express
(``engine_only`` is ``None``) to a real broker with boto3. Expectations follow
``spec/iam-policy.md``; section numbers in comments refer to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

ACCOUNT = "111122223333"
"""The caller's account (the e2e broker is bootstrapped with this id)."""

OTHER_ACCOUNT = "444455556666"
"""A foreign account, owner of resources in cross-account cases."""

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
ACCOUNT_ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
ROLE_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s1"
FED_USER = f"arn:aws:sts::{ACCOUNT}:federated-user/fred"
CALLER_USERS = ("alice", "bob")
"""IAM users the e2e runner creates so that they can be named as ``CallerArn``."""

ALLOWED = "allowed"
EXPLICIT_DENY = "explicitDeny"
IMPLICIT_DENY = "implicitDeny"
MALFORMED = "MalformedPolicyDocument"
OUTCOMES = frozenset({ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY, MALFORMED})

SCALAR_TYPES = frozenset({"string", "numeric", "boolean", "ip", "binary", "date"})
LIST_TYPES = frozenset(t + "List" for t in SCALAR_TYPES)

V2012 = "2012-10-17"
V2008 = "2008-10-17"

ACTION = "s3:GetObject"
RES = "arn:aws:s3:::bucket/key"
SHARED = "arn:aws:s3:::shared-bucket/report.csv"

SESSION_ONLY = "session policies cannot be given to SimulateCustomPolicy"
NOT_A_USER = "SimulateCustomPolicy takes only an IAM user as CallerArn"


@dataclass(frozen=True, slots=True)
class Entry:
    """One context entry as the simulator takes it: key, type and values (as text)."""

    key: str
    type: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Case:
    """One request and its expected outcome (see the module docstring)."""

    id: str
    policies: tuple[str, ...]
    action: str
    expected: str
    resource: str = "*"
    context: tuple[Entry, ...] = ()
    boundary: str | None = None
    resource_policy: str | None = None
    caller: str = ALICE
    resource_owner: str | None = None
    session_policies: tuple[str, ...] | None = None
    issuer: str | None = None
    matched: tuple[str, ...] | None = None
    engine_only: str | None = None


# -- document builders ------------------------------------------------------------------------

Json = str | int | bool | list[str] | list[str | int | bool] | dict[str, object]


def stmt(
    effect: str,
    action: str | list[str] | None = ACTION,
    resource: str | list[str] | None = "*",
    *,
    sid: str | None = None,
    not_action: str | list[str] | None = None,
    not_resource: str | list[str] | None = None,
    condition: dict[str, dict[str, Json]] | None = None,
    principal: Json | None = None,
    not_principal: Json | None = None,
) -> dict[str, object]:
    """Return one statement; ``not_action``/``not_resource`` replace their positive forms."""
    out: dict[str, object] = {}
    if sid is not None:
        out["Sid"] = sid
    out["Effect"] = effect
    if principal is not None:
        out["Principal"] = principal
    if not_principal is not None:
        out["NotPrincipal"] = not_principal
    if not_action is not None:
        out["NotAction"] = not_action
    elif action is not None:
        out["Action"] = action
    if not_resource is not None:
        out["NotResource"] = not_resource
    elif resource is not None:
        out["Resource"] = resource
    if condition is not None:
        out["Condition"] = condition
    return out


def allow(
    action: str | list[str] | None = ACTION,
    resource: str | list[str] | None = "*",
    *,
    sid: str | None = None,
    not_action: str | list[str] | None = None,
    not_resource: str | list[str] | None = None,
    condition: dict[str, dict[str, Json]] | None = None,
    principal: Json | None = None,
    not_principal: Json | None = None,
) -> dict[str, object]:
    """An ``Allow`` statement (keywords as :func:`stmt`)."""
    return stmt(
        "Allow",
        action,
        resource,
        sid=sid,
        not_action=not_action,
        not_resource=not_resource,
        condition=condition,
        principal=principal,
        not_principal=not_principal,
    )


def deny(
    action: str | list[str] | None = ACTION,
    resource: str | list[str] | None = "*",
    *,
    sid: str | None = None,
    not_action: str | list[str] | None = None,
    not_resource: str | list[str] | None = None,
    condition: dict[str, dict[str, Json]] | None = None,
    principal: Json | None = None,
    not_principal: Json | None = None,
) -> dict[str, object]:
    """A ``Deny`` statement (keywords as :func:`stmt`)."""
    return stmt(
        "Deny",
        action,
        resource,
        sid=sid,
        not_action=not_action,
        not_resource=not_resource,
        condition=condition,
        principal=principal,
        not_principal=not_principal,
    )


def doc(*statements: dict[str, object], version: str | None = V2012) -> str:
    """Return a pretty-printed policy document."""
    body: dict[str, object] = {}
    if version is not None:
        body["Version"] = version
    body["Statement"] = list(statements)
    return json.dumps(body, indent=2)


def aws(*arns: str) -> dict[str, object]:
    """A ``{"AWS": ...}`` principal map."""
    return {"AWS": arns[0] if len(arns) == 1 else list(arns)}


ALLOW_ALL = doc(allow("*", "*", sid="All"))
UNRELATED = doc(allow("ec2:DescribeInstances", "*", sid="Unrelated"))
"""An identity policy that grants nothing the cases ask for (the ✗ of spec §8.3)."""


# -- context builders -------------------------------------------------------------------------


def _entry(key: str, kind: str, values: Iterable[str]) -> Entry:
    return Entry(key, kind, tuple(values))


def string(key: str, value: str) -> Entry:
    return _entry(key, "string", [value])


def strings(key: str, *values: str) -> Entry:
    return _entry(key, "stringList", values)


def number(key: str, value: str) -> Entry:
    return _entry(key, "numeric", [value])


def numbers(key: str, *values: str) -> Entry:
    return _entry(key, "numericList", values)


def boolean(key: str, value: str) -> Entry:
    return _entry(key, "boolean", [value])


def booleans(key: str, *values: str) -> Entry:
    return _entry(key, "booleanList", values)


def ip(key: str, value: str) -> Entry:
    return _entry(key, "ip", [value])


def ips(key: str, *values: str) -> Entry:
    return _entry(key, "ipList", values)


def binary(key: str, value: str) -> Entry:
    return _entry(key, "binary", [value])


def binaries(key: str, *values: str) -> Entry:
    return _entry(key, "binaryList", values)


def date(key: str, value: str) -> Entry:
    return _entry(key, "date", [value])


def dates(key: str, *values: str) -> Entry:
    return _entry(key, "dateList", values)


# -- case builders ----------------------------------------------------------------------------


def when(
    case_id: str,
    operator: str,
    key: str,
    values: Json,
    context: Iterable[Entry],
    holds: bool,
) -> Case:
    """``Allow`` guarded by one condition: allowed iff the condition ``holds``."""
    policy = doc(allow(ACTION, "*", sid="Cond", condition={operator: {key: values}}))
    return Case(
        case_id,
        (policy,),
        ACTION,
        ALLOWED if holds else IMPLICIT_DENY,
        RES,
        tuple(context),
        matched=("Cond",) if holds else (),
    )


def deny_when(
    case_id: str,
    operator: str,
    key: str,
    values: Json,
    context: Iterable[Entry],
    holds: bool,
) -> Case:
    """``Allow *`` plus a ``Deny`` guarded by one condition: denied iff it ``holds``."""
    policy = doc(
        allow("*", "*", sid="All"),
        deny(ACTION, "*", sid="Guard", condition={operator: {key: values}}),
    )
    return Case(
        case_id,
        (policy,),
        ACTION,
        EXPLICIT_DENY if holds else ALLOWED,
        RES,
        tuple(context),
        matched=("Guard",) if holds else ("All",),
    )


def conditions(
    case_id: str, block: dict[str, dict[str, Json]], context: Iterable[Entry], holds: bool
) -> Case:
    """``Allow`` guarded by a whole condition block."""
    policy = doc(allow(ACTION, "*", sid="Cond", condition=block))
    return Case(
        case_id,
        (policy,),
        ACTION,
        ALLOWED if holds else IMPLICIT_DENY,
        RES,
        tuple(context),
        matched=("Cond",) if holds else (),
    )


def grants(
    case_id: str,
    statement: dict[str, object],
    action: str,
    resource: str,
    holds: bool,
    *,
    version: str | None = V2012,
    context: Iterable[Entry] = (),
) -> Case:
    """One identity statement (Sid ``S``): allowed iff it applies to the request."""
    policy = doc({**statement, "Sid": "S"}, version=version)
    return Case(
        case_id,
        (policy,),
        action,
        ALLOWED if holds else IMPLICIT_DENY,
        resource,
        tuple(context),
        matched=("S",) if holds else (),
    )


def malformed(case_id: str, text: str, where: str = "identity") -> Case:
    """A document that must be rejected; ``where`` says which input carries it."""
    if where == "identity":
        return Case(case_id, (text,), ACTION, MALFORMED, RES)
    if where == "boundary":
        return Case(case_id, (ALLOW_ALL,), ACTION, MALFORMED, RES, boundary=text)
    return Case(
        case_id, (ALLOW_ALL,), ACTION, MALFORMED, SHARED, resource_policy=text, caller=ALICE
    )


def accepted(case_id: str, text: str) -> Case:
    """A document IAM accepts although it looks odd (spec §3): it must evaluate."""
    return Case(case_id, (text,), ACTION, ALLOWED, RES)


# -- string operators (§5.5) ------------------------------------------------------------------

U = "aws:username"

STRING_CASES = [
    when("str-eq-match", "StringEquals", U, "alice", [string(U, "alice")], True),
    when("str-eq-case-sensitive", "StringEquals", U, "alice", [string(U, "Alice")], False),
    when("str-eq-any-of-values", "StringEquals", U, ["bob", "alice"], [string(U, "alice")], True),
    when("str-eq-none-of-values", "StringEquals", U, ["bob", "carol"], [string(U, "alice")], False),
    when("str-eq-missing-key", "StringEquals", U, "alice", [], False),
    when("str-eq-star-is-literal-no", "StringEquals", U, "al*", [string(U, "alice")], False),
    when("str-eq-star-is-literal-yes", "StringEquals", U, "al*", [string(U, "al*")], True),
    when(
        "str-eq-json-number", "StringEquals", "s3:max-keys", 10, [string("s3:max-keys", "10")], True
    ),
    when(
        "str-eq-json-bool",
        "StringEquals",
        "aws:ViaAWSService",
        True,
        [string("aws:ViaAWSService", "true")],
        True,
    ),
    when(
        "str-eq-unicode", "StringEquals", U, "\u00f1and\u00fa", [string(U, "\u00f1and\u00fa")], True
    ),
    when(
        "str-eq-other-key-present",
        "StringEquals",
        U,
        "alice",
        [string("aws:userid", "alice")],
        False,
    ),
    when("str-ne-differs", "StringNotEquals", U, "bob", [string(U, "alice")], True),
    when("str-ne-equal", "StringNotEquals", U, "alice", [string(U, "alice")], False),
    when(
        "str-ne-nor-of-values", "StringNotEquals", U, ["bob", "alice"], [string(U, "alice")], False
    ),
    when("str-ne-none-equal", "StringNotEquals", U, ["bob", "carol"], [string(U, "alice")], True),
    when("str-ne-missing-key", "StringNotEquals", U, "alice", [], True),
    when("str-ne-case-differs", "StringNotEquals", U, "ALICE", [string(U, "alice")], True),
    when("str-eqic-match", "StringEqualsIgnoreCase", U, "ALICE", [string(U, "alice")], True),
    when("str-eqic-mixed", "StringEqualsIgnoreCase", U, "aLiCe", [string(U, "AlIcE")], True),
    when("str-eqic-differs", "StringEqualsIgnoreCase", U, "bob", [string(U, "alice")], False),
    when("str-eqic-missing-key", "StringEqualsIgnoreCase", U, "alice", [], False),
    when(
        "str-eqic-unicode",
        "StringEqualsIgnoreCase",
        U,
        "\u00d1AND\u00da",
        [string(U, "\u00f1and\u00fa")],
        True,
    ),
    when("str-neic-equal", "StringNotEqualsIgnoreCase", U, "ALICE", [string(U, "alice")], False),
    when("str-neic-differs", "StringNotEqualsIgnoreCase", U, "bob", [string(U, "alice")], True),
    when("str-neic-missing-key", "StringNotEqualsIgnoreCase", U, "bob", [], True),
    when("str-like-star", "StringLike", U, "al*", [string(U, "alice")], True),
    when("str-like-star-suffix", "StringLike", U, "*ice", [string(U, "alice")], True),
    when("str-like-two-stars", "StringLike", U, "a*c*", [string(U, "alice")], True),
    when("str-like-star-matches-empty", "StringLike", U, "alice*", [string(U, "alice")], True),
    when("str-like-qmark", "StringLike", U, "a?ice", [string(U, "alice")], True),
    when("str-like-qmark-needs-one", "StringLike", U, "a?ice", [string(U, "aice")], False),
    when("str-like-qmark-only-one", "StringLike", U, "a?ice", [string(U, "allice")], False),
    when("str-like-whole-string", "StringLike", U, "lic", [string(U, "alice")], False),
    when("str-like-case-sensitive", "StringLike", U, "AL*", [string(U, "alice")], False),
    when("str-like-dot-literal-no", "StringLike", U, "a.c*", [string(U, "abc")], False),
    when("str-like-dot-literal-yes", "StringLike", U, "a.c*", [string(U, "a.cd")], True),
    when("str-like-brackets-literal-no", "StringLike", U, "[ab]*", [string(U, "alice")], False),
    when("str-like-brackets-literal-yes", "StringLike", U, "[ab]*", [string(U, "[ab]x")], True),
    when(
        "str-like-star-empty-value", "StringLike", "s3:prefix", "*", [string("s3:prefix", "")], True
    ),
    when("str-like-missing-key", "StringLike", U, "*", [], False),
    when("str-like-any-of-values", "StringLike", U, ["b*", "a*"], [string(U, "alice")], True),
    when(
        "str-like-spans-slash-colon",
        "StringLike",
        "aws:SourceArn",
        "arn:aws:*:finance/*",
        [string("aws:SourceArn", "arn:aws:svc:us-east-2:999999999999:x:1:finance/doc")],
        True,
    ),
    when("str-notlike-differs", "StringNotLike", U, "b*", [string(U, "alice")], True),
    when("str-notlike-matches", "StringNotLike", U, "a*", [string(U, "alice")], False),
    when(
        "str-notlike-nor-of-values", "StringNotLike", U, ["b*", "a*"], [string(U, "alice")], False
    ),
    when("str-notlike-missing-key", "StringNotLike", U, "a*", [], True),
]

# -- key-name case and value case (§1, §5) ----------------------------------------------------

KEY_CASE_CASES = [
    when(
        "key-case-policy-upper", "StringEquals", "AWS:UserName", "alice", [string(U, "alice")], True
    ),
    when(
        "key-case-context-upper",
        "StringEquals",
        U,
        "alice",
        [string("AWS:USERNAME", "alice")],
        True,
    ),
    when(
        "key-case-tag-key",
        "StringEquals",
        "aws:PrincipalTag/Dept",
        "eng",
        [string("aws:principaltag/dept", "eng")],
        True,
    ),
    when(
        "key-case-tag-value-sensitive",
        "StringEquals",
        "aws:PrincipalTag/Dept",
        "eng",
        [string("aws:principaltag/dept", "Eng")],
        False,
    ),
    when(
        "key-case-ip",
        "IpAddress",
        "AWS:SourceIP",
        "203.0.113.0/24",
        [ip("aws:sourceip", "203.0.113.9")],
        True,
    ),
    when("key-case-null", "Null", "AWS:UserName", "false", [string("aws:username", "x")], True),
    deny_when(
        "key-case-deny",
        "StringEquals",
        "aws:RequestedRegion",
        "eu-west-1",
        [string("AWS:REQUESTEDREGION", "eu-west-1")],
        True,
    ),
]

# -- numeric operators (§5.6) -----------------------------------------------------------------

K = "s3:max-keys"

NUMERIC_CASES = [
    when("num-eq-int", "NumericEquals", K, "10", [number(K, "10")], True),
    when("num-eq-decimal-same-value", "NumericEquals", K, "10", [number(K, "10.0")], True),
    when("num-eq-decimal-exact", "NumericEquals", K, "0.3", [number(K, "0.30")], True),
    when("num-eq-differs", "NumericEquals", K, "10", [number(K, "11")], False),
    when("num-eq-json-number", "NumericEquals", K, 10, [number(K, "10")], True),
    when("num-eq-any-of-values", "NumericEquals", K, ["1", "2", "3"], [number(K, "2")], True),
    when("num-eq-missing-key", "NumericEquals", K, "10", [], False),
    when("num-eq-negative", "NumericEquals", K, "-5", [number(K, "-5")], True),
    when("num-ne-differs", "NumericNotEquals", K, "10", [number(K, "11")], True),
    when("num-ne-equal", "NumericNotEquals", K, "10", [number(K, "10")], False),
    when("num-ne-missing-key", "NumericNotEquals", K, "10", [], True),
    when("num-ne-nor-of-values", "NumericNotEquals", K, ["1", "2"], [number(K, "2")], False),
    when("num-lt-less", "NumericLessThan", K, "10", [number(K, "9")], True),
    when("num-lt-equal", "NumericLessThan", K, "10", [number(K, "10")], False),
    when("num-lt-not-string-order", "NumericLessThan", K, "100", [number(K, "20")], True),
    when("num-lt-decimal", "NumericLessThan", K, "2.5", [number(K, "2.49")], True),
    when("num-lt-missing-key", "NumericLessThan", K, "10", [], False),
    when("num-le-equal", "NumericLessThanEquals", K, "10", [number(K, "10")], True),
    when("num-le-greater", "NumericLessThanEquals", K, "10", [number(K, "10.5")], False),
    when("num-gt-greater", "NumericGreaterThan", K, "2.5", [number(K, "2.51")], True),
    when("num-gt-equal", "NumericGreaterThan", K, "2.5", [number(K, "2.5")], False),
    when("num-gt-missing-key", "NumericGreaterThan", K, "0", [], False),
    when("num-ge-equal-negative", "NumericGreaterThanEquals", K, "-1", [number(K, "-1")], True),
    when("num-ge-less", "NumericGreaterThanEquals", K, "-1", [number(K, "-1.5")], False),
    when(
        "num-epochtime",
        "NumericLessThan",
        "aws:EpochTime",
        "1700000000",
        [number("aws:EpochTime", "1600000000")],
        True,
    ),
    when(
        "num-var-not-substituted",
        "NumericEquals",
        K,
        "${aws:username}",
        [number(K, "5"), string(U, "5")],
        False,
    ),
]

# -- date operators (§5.7) --------------------------------------------------------------------

T = "aws:CurrentTime"
NOON = "2024-05-01T12:00:00Z"
NOON_EPOCH = "1714564800"

DATE_CASES = [
    when("date-eq-iso", "DateEquals", T, NOON, [date(T, NOON)], True),
    when(
        "date-eq-offset",
        "DateEquals",
        T,
        "2024-06-01T12:00:00+02:00",
        [date(T, "2024-06-01T10:00:00Z")],
        True,
    ),
    when(
        "date-eq-date-only-midnight",
        "DateEquals",
        T,
        "2024-05-01",
        [date(T, "2024-05-01T00:00:00Z")],
        True,
    ),
    when("date-eq-epoch-policy", "DateEquals", T, NOON_EPOCH, [date(T, NOON)], True),
    when("date-eq-epoch-policy-json-number", "DateEquals", T, 1714564800, [date(T, NOON)], True),
    when("date-eq-epoch-context", "DateEquals", T, NOON, [date(T, NOON_EPOCH)], True),
    when("date-eq-minutes-only", "DateEquals", T, "2024-05-01T12:00Z", [date(T, NOON)], True),
    when("date-eq-fraction", "DateEquals", T, "2024-05-01T12:00:00.000Z", [date(T, NOON)], True),
    when("date-eq-lowercase-t-z", "DateEquals", T, "2024-05-01t12:00:00z", [date(T, NOON)], True),
    when("date-eq-differs", "DateEquals", T, NOON, [date(T, "2024-05-01T12:00:01Z")], False),
    when("date-eq-missing-key", "DateEquals", T, NOON, [], False),
    when("date-ne-differs", "DateNotEquals", T, NOON, [date(T, "2024-05-02T12:00:00Z")], True),
    when("date-ne-equal", "DateNotEquals", T, NOON, [date(T, NOON)], False),
    when("date-ne-missing-key", "DateNotEquals", T, NOON, [], True),
    when(
        "date-lt-before",
        "DateLessThan",
        T,
        "2024-01-01T00:00:00Z",
        [date(T, "2023-12-31T23:59:59Z")],
        True,
    ),
    when("date-lt-equal", "DateLessThan", T, NOON, [date(T, NOON)], False),
    when("date-lt-missing-key", "DateLessThan", T, NOON, [], False),
    when("date-le-equal", "DateLessThanEquals", T, NOON, [date(T, NOON)], True),
    when("date-le-after", "DateLessThanEquals", T, NOON, [date(T, "2024-05-01T12:00:01Z")], False),
    when("date-gt-after", "DateGreaterThan", T, "2024-01-01", [date(T, NOON)], True),
    when("date-gt-before", "DateGreaterThan", T, "2025-01-01", [date(T, NOON)], False),
    when("date-ge-equal", "DateGreaterThanEquals", T, NOON, [date(T, NOON)], True),
    when(
        "date-ge-before", "DateGreaterThanEquals", T, NOON, [date(T, "2024-05-01T11:59:59Z")], False
    ),
    when(
        "date-epochtime-numeric-context",
        "DateGreaterThan",
        "aws:EpochTime",
        "2024-01-01",
        [number("aws:EpochTime", NOON_EPOCH)],
        True,
    ),
    conditions(
        "date-window-inside",
        {
            "DateGreaterThan": {T: "2024-01-01T00:00:00Z"},
            "DateLessThan": {T: "2025-01-01T00:00:00Z"},
        },
        [date(T, NOON)],
        True,
    ),
    conditions(
        "date-window-outside",
        {
            "DateGreaterThan": {T: "2024-01-01T00:00:00Z"},
            "DateLessThan": {T: "2024-02-01T00:00:00Z"},
        },
        [date(T, NOON)],
        False,
    ),
    # The "revoke older sessions" pattern (§9.1): long-term keys carry no aws:TokenIssueTime.
    deny_when(
        "date-revoke-older-session",
        "DateLessThan",
        "aws:TokenIssueTime",
        NOON,
        [date("aws:TokenIssueTime", "2024-05-01T11:00:00Z")],
        True,
    ),
    deny_when(
        "date-revoke-newer-session",
        "DateLessThan",
        "aws:TokenIssueTime",
        NOON,
        [date("aws:TokenIssueTime", "2024-05-01T13:00:00Z")],
        False,
    ),
    deny_when("date-revoke-long-term-key", "DateLessThan", "aws:TokenIssueTime", NOON, [], False),
]

# -- Bool, BinaryEquals (§5.8, §5.9) ----------------------------------------------------------

MFA = "aws:MultiFactorAuthPresent"
TLS = "aws:SecureTransport"
B64_A = "QmluYXJ5"  # b"Binary"
B64_B = "T3RoZXI="  # b"Other"

BOOL_BINARY_CASES = [
    when("bool-true", "Bool", TLS, "true", [boolean(TLS, "true")], True),
    when("bool-false-vs-true", "Bool", TLS, "true", [boolean(TLS, "false")], False),
    when("bool-json-true", "Bool", TLS, True, [boolean(TLS, "true")], True),
    when("bool-json-false", "Bool", TLS, False, [boolean(TLS, "false")], True),
    when("bool-missing-key", "Bool", TLS, "true", [], False),
    when("bool-any-of-values", "Bool", TLS, ["false", "true"], [boolean(TLS, "false")], True),
    deny_when("bool-deny-mfa-false-absent", "Bool", MFA, "false", [], False),
    deny_when("bool-deny-mfa-false-present", "Bool", MFA, "false", [boolean(MFA, "false")], True),
    deny_when("bool-deny-mfa-true-present", "Bool", MFA, "false", [boolean(MFA, "true")], False),
    deny_when("boolifexists-deny-mfa-absent", "BoolIfExists", MFA, "false", [], True),
    deny_when(
        "boolifexists-deny-mfa-false", "BoolIfExists", MFA, "false", [boolean(MFA, "false")], True
    ),
    deny_when(
        "boolifexists-deny-mfa-true", "BoolIfExists", MFA, "false", [boolean(MFA, "true")], False
    ),
    deny_when("bool-deny-insecure-transport", "Bool", TLS, "false", [boolean(TLS, "false")], True),
    when("bin-eq-match", "BinaryEquals", "app:blob", B64_A, [binary("app:blob", B64_A)], True),
    when("bin-eq-differs", "BinaryEquals", "app:blob", B64_A, [binary("app:blob", B64_B)], False),
    when("bin-eq-missing-key", "BinaryEquals", "app:blob", B64_A, [], False),
    when(
        "bin-eq-any-of-values",
        "BinaryEquals",
        "app:blob",
        [B64_B, B64_A],
        [binary("app:blob", B64_A)],
        True,
    ),
    when("bin-eq-ifexists-absent", "BinaryEqualsIfExists", "app:blob", B64_A, [], True),
]

# -- IpAddress / NotIpAddress (§5.10) ---------------------------------------------------------

IP = "aws:SourceIp"

IP_CASES = [
    when("ip-v4-in-cidr", "IpAddress", IP, "203.0.113.0/24", [ip(IP, "203.0.113.7")], True),
    when("ip-v4-outside-cidr", "IpAddress", IP, "203.0.113.0/24", [ip(IP, "203.0.114.1")], False),
    when("ip-v4-single-address", "IpAddress", IP, "203.0.113.5", [ip(IP, "203.0.113.5")], True),
    when(
        "ip-v4-single-address-other", "IpAddress", IP, "203.0.113.5", [ip(IP, "203.0.113.6")], False
    ),
    when(
        "ip-v4-host-bits-ignored",
        "IpAddress",
        IP,
        "203.0.113.7/24",
        [ip(IP, "203.0.113.200")],
        True,
    ),
    when(
        "ip-v4-any-of-values",
        "IpAddress",
        IP,
        ["10.0.0.0/8", "203.0.113.0/24"],
        [ip(IP, "203.0.113.7")],
        True,
    ),
    when("ip-v4-missing-key", "IpAddress", IP, "0.0.0.0/0", [], False),
    when(
        "ip-v6-in-cidr",
        "IpAddress",
        IP,
        "2001:DB8:1234:5678::/64",
        [ip(IP, "2001:db8:1234:5678::1")],
        True,
    ),
    when(
        "ip-v6-outside-cidr",
        "IpAddress",
        IP,
        "2001:DB8:1234:5678::/64",
        [ip(IP, "2001:db8:1234:5679::1")],
        False,
    ),
    when(
        "ip-v6-compression",
        "IpAddress",
        IP,
        "2001:db8::/32",
        [ip(IP, "2001:0DB8:0000:0000:0000:0000:0000:0001")],
        True,
    ),
    when("ip-v6-single-address", "IpAddress", IP, "2001:db8::5", [ip(IP, "2001:DB8::5")], True),
    when("ip-v4-never-in-v6-block", "IpAddress", IP, "::/0", [ip(IP, "203.0.113.7")], False),
    when("ip-v6-never-in-v4-block", "IpAddress", IP, "0.0.0.0/0", [ip(IP, "2001:db8::1")], False),
    when("notip-v4-outside", "NotIpAddress", IP, "10.0.0.0/8", [ip(IP, "203.0.113.7")], True),
    when("notip-v4-inside", "NotIpAddress", IP, "10.0.0.0/8", [ip(IP, "10.1.2.3")], False),
    when("notip-missing-key", "NotIpAddress", IP, "10.0.0.0/8", [], True),
    when(
        "notip-nor-of-values",
        "NotIpAddress",
        IP,
        ["10.0.0.0/8", "203.0.113.0/24"],
        [ip(IP, "203.0.113.7")],
        False,
    ),
    when("notip-v6-outside", "NotIpAddress", IP, "2001:db8::/32", [ip(IP, "2001:db9::1")], True),
    when("notip-v6-inside", "NotIpAddress", IP, "2001:db8::/32", [ip(IP, "2001:db8::1")], False),
    deny_when(
        "notip-deny-outside-office",
        "NotIpAddress",
        IP,
        "203.0.113.0/24",
        [ip(IP, "198.51.100.1")],
        True,
    ),
    deny_when(
        "notip-deny-inside-office",
        "NotIpAddress",
        IP,
        "203.0.113.0/24",
        [ip(IP, "203.0.113.9")],
        False,
    ),
]

# -- ARN operators (§5.11) --------------------------------------------------------------------

PA = "aws:PrincipalArn"
SA = "aws:SourceArn"
FOREIGN_PATH_ARN = (
    "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/doc.txt"
)

ARN_CASES = [
    when("arn-eq-exact", "ArnEquals", PA, ALICE, [string(PA, ALICE)], True),
    when("arn-eq-other-user", "ArnEquals", PA, ALICE, [string(PA, BOB)], False),
    when(
        "arn-eq-wildcard-like-arnlike",
        "ArnEquals",
        PA,
        "arn:aws:iam::*:user/alice",
        [string(PA, ALICE)],
        True,
    ),
    when(
        "arn-like-user-path",
        "ArnLike",
        PA,
        f"arn:aws:iam::{ACCOUNT}:user/*",
        [string(PA, ALICE)],
        True,
    ),
    when(
        "arn-like-role-not-user",
        "ArnLike",
        PA,
        f"arn:aws:iam::{ACCOUNT}:user/*",
        [string(PA, ROLE)],
        False,
    ),
    when(
        "arn-like-case-sensitive",
        "ArnLike",
        PA,
        f"arn:aws:iam::{ACCOUNT}:user/Alice",
        [string(PA, ALICE)],
        False,
    ),
    when(
        "arn-like-field-by-field",
        "ArnLike",
        SA,
        "arn:aws:someservice:*:111122223333:finance/*",
        [string(SA, FOREIGN_PATH_ARN)],
        False,
    ),
    when(
        "arn-stringlike-spans-fields",
        "StringLike",
        SA,
        "arn:aws:someservice:*:111122223333:finance/*",
        [string(SA, FOREIGN_PATH_ARN)],
        True,
    ),
    when(
        "arn-like-qmark-in-region",
        "ArnLike",
        SA,
        "arn:aws:sqs:us-east-?:111122223333:q",
        [string(SA, "arn:aws:sqs:us-east-1:111122223333:q")],
        True,
    ),
    when(
        "arn-like-star-in-region",
        "ArnLike",
        SA,
        "arn:aws:sqs:us-*-1:*:q",
        [string(SA, "arn:aws:sqs:us-west-1:111122223333:q")],
        True,
    ),
    when(
        "arn-like-region-mismatch",
        "ArnLike",
        SA,
        "arn:aws:sqs:us-*:111122223333:q",
        [string(SA, "arn:aws:sqs:eu-west-1:111122223333:q")],
        False,
    ),
    when(
        "arn-like-context-not-arn",
        "ArnLike",
        SA,
        "arn:*:*:*:*:*",
        [string(SA, "not-an-arn")],
        False,
    ),
    when("arn-like-missing-key", "ArnLike", SA, "arn:*:*:*:*:*", [], False),
    when(
        "arn-like-any-of-values",
        "ArnLike",
        PA,
        [ROLE, f"arn:aws:iam::{ACCOUNT}:user/a*"],
        [string(PA, ALICE)],
        True,
    ),
    when("arn-ne-other", "ArnNotEquals", PA, BOB, [string(PA, ALICE)], True),
    when("arn-ne-same", "ArnNotEquals", PA, ALICE, [string(PA, ALICE)], False),
    when("arn-ne-missing-key", "ArnNotEquals", PA, ALICE, [], True),
    when(
        "arn-notlike-role-pattern",
        "ArnNotLike",
        PA,
        "arn:aws:iam::*:role/*",
        [string(PA, ALICE)],
        True,
    ),
    when(
        "arn-notlike-user-pattern",
        "ArnNotLike",
        PA,
        "arn:aws:iam::*:user/*",
        [string(PA, ALICE)],
        False,
    ),
    when("arn-notlike-missing-key", "ArnNotLike", PA, "arn:aws:iam::*:user/*", [], True),
]

# -- Null and IfExists (§5.12, §5.13) ---------------------------------------------------------

NULL_IFEXISTS_CASES = [
    when("null-true-absent", "Null", U, "true", [], True),
    when("null-true-present", "Null", U, "true", [string(U, "alice")], False),
    when("null-false-present", "Null", U, "false", [string(U, "alice")], True),
    when("null-false-absent", "Null", U, "false", [], False),
    when("null-json-true-absent", "Null", U, True, [], True),
    when("null-json-false-present", "Null", U, False, [string(U, "alice")], True),
    when(
        "null-list-key-present",
        "Null",
        "aws:TagKeys",
        "false",
        [strings("aws:TagKeys", "a", "b")],
        True,
    ),
    when("ifexists-str-absent", "StringEqualsIfExists", U, "alice", [], True),
    when(
        "ifexists-str-present-match", "StringEqualsIfExists", U, "alice", [string(U, "alice")], True
    ),
    when(
        "ifexists-str-present-differs",
        "StringEqualsIfExists",
        U,
        "alice",
        [string(U, "bob")],
        False,
    ),
    when("ifexists-num-absent", "NumericLessThanIfExists", K, "10", [], True),
    when("ifexists-num-present-less", "NumericLessThanIfExists", K, "10", [number(K, "5")], True),
    when(
        "ifexists-num-present-greater", "NumericLessThanIfExists", K, "10", [number(K, "20")], False
    ),
    when("ifexists-ip-absent", "IpAddressIfExists", IP, "10.0.0.0/8", [], True),
    when(
        "ifexists-ip-present-outside",
        "IpAddressIfExists",
        IP,
        "10.0.0.0/8",
        [ip(IP, "203.0.113.1")],
        False,
    ),
    when("ifexists-date-absent", "DateLessThanIfExists", T, NOON, [], True),
    when(
        "ifexists-date-present-after",
        "DateLessThanIfExists",
        T,
        NOON,
        [date(T, "2024-06-01T00:00:00Z")],
        False,
    ),
    when("ifexists-arn-absent", "ArnLikeIfExists", SA, "arn:aws:sns:*:*:topic", [], True),
    when(
        "ifexists-arnnot-present-match",
        "ArnNotLikeIfExists",
        SA,
        "arn:aws:sns:*:*:topic",
        [string(SA, "arn:aws:sns:us-east-1:111122223333:topic")],
        False,
    ),
    when(
        "ifexists-strlike-present-match", "StringLikeIfExists", U, "a*", [string(U, "alice")], True
    ),
    when("ifexists-bool-absent", "BoolIfExists", TLS, "true", [], True),
    deny_when(
        "ifexists-neq-deny-absent",
        "StringNotEqualsIfExists",
        "aws:RequestedRegion",
        "us-east-1",
        [],
        True,
    ),
    deny_when(
        "ifexists-neq-deny-same",
        "StringNotEqualsIfExists",
        "aws:RequestedRegion",
        "us-east-1",
        [string("aws:RequestedRegion", "us-east-1")],
        False,
    ),
    deny_when(
        "ifexists-neq-deny-other",
        "StringNotEqualsIfExists",
        "aws:RequestedRegion",
        "us-east-1",
        [string("aws:RequestedRegion", "eu-west-1")],
        True,
    ),
    deny_when(
        "neq-deny-absent-key", "StringNotEquals", "aws:RequestedRegion", "us-east-1", [], True
    ),
    conditions(
        "ifexists-does-not-rescue-others",
        {"StringEqualsIfExists": {U: "alice"}, "StringEquals": {"aws:PrincipalTag/team": "red"}},
        [],
        False,
    ),
]

# -- set operators (§5.4) ---------------------------------------------------------------------

TK = "aws:TagKeys"

SET_CASES = [
    when("forall-subset", "ForAllValues:StringEquals", TK, ["a", "b"], [strings(TK, "a")], True),
    when(
        "forall-equal-set",
        "ForAllValues:StringEquals",
        TK,
        ["a", "b"],
        [strings(TK, "b", "a")],
        True,
    ),
    when(
        "forall-extra-value",
        "ForAllValues:StringEquals",
        TK,
        ["a", "b"],
        [strings(TK, "a", "c")],
        False,
    ),
    when("forall-missing-key", "ForAllValues:StringEquals", TK, ["a", "b"], [], True),
    when("forall-empty-list", "ForAllValues:StringEquals", TK, ["a", "b"], [strings(TK)], True),
    when(
        "forall-single-string", "ForAllValues:StringEquals", TK, ["a", "b"], [string(TK, "a")], True
    ),
    conditions(
        "forall-guarded-by-null-absent",
        {"ForAllValues:StringEquals": {TK: ["a"]}, "Null": {TK: "false"}},
        [],
        False,
    ),
    conditions(
        "forall-guarded-by-null-present",
        {"ForAllValues:StringEquals": {TK: ["a"]}, "Null": {TK: "false"}},
        [strings(TK, "a")],
        True,
    ),
    when(
        "forall-ignorecase",
        "ForAllValues:StringEqualsIgnoreCase",
        TK,
        ["A", "B"],
        [strings(TK, "a", "b")],
        True,
    ),
    when(
        "forall-like",
        "ForAllValues:StringLike",
        TK,
        ["team-*"],
        [strings(TK, "team-1", "team-2")],
        True,
    ),
    when(
        "forall-like-one-fails",
        "ForAllValues:StringLike",
        TK,
        ["team-*"],
        [strings(TK, "team-1", "cost")],
        False,
    ),
    when(
        "forall-notequals-none-forbidden",
        "ForAllValues:StringNotEquals",
        TK,
        ["Project"],
        [strings(TK, "Owner", "Cost")],
        True,
    ),
    when(
        "forall-notequals-one-forbidden",
        "ForAllValues:StringNotEquals",
        TK,
        ["Project"],
        [strings(TK, "Owner", "Project")],
        False,
    ),
    when(
        "forall-numeric",
        "ForAllValues:NumericLessThan",
        "app:sizes",
        "10",
        [numbers("app:sizes", "1", "9.5")],
        True,
    ),
    when(
        "forall-numeric-one-fails",
        "ForAllValues:NumericLessThan",
        "app:sizes",
        "10",
        [numbers("app:sizes", "1", "10")],
        False,
    ),
    when(
        "forall-date",
        "ForAllValues:DateLessThan",
        "app:times",
        "2025-01-01",
        [dates("app:times", NOON, "2024-12-31T23:59:59Z")],
        True,
    ),
    when(
        "forall-ip",
        "ForAllValues:IpAddress",
        "app:addrs",
        "10.0.0.0/8",
        [ips("app:addrs", "10.0.0.1", "10.9.9.9")],
        True,
    ),
    when(
        "forall-ip-one-outside",
        "ForAllValues:IpAddress",
        "app:addrs",
        "10.0.0.0/8",
        [ips("app:addrs", "10.0.0.1", "11.0.0.1")],
        False,
    ),
    when(
        "forall-arnlike",
        "ForAllValues:ArnLike",
        "app:arns",
        "arn:aws:sqs:*:*:q-*",
        [strings("app:arns", "arn:aws:sqs:us-east-1:1:q-a", "arn:aws:sqs:eu-west-1:2:q-b")],
        True,
    ),
    when(
        "foranyvalue-one-matches",
        "ForAnyValue:StringEquals",
        TK,
        ["a", "b"],
        [strings(TK, "c", "a")],
        True,
    ),
    when(
        "foranyvalue-none-matches",
        "ForAnyValue:StringEquals",
        TK,
        ["a", "b"],
        [strings(TK, "c", "d")],
        False,
    ),
    when("foranyvalue-missing-key", "ForAnyValue:StringEquals", TK, ["a"], [], False),
    when("foranyvalue-empty-list", "ForAnyValue:StringEquals", TK, ["a"], [strings(TK)], False),
    when(
        "foranyvalue-single-string", "ForAnyValue:StringEquals", TK, ["a"], [string(TK, "a")], True
    ),
    when(
        "foranyvalue-like",
        "ForAnyValue:StringLike",
        TK,
        ["team-*"],
        [strings(TK, "x", "team-1")],
        True,
    ),
    when(
        "foranyvalue-notlike-some-user-key",
        "ForAnyValue:StringNotLike",
        TK,
        ["aws:*"],
        [strings(TK, "aws:x", "user")],
        True,
    ),
    when(
        "foranyvalue-notlike-all-aws-keys",
        "ForAnyValue:StringNotLike",
        TK,
        ["aws:*"],
        [strings(TK, "aws:x", "aws:y")],
        False,
    ),
    when("foranyvalue-ifexists-absent", "ForAnyValue:StringEqualsIfExists", TK, ["a"], [], True),
    when(
        "forallvalues-ifexists-present-fails",
        "ForAllValues:StringEqualsIfExists",
        TK,
        ["a"],
        [strings(TK, "a", "b")],
        False,
    ),
    when(
        "foranyvalue-numeric",
        "ForAnyValue:NumericGreaterThan",
        "app:sizes",
        "10",
        [numbers("app:sizes", "5", "11")],
        True,
    ),
    when(
        "foranyvalue-numeric-none",
        "ForAnyValue:NumericGreaterThan",
        "app:sizes",
        "10",
        [numbers("app:sizes", "5", "10")],
        False,
    ),
    when(
        "foranyvalue-bool",
        "ForAnyValue:Bool",
        "app:flags",
        "true",
        [booleans("app:flags", "false", "true")],
        True,
    ),
    when(
        "foranyvalue-binary",
        "ForAnyValue:BinaryEquals",
        "app:blobs",
        B64_A,
        [binaries("app:blobs", B64_B, B64_A)],
        True,
    ),
    when(
        "foranyvalue-ip",
        "ForAnyValue:IpAddress",
        "app:addrs",
        "203.0.113.0/24",
        [ips("app:addrs", "10.0.0.1", "203.0.113.4")],
        True,
    ),
    when(
        "foranyvalue-date",
        "ForAnyValue:DateGreaterThan",
        "app:times",
        "2024-06-01",
        [dates("app:times", NOON, "2024-07-01T00:00:00Z")],
        True,
    ),
    deny_when(
        "foranyvalue-deny-secret-tag",
        "ForAnyValue:StringEquals",
        TK,
        ["Secret"],
        [strings(TK, "Owner", "Secret")],
        True,
    ),
    deny_when(
        "foranyvalue-deny-no-secret-tag",
        "ForAnyValue:StringEquals",
        TK,
        ["Secret"],
        [strings(TK, "Owner")],
        False,
    ),
    deny_when("forall-deny-vacuous-absent", "ForAllValues:StringEquals", TK, ["a"], [], True),
]

# -- several values, keys and operators (§5.1) ------------------------------------------------

COMBINATION_CASES = [
    conditions(
        "and-two-keys-both",
        {"StringEquals": {U: "alice", "aws:PrincipalTag/team": "red"}},
        [string(U, "alice"), string("aws:PrincipalTag/team", "red")],
        True,
    ),
    conditions(
        "and-two-keys-one-fails",
        {"StringEquals": {U: "alice", "aws:PrincipalTag/team": "red"}},
        [string(U, "alice"), string("aws:PrincipalTag/team", "blue")],
        False,
    ),
    conditions(
        "and-two-keys-one-missing",
        {"StringEquals": {U: "alice", "aws:PrincipalTag/team": "red"}},
        [string(U, "alice")],
        False,
    ),
    conditions(
        "and-two-operators-both",
        {"StringEquals": {U: "alice"}, "IpAddress": {IP: "203.0.113.0/24"}},
        [string(U, "alice"), ip(IP, "203.0.113.1")],
        True,
    ),
    conditions(
        "and-two-operators-one-fails",
        {"StringEquals": {U: "alice"}, "IpAddress": {IP: "203.0.113.0/24"}},
        [string(U, "alice"), ip(IP, "198.51.100.1")],
        False,
    ),
    conditions(
        "and-three-operators",
        {"StringLike": {U: "a*"}, "Bool": {TLS: "true"}, "NumericLessThan": {K: "100"}},
        [string(U, "alice"), boolean(TLS, "true"), number(K, "5")],
        True,
    ),
    conditions(
        "and-or-mixed",
        {"StringEquals": {U: ["bob", "alice"]}, "NotIpAddress": {IP: ["10.0.0.0/8", "::1"]}},
        [string(U, "alice"), ip(IP, "203.0.113.1")],
        True,
    ),
    conditions("empty-condition-block", {}, [], True),
]

# -- Action / NotAction (§4.1) ----------------------------------------------------------------

ACTION_CASES = [
    grants("act-exact", allow("s3:GetObject"), "s3:GetObject", RES, True),
    grants("act-policy-case", allow("S3:getobject"), "s3:GetObject", RES, True),
    grants("act-request-case", allow("s3:GetObject"), "S3:GETOBJECT", RES, True),
    grants("act-prefix-star", allow("s3:Get*"), "s3:GetObject", RES, True),
    grants("act-prefix-star-other", allow("s3:Get*"), "s3:PutObject", RES, False),
    grants("act-service-star", allow("s3:*"), "s3:PutObject", RES, True),
    grants(
        "act-service-star-not-other-service",
        allow("s3:*"),
        "s3-object-lambda:GetObject",
        RES,
        False,
    ),
    grants(
        "act-hyphen-service", allow("s3-object-lambda:*"), "s3-object-lambda:GetObject", RES, True
    ),
    grants("act-star", allow("*"), "iam:CreateUser", "*", True),
    grants("act-inner-star", allow("iam:*User*"), "iam:CreateUser", "*", True),
    grants("act-inner-star-other", allow("iam:*User*"), "iam:CreateRole", "*", False),
    grants("act-star-suffix", allow("s3:*Object"), "s3:GetObject", RES, True),
    grants("act-qmark", allow("s3:?etObject"), "s3:GetObject", RES, True),
    grants("act-qmark-one-char", allow("s3:?etObject"), "s3:GetObjectAcl", RES, False),
    grants("act-qmark-case", allow("S3:GET?BJECT"), "s3:GetObject", RES, True),
    grants("act-dot-literal", allow("s3:Get.bject"), "s3:GetObject", RES, False),
    grants("act-list-any", allow(["ec2:*", "s3:GetObject"]), "s3:GetObject", RES, True),
    grants("act-list-none", allow(["ec2:*", "s3:PutObject"]), "s3:GetObject", RES, False),
    grants("act-other-service", allow("sqs:GetObject"), "s3:GetObject", RES, False),
    grants("notact-other", allow(None, not_action="iam:*"), "s3:GetObject", RES, True),
    grants("notact-listed", allow(None, not_action="iam:*"), "iam:CreateUser", "*", False),
    grants("notact-case", allow(None, not_action="IAM:*"), "iam:CreateUser", "*", False),
    grants("notact-list", allow(None, not_action=["iam:*", "s3:Get*"]), "s3:GetObject", RES, False),
    grants(
        "notact-resource-still-applies",
        allow(None, "arn:aws:s3:::*", not_action="s3:DeleteBucket"),
        "s3:GetObject",
        RES,
        True,
    ),
    grants(
        "notact-resource-other-service",
        allow(None, "arn:aws:s3:::*", not_action="s3:DeleteBucket"),
        "sqs:SendMessage",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:queue1",
        False,
    ),
    grants(
        "notact-resource-excluded-action",
        allow(None, "arn:aws:s3:::*", not_action="s3:DeleteBucket"),
        "s3:DeleteBucket",
        "arn:aws:s3:::bucket",
        False,
    ),
    Case(
        "notact-deny-outside-s3",
        (doc(allow("*", "*", sid="All"), deny(None, "*", sid="OnlyS3", not_action="s3:*")),),
        "ec2:RunInstances",
        EXPLICIT_DENY,
        "*",
        matched=("OnlyS3",),
    ),
    Case(
        "notact-deny-inside-s3",
        (doc(allow("*", "*", sid="All"), deny(None, "*", sid="OnlyS3", not_action="s3:*")),),
        "s3:GetObject",
        ALLOWED,
        RES,
        matched=("All",),
    ),
]

# -- Resource / NotResource (§4.2) ------------------------------------------------------------

Q1 = f"arn:aws:sqs:us-east-1:{ACCOUNT}:queue1"

RESOURCE_CASES = [
    grants("res-exact", allow("s3:*", RES), ACTION, RES, True),
    grants("res-case-sensitive", allow("s3:*", "arn:aws:s3:::Bucket/key"), ACTION, RES, False),
    grants("res-case-sensitive-key", allow("s3:*", "arn:aws:s3:::bucket/KEY"), ACTION, RES, False),
    grants(
        "res-star-spans-slash",
        allow("s3:*", "arn:aws:s3:::bucket/*"),
        ACTION,
        "arn:aws:s3:::bucket/a/b/c",
        True,
    ),
    grants(
        "res-star-bucket-prefix",
        allow("s3:*", "arn:aws:s3:::bucket*"),
        ACTION,
        "arn:aws:s3:::bucket-2",
        True,
    ),
    grants(
        "res-star-other-bucket",
        allow("s3:*", "arn:aws:s3:::bucket/*"),
        ACTION,
        "arn:aws:s3:::other/key",
        False,
    ),
    grants(
        "res-qmark", allow("s3:*", "arn:aws:s3:::bucket/?"), ACTION, "arn:aws:s3:::bucket/a", True
    ),
    grants(
        "res-qmark-one-char",
        allow("s3:*", "arn:aws:s3:::bucket/?"),
        ACTION,
        "arn:aws:s3:::bucket/ab",
        False,
    ),
    grants(
        "res-qmark-not-empty",
        allow("s3:*", "arn:aws:s3:::bucket/?"),
        ACTION,
        "arn:aws:s3:::bucket/",
        False,
    ),
    grants(
        "res-star-spans-colon",
        allow("ssm:*", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/*"),
        "ssm:GetParameter",
        f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/a:b",
        True,
    ),
    grants(
        "res-region-wildcard",
        allow("sqs:*", f"arn:aws:sqs:us-*-1:{ACCOUNT}:queue1"),
        "sqs:SendMessage",
        Q1,
        True,
    ),
    grants(
        "res-region-wildcard-other",
        allow("sqs:*", f"arn:aws:sqs:us-*-1:{ACCOUNT}:queue1"),
        "sqs:SendMessage",
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:queue1",
        False,
    ),
    grants(
        "res-account-wildcard",
        allow("sqs:*", "arn:aws:sqs:*:*:queue1"),
        "sqs:SendMessage",
        Q1,
        True,
    ),
    grants(
        "res-account-other",
        allow("sqs:*", f"arn:aws:sqs:*:{OTHER_ACCOUNT}:queue1"),
        "sqs:SendMessage",
        Q1,
        False,
    ),
    grants(
        "res-short-pattern", allow("sqs:*", "arn:aws:sqs:us-east-1:*"), "sqs:SendMessage", Q1, True
    ),
    grants(
        "res-short-pattern-other-region",
        allow("sqs:*", "arn:aws:sqs:us-east-1:*"),
        "sqs:SendMessage",
        f"arn:aws:sqs:us-west-2:{ACCOUNT}:queue1",
        False,
    ),
    grants("res-star", allow("s3:*", "*"), ACTION, RES, True),
    grants(
        "res-list-any",
        allow("s3:*", ["arn:aws:s3:::a/*", "arn:aws:s3:::bucket/*"]),
        ACTION,
        RES,
        True,
    ),
    grants("res-list-with-star", allow("s3:*", ["arn:aws:s3:::a/*", "*"]), ACTION, RES, True),
    grants(
        "res-dot-literal",
        allow("s3:*", "arn:aws:s3:::bucket/a.b"),
        ACTION,
        "arn:aws:s3:::bucket/axb",
        False,
    ),
    grants(
        "res-brackets-literal-no",
        allow("s3:*", "arn:aws:s3:::bucket/[ab]"),
        ACTION,
        "arn:aws:s3:::bucket/a",
        False,
    ),
    grants(
        "res-brackets-literal-yes",
        allow("s3:*", "arn:aws:s3:::bucket/[ab]"),
        ACTION,
        "arn:aws:s3:::bucket/[ab]",
        True,
    ),
    grants("res-other-service", allow("*", "arn:aws:sqs:*:*:*"), ACTION, RES, False),
    grants(
        "notres-other", allow("s3:*", None, not_resource="arn:aws:s3:::secret/*"), ACTION, RES, True
    ),
    grants(
        "notres-listed",
        allow("s3:*", None, not_resource="arn:aws:s3:::secret/*"),
        ACTION,
        "arn:aws:s3:::secret/x",
        False,
    ),
    grants(
        "notres-case-sensitive",
        allow("s3:*", None, not_resource="arn:aws:s3:::Secret/*"),
        ACTION,
        "arn:aws:s3:::secret/x",
        True,
    ),
    grants(
        "notres-list",
        allow("s3:*", None, not_resource=["arn:aws:s3:::a/*", RES]),
        ACTION,
        RES,
        False,
    ),
    Case(
        "notres-deny-outside-bucket",
        (
            doc(
                allow("*", "*", sid="All"),
                deny("s3:*", None, sid="Fence", not_resource="arn:aws:s3:::bucket/*"),
            ),
        ),
        ACTION,
        EXPLICIT_DENY,
        "arn:aws:s3:::other/key",
        matched=("Fence",),
    ),
    Case(
        "notres-deny-inside-bucket",
        (
            doc(
                allow("*", "*", sid="All"),
                deny("s3:*", None, sid="Fence", not_resource="arn:aws:s3:::bucket/*"),
            ),
        ),
        ACTION,
        ALLOWED,
        RES,
        matched=("All",),
    ),
    # The simulator's unspecified resource "*" (§4.2, last bullet).
    grants("unspec-allow-specific-resource", allow("s3:*", RES), ACTION, "*", True),
    Case(
        "unspec-deny-specific-resource",
        (doc(allow("*", "*", sid="All"), deny("s3:*", RES, sid="D")),),
        ACTION,
        ALLOWED,
        "*",
        matched=("All",),
    ),
    Case(
        "unspec-deny-star-resource",
        (doc(allow("*", "*", sid="All"), deny("s3:*", "*", sid="D")),),
        ACTION,
        EXPLICIT_DENY,
        "*",
        matched=("D",),
    ),
    grants(
        "unspec-allow-notresource-specific",
        allow("s3:*", None, not_resource=RES),
        ACTION,
        "*",
        True,
    ),
    grants(
        "unspec-allow-notresource-star", allow("s3:*", None, not_resource="*"), ACTION, "*", False
    ),
    Case(
        "unspec-deny-notresource-specific",
        (doc(allow("*", "*", sid="All"), deny("s3:*", None, sid="D", not_resource=RES)),),
        ACTION,
        EXPLICIT_DENY,
        "*",
        matched=("D",),
    ),
    Case(
        "unspec-deny-notresource-star",
        (doc(allow("*", "*", sid="All"), deny("s3:*", None, sid="D", not_resource="*")),),
        ACTION,
        ALLOWED,
        "*",
        matched=("All",),
    ),
]

# -- deny overrides and combination of statements (§6) ----------------------------------------

DENY_CASES = [
    Case(
        "deny-same-policy",
        (doc(allow("s3:*", "*", sid="A"), deny(ACTION, "*", sid="D")),),
        ACTION,
        EXPLICIT_DENY,
        RES,
        matched=("D",),
    ),
    Case(
        "deny-other-policy",
        (doc(allow("s3:*", "*", sid="A")), doc(deny(ACTION, RES, sid="D"))),
        ACTION,
        EXPLICIT_DENY,
        RES,
        matched=("D",),
    ),
    Case(
        "deny-first-then-allow",
        (doc(deny(ACTION, RES, sid="D")), doc(allow("*", "*", sid="A"))),
        ACTION,
        EXPLICIT_DENY,
        RES,
        matched=("D",),
    ),
    Case(
        "deny-other-action",
        (doc(allow("s3:*", "*", sid="A"), deny("s3:Put*", "*", sid="D")),),
        ACTION,
        ALLOWED,
        RES,
        matched=("A",),
    ),
    Case(
        "deny-other-resource",
        (doc(allow("s3:*", "*", sid="A"), deny("s3:*", "arn:aws:s3:::secret/*", sid="D")),),
        ACTION,
        ALLOWED,
        RES,
        matched=("A",),
    ),
    Case(
        "deny-condition-false",
        (
            doc(
                allow("s3:*", "*", sid="A"),
                deny("s3:*", "*", sid="D", condition={"StringEquals": {U: "bob"}}),
            ),
        ),
        ACTION,
        ALLOWED,
        RES,
        (string(U, "alice"),),
        matched=("A",),
    ),
    Case(
        "deny-without-allow",
        (doc(deny(ACTION, RES, sid="D")),),
        ACTION,
        EXPLICIT_DENY,
        RES,
        matched=("D",),
    ),
    Case(
        "deny-two-denies",
        (doc(deny("s3:*", "*", sid="D1"), deny(ACTION, RES, sid="D2")),),
        ACTION,
        EXPLICIT_DENY,
        RES,
        matched=("D1", "D2"),
    ),
    Case(
        "allow-two-statements",
        (doc(allow("s3:*", "*", sid="A1"), allow(ACTION, RES, sid="A2")),),
        ACTION,
        ALLOWED,
        RES,
        matched=("A1", "A2"),
    ),
    Case(
        "allow-two-policies",
        (doc(allow("s3:*", "*", sid="A1")), doc(allow(ACTION, RES, sid="A2"))),
        ACTION,
        ALLOWED,
        RES,
        matched=("A1", "A2"),
    ),
    Case(
        "allow-one-of-two-statements",
        (doc(allow("s3:*", "*", sid="A1"), allow("ec2:*", "*", sid="A2")),),
        ACTION,
        ALLOWED,
        RES,
        matched=("A1",),
    ),
    Case(
        "nothing-applies",
        (doc(allow("ec2:*", "*", sid="A")),),
        ACTION,
        IMPLICIT_DENY,
        RES,
        matched=(),
    ),
    Case(
        "single-statement-object",
        (
            json.dumps(
                {
                    "Version": V2012,
                    "Statement": {
                        "Sid": "Only",
                        "Effect": "Allow",
                        "Action": ACTION,
                        "Resource": "*",
                    },
                }
            ),
        ),
        ACTION,
        ALLOWED,
        RES,
        matched=("Only",),
    ),
    Case(
        "statement-order-irrelevant",
        (doc(deny(ACTION, RES, sid="D"), allow("s3:*", "*", sid="A"), allow("*", "*", sid="B")),),
        ACTION,
        EXPLICIT_DENY,
        RES,
        matched=("D",),
    ),
]

# -- permissions boundaries (§8.2 step 6, §8.3) -----------------------------------------------

BOUNDARY_CASES = [
    Case(
        "pb-both-allow",
        (doc(allow("s3:*", "*", sid="Id")),),
        ACTION,
        ALLOWED,
        RES,
        boundary=doc(allow("s3:*", "*", sid="Pb")),
        matched=("Id", "Pb"),
    ),
    Case(
        "pb-does-not-allow",
        (doc(allow("s3:*", "*", sid="Id")),),
        ACTION,
        IMPLICIT_DENY,
        RES,
        boundary=doc(allow("ec2:*", "*", sid="Pb")),
        matched=(),
    ),
    Case(
        "pb-allows-identity-does-not",
        (UNRELATED,),
        ACTION,
        IMPLICIT_DENY,
        RES,
        boundary=doc(allow("s3:*", "*", sid="Pb")),
        matched=(),
    ),
    Case(
        "pb-intersection-inside",
        (ALLOW_ALL,),
        ACTION,
        ALLOWED,
        RES,
        boundary=doc(allow("s3:*", "*", sid="Pb")),
    ),
    Case(
        "pb-intersection-outside",
        (ALLOW_ALL,),
        "ec2:RunInstances",
        IMPLICIT_DENY,
        "*",
        boundary=doc(allow("s3:*", "*", sid="Pb")),
    ),
    Case(
        "pb-deny",
        (ALLOW_ALL,),
        "s3:DeleteObject",
        EXPLICIT_DENY,
        RES,
        boundary=doc(allow("*", "*", sid="Pb"), deny("s3:DeleteObject", "*", sid="PbDeny")),
        matched=("PbDeny",),
    ),
    Case(
        "pb-deny-other-action",
        (ALLOW_ALL,),
        ACTION,
        ALLOWED,
        RES,
        boundary=doc(allow("*", "*", sid="Pb"), deny("s3:DeleteObject", "*", sid="PbDeny")),
    ),
    Case(
        "pb-identity-deny",
        (doc(allow("*", "*", sid="Id"), deny(ACTION, "*", sid="IdDeny")),),
        ACTION,
        EXPLICIT_DENY,
        RES,
        boundary=doc(allow("*", "*", sid="Pb")),
        matched=("IdDeny",),
    ),
    Case(
        "pb-condition-false",
        (ALLOW_ALL,),
        ACTION,
        IMPLICIT_DENY,
        RES,
        (string("aws:RequestedRegion", "eu-west-1"),),
        boundary=doc(
            allow(
                "*", "*", sid="Pb", condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
            )
        ),
    ),
    Case(
        "pb-condition-true",
        (ALLOW_ALL,),
        ACTION,
        ALLOWED,
        RES,
        (string("aws:RequestedRegion", "us-east-1"),),
        boundary=doc(
            allow(
                "*", "*", sid="Pb", condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
            )
        ),
    ),
    Case(
        "pb-notaction",
        (ALLOW_ALL,),
        "iam:CreateUser",
        IMPLICIT_DENY,
        "*",
        boundary=doc(allow(None, "*", sid="Pb", not_action="iam:*")),
    ),
    Case(
        "pb-notaction-other",
        (ALLOW_ALL,),
        ACTION,
        ALLOWED,
        RES,
        boundary=doc(allow(None, "*", sid="Pb", not_action="iam:*")),
    ),
    Case(
        "pb-resource-inside",
        (doc(allow(ACTION, "arn:aws:s3:::bucket/*", sid="Id")),),
        ACTION,
        ALLOWED,
        "arn:aws:s3:::bucket/public/x",
        boundary=doc(allow("s3:*", "arn:aws:s3:::bucket/public/*", sid="Pb")),
    ),
    Case(
        "pb-resource-outside",
        (doc(allow(ACTION, "arn:aws:s3:::bucket/*", sid="Id")),),
        ACTION,
        IMPLICIT_DENY,
        "arn:aws:s3:::bucket/private/x",
        boundary=doc(allow("s3:*", "arn:aws:s3:::bucket/public/*", sid="Pb")),
    ),
    Case(
        "pb-version-2008-accepted",
        (ALLOW_ALL,),
        ACTION,
        ALLOWED,
        RES,
        boundary=doc(allow("s3:*", "*", sid="Pb"), version=V2008),
    ),
]

# -- resource-based policies, same account and cross-account (§8.2 step 4, §8.3, §8.4) --------


def rp_case(
    case_id: str,
    policy: str,
    expected: str,
    *,
    identity: tuple[str, ...] = (UNRELATED,),
    boundary: str | None = None,
    caller: str = ALICE,
    owner: str | None = None,
    action: str = ACTION,
    context: tuple[Entry, ...] = (),
    matched: tuple[str, ...] | None = None,
) -> Case:
    """A case with a resource policy on :data:`SHARED` (an S3 object: owner from ``owner``)."""
    return Case(
        case_id,
        identity,
        action,
        expected,
        SHARED,
        context,
        boundary=boundary,
        resource_policy=policy,
        caller=caller,
        resource_owner=owner,
        matched=matched,
    )


def rp(*statements: dict[str, object]) -> str:
    """A resource policy document."""
    return doc(*statements)


def rp_allow(
    principal: Json, sid: str = "Rp", condition: dict[str, dict[str, Json]] | None = None
) -> dict[str, object]:
    """A resource-policy ``Allow`` of ``s3:GetObject`` on the shared bucket."""
    return allow(
        ACTION, "arn:aws:s3:::shared-bucket/*", sid=sid, principal=principal, condition=condition
    )


ID_ALLOWS = doc(allow(ACTION, "*", sid="Id"))

RESOURCE_POLICY_CASES = [
    rp_case("rp-user-grant", rp(rp_allow(aws(ALICE))), ALLOWED, matched=("Rp",)),
    rp_case(
        "rp-user-grant-boundary-denies",
        rp(rp_allow(aws(ALICE))),
        ALLOWED,
        boundary=doc(allow("ec2:*", "*", sid="Pb")),
    ),
    rp_case("rp-user-grant-and-identity", rp(rp_allow(aws(ALICE))), ALLOWED, identity=(ID_ALLOWS,)),
    rp_case("rp-user-grant-other-user", rp(rp_allow(aws(BOB))), IMPLICIT_DENY, matched=()),
    rp_case("rp-user-grant-to-bob", rp(rp_allow(aws(BOB))), ALLOWED, caller=BOB),
    rp_case("rp-user-grant-list", rp(rp_allow(aws(BOB, ALICE))), ALLOWED),
    rp_case("rp-account-root-alone", rp(rp_allow(aws(ACCOUNT_ROOT))), IMPLICIT_DENY),
    rp_case("rp-account-id-alone", rp(rp_allow(aws(ACCOUNT))), IMPLICIT_DENY),
    rp_case(
        "rp-account-root-and-identity",
        rp(rp_allow(aws(ACCOUNT_ROOT))),
        ALLOWED,
        identity=(ID_ALLOWS,),
    ),
    rp_case(
        "rp-account-id-and-identity", rp(rp_allow(aws(ACCOUNT))), ALLOWED, identity=(ID_ALLOWS,)
    ),
    rp_case("rp-star-principal", rp(rp_allow("*")), ALLOWED, matched=("Rp",)),
    rp_case("rp-aws-star-principal", rp(rp_allow(aws("*"))), ALLOWED),
    rp_case("rp-role-arn-user-caller", rp(rp_allow(aws(ROLE))), IMPLICIT_DENY),
    rp_case(
        "rp-service-principal-user-caller",
        rp(rp_allow({"Service": "ec2.amazonaws.com"})),
        IMPLICIT_DENY,
    ),
    rp_case(
        "rp-other-action",
        rp(allow("s3:PutObject", "*", sid="Rp", principal=aws(ALICE))),
        IMPLICIT_DENY,
    ),
    rp_case(
        "rp-other-resource",
        rp(allow(ACTION, "arn:aws:s3:::other/*", sid="Rp", principal=aws(ALICE))),
        IMPLICIT_DENY,
    ),
    rp_case(
        "rp-condition-false",
        rp(rp_allow(aws(ALICE), condition={"Bool": {TLS: "true"}})),
        IMPLICIT_DENY,
        context=(boolean(TLS, "false"),),
    ),
    rp_case(
        "rp-condition-true",
        rp(rp_allow(aws(ALICE), condition={"Bool": {TLS: "true"}})),
        ALLOWED,
        context=(boolean(TLS, "true"),),
    ),
    rp_case(
        "rp-identity-suffices-same-account",
        rp(rp_allow(aws(BOB))),
        ALLOWED,
        identity=(ID_ALLOWS,),
        matched=("Id",),
    ),
    rp_case(
        "rp-deny-user",
        rp(deny(ACTION, "*", sid="RpDeny", principal=aws(ALICE))),
        EXPLICIT_DENY,
        identity=(ID_ALLOWS,),
        matched=("RpDeny",),
    ),
    rp_case(
        "rp-deny-star",
        rp(rp_allow(aws(ALICE)), deny(ACTION, "*", sid="RpDeny", principal="*")),
        EXPLICIT_DENY,
        matched=("RpDeny",),
    ),
    rp_case(
        "rp-deny-other-user",
        rp(deny(ACTION, "*", sid="RpDeny", principal=aws(BOB))),
        ALLOWED,
        identity=(ID_ALLOWS,),
    ),
    rp_case(
        "rp-grant-identity-deny",
        rp(rp_allow(aws(ALICE))),
        EXPLICIT_DENY,
        identity=(doc(deny(ACTION, "*", sid="IdDeny")),),
        matched=("IdDeny",),
    ),
    rp_case(
        "rp-grant-boundary-deny",
        rp(rp_allow(aws(ALICE))),
        EXPLICIT_DENY,
        boundary=doc(allow("*", "*", sid="Pb"), deny(ACTION, "*", sid="PbDeny")),
    ),
    # Cross-account: the resource belongs to OTHER_ACCOUNT (§8.4).
    rp_case(
        "x-user-grant-and-identity",
        rp(rp_allow(aws(ALICE))),
        ALLOWED,
        identity=(ID_ALLOWS,),
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-user-grant-no-identity", rp(rp_allow(aws(ALICE))), IMPLICIT_DENY, owner=OTHER_ACCOUNT
    ),
    rp_case(
        "x-account-grant-and-identity",
        rp(rp_allow(aws(ACCOUNT_ROOT))),
        ALLOWED,
        identity=(ID_ALLOWS,),
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-account-id-grant-and-identity",
        rp(rp_allow(aws(ACCOUNT))),
        ALLOWED,
        identity=(ID_ALLOWS,),
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-account-grant-no-identity",
        rp(rp_allow(aws(ACCOUNT_ROOT))),
        IMPLICIT_DENY,
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-no-grant-identity",
        rp(rp_allow(aws(f"arn:aws:iam::{OTHER_ACCOUNT}:root"))),
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-grant-other-user",
        rp(rp_allow(aws(BOB))),
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-star-and-identity",
        rp(rp_allow("*")),
        ALLOWED,
        identity=(ID_ALLOWS,),
        owner=OTHER_ACCOUNT,
    ),
    rp_case("x-star-no-identity", rp(rp_allow("*")), IMPLICIT_DENY, owner=OTHER_ACCOUNT),
    rp_case(
        "x-deny",
        rp(rp_allow(aws(ALICE)), deny(ACTION, "*", sid="RpDeny", principal="*")),
        EXPLICIT_DENY,
        identity=(ID_ALLOWS,),
        owner=OTHER_ACCOUNT,
        matched=("RpDeny",),
    ),
    rp_case(
        "x-boundary-denies",
        rp(rp_allow(aws(ALICE))),
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        boundary=doc(allow("ec2:*", "*", sid="Pb")),
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-boundary-allows",
        rp(rp_allow(aws(ALICE))),
        ALLOWED,
        identity=(ID_ALLOWS,),
        boundary=doc(allow("s3:*", "*", sid="Pb")),
        owner=OTHER_ACCOUNT,
    ),
    rp_case(
        "x-identity-condition-false",
        rp(rp_allow(aws(ALICE))),
        IMPLICIT_DENY,
        identity=(doc(allow(ACTION, "*", sid="Id", condition={"Bool": {TLS: "true"}})),),
        owner=OTHER_ACCOUNT,
        context=(boolean(TLS, "false"),),
    ),
    rp_case(
        "x-identity-deny",
        rp(rp_allow(aws(ALICE))),
        EXPLICIT_DENY,
        identity=(doc(allow("*", "*", sid="Id"), deny(ACTION, "*", sid="IdDeny")),),
        owner=OTHER_ACCOUNT,
        matched=("IdDeny",),
    ),
    # NotPrincipal (§4.4): Deny to everybody except the listed principals.
    rp_case(
        "notprincipal-exempt-user",
        rp(deny(ACTION, "*", sid="Fence", not_principal=aws(ALICE))),
        ALLOWED,
        identity=(ALLOW_ALL,),
        matched=("All",),
    ),
    rp_case(
        "notprincipal-other-user",
        rp(deny(ACTION, "*", sid="Fence", not_principal=aws(ALICE))),
        EXPLICIT_DENY,
        identity=(ALLOW_ALL,),
        caller=BOB,
        matched=("Fence",),
    ),
    rp_case(
        "notprincipal-list",
        rp(deny(ACTION, "*", sid="Fence", not_principal=aws(BOB, ALICE))),
        ALLOWED,
        identity=(ALLOW_ALL,),
    ),
    rp_case(
        "notprincipal-account-root-does-not-exempt-user",
        rp(deny(ACTION, "*", sid="Fence", not_principal=aws(ACCOUNT_ROOT))),
        EXPLICIT_DENY,
        identity=(ALLOW_ALL,),
    ),
    rp_case(
        "notprincipal-boundary-quirk",
        rp(deny(ACTION, "*", sid="Fence", not_principal=aws(ALICE))),
        EXPLICIT_DENY,
        identity=(ALLOW_ALL,),
        boundary=doc(allow("*", "*", sid="Pb")),
    ),
    rp_case(
        "notprincipal-condition-false",
        rp(
            deny(
                ACTION,
                "*",
                sid="Fence",
                not_principal=aws(ALICE),
                condition={"Bool": {TLS: "false"}},
            )
        ),
        ALLOWED,
        identity=(ALLOW_ALL,),
        caller=BOB,
        context=(boolean(TLS, "true"),),
    ),
    rp_case(
        "notprincipal-other-action",
        rp(deny("s3:PutObject", "*", sid="Fence", not_principal=aws(ALICE))),
        ALLOWED,
        identity=(ALLOW_ALL,),
        caller=BOB,
    ),
]

# -- session policies and non-user callers (engine only; §8.2 steps 4 and 7, §8.3) ------------


def session_case(
    case_id: str,
    expected: str,
    *,
    identity: tuple[str, ...] = (UNRELATED,),
    session: tuple[str, ...] | None = None,
    boundary: str | None = None,
    resource_policy: str | None = None,
    caller: str = ROLE_SESSION,
    issuer: str | None = ROLE,
    owner: str | None = None,
    matched: tuple[str, ...] | None = None,
) -> Case:
    """A role-session (default) or federated-user request; never sent to the simulator."""
    return Case(
        case_id,
        identity,
        ACTION,
        expected,
        SHARED,
        boundary=boundary,
        resource_policy=resource_policy,
        caller=caller,
        resource_owner=owner,
        session_policies=session,
        issuer=issuer,
        matched=matched,
        engine_only=SESSION_ONLY if session is not None else NOT_A_USER,
    )


SP_ALLOWS = doc(allow("s3:*", "*", sid="Sp"))
SP_OTHER = doc(allow("ec2:*", "*", sid="Sp"))
PB_ALLOWS = doc(allow("s3:*", "*", sid="Pb"))
PB_OTHER = doc(allow("ec2:*", "*", sid="Pb"))

SESSION_CASES = [
    session_case(
        "sp-role-all-allow",
        ALLOWED,
        identity=(ID_ALLOWS,),
        session=(SP_ALLOWS,),
        boundary=PB_ALLOWS,
        matched=("Id", "Pb", "Sp"),
    ),
    session_case(
        "sp-role-session-denies",
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        session=(SP_OTHER,),
        boundary=PB_ALLOWS,
    ),
    session_case("sp-role-no-session-policy", ALLOWED, identity=(ID_ALLOWS,)),
    session_case("sp-role-session-only", IMPLICIT_DENY, session=(SP_ALLOWS,)),
    session_case(
        "sp-role-boundary-denies",
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        session=(SP_ALLOWS,),
        boundary=PB_OTHER,
    ),
    session_case(
        "sp-deny",
        EXPLICIT_DENY,
        identity=(ALLOW_ALL,),
        session=(doc(allow("*", "*", sid="Sp"), deny(ACTION, "*", sid="SpDeny")),),
        matched=("SpDeny",),
    ),
    session_case(
        "sp-two-policies-one-allows",
        ALLOWED,
        identity=(ID_ALLOWS,),
        session=(SP_OTHER, doc(allow(ACTION, "*", sid="Sp2"))),
    ),
    session_case(
        "sp-intersection-resource",
        IMPLICIT_DENY,
        identity=(ALLOW_ALL,),
        session=(doc(allow("s3:*", "arn:aws:s3:::bucket/*", sid="Sp")),),
    ),
    session_case(
        "sp-fed-no-session-policy",
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        caller=FED_USER,
        issuer=ALICE,
    ),
    session_case(
        "sp-fed-session-policy",
        ALLOWED,
        identity=(ID_ALLOWS,),
        session=(SP_ALLOWS,),
        caller=FED_USER,
        issuer=ALICE,
    ),
    session_case(
        "sp-fed-session-policy-other",
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        session=(SP_OTHER,),
        caller=FED_USER,
        issuer=ALICE,
    ),
    session_case("sp-rp-role-arn", ALLOWED, resource_policy=rp(rp_allow(aws(ROLE)))),
    session_case(
        "sp-rp-role-arn-boundary-denies",
        IMPLICIT_DENY,
        resource_policy=rp(rp_allow(aws(ROLE))),
        boundary=PB_OTHER,
    ),
    session_case(
        "sp-rp-role-arn-session-denies",
        IMPLICIT_DENY,
        resource_policy=rp(rp_allow(aws(ROLE))),
        boundary=PB_ALLOWS,
        session=(SP_OTHER,),
    ),
    session_case(
        "sp-rp-role-arn-all-allow",
        ALLOWED,
        resource_policy=rp(rp_allow(aws(ROLE))),
        boundary=PB_ALLOWS,
        session=(SP_ALLOWS,),
    ),
    session_case(
        "sp-rp-session-arn",
        ALLOWED,
        resource_policy=rp(rp_allow(aws(ROLE_SESSION))),
        boundary=PB_OTHER,
        session=(SP_OTHER,),
        matched=("Rp",),
    ),
    session_case(
        "sp-rp-other-session-arn",
        IMPLICIT_DENY,
        resource_policy=rp(rp_allow(aws(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s2"))),
    ),
    session_case(
        "sp-rp-account-delegation", IMPLICIT_DENY, resource_policy=rp(rp_allow(aws(ACCOUNT_ROOT)))
    ),
    session_case(
        "sp-rp-fed-arn",
        ALLOWED,
        resource_policy=rp(rp_allow(aws(FED_USER))),
        boundary=PB_OTHER,
        session=(SP_OTHER,),
        caller=FED_USER,
        issuer=ALICE,
    ),
    session_case(
        "sp-rp-parent-user-all-allow",
        ALLOWED,
        resource_policy=rp(rp_allow(aws(ALICE))),
        boundary=PB_ALLOWS,
        session=(SP_ALLOWS,),
        caller=FED_USER,
        issuer=ALICE,
    ),
    session_case(
        "sp-rp-parent-user-boundary-denies",
        IMPLICIT_DENY,
        resource_policy=rp(rp_allow(aws(ALICE))),
        boundary=PB_OTHER,
        session=(SP_ALLOWS,),
        caller=FED_USER,
        issuer=ALICE,
    ),
    session_case(
        "sp-fed-identity-deny-over-rp",
        EXPLICIT_DENY,
        identity=(doc(deny(ACTION, "*", sid="IdDeny")),),
        resource_policy=rp(rp_allow(aws(FED_USER))),
        session=(SP_ALLOWS,),
        caller=FED_USER,
        issuer=ALICE,
    ),
    session_case(
        "notprincipal-role-arn-does-not-exempt-session",
        EXPLICIT_DENY,
        identity=(ALLOW_ALL,),
        resource_policy=rp(deny(ACTION, "*", sid="Fence", not_principal=aws(ROLE))),
    ),
    session_case(
        "notprincipal-session-arn-exempts",
        ALLOWED,
        identity=(ALLOW_ALL,),
        resource_policy=rp(
            deny(ACTION, "*", sid="Fence", not_principal=aws(ROLE_SESSION, ROLE, ACCOUNT_ROOT))
        ),
    ),
    session_case(
        "x-role-session-account-grant",
        ALLOWED,
        identity=(ID_ALLOWS,),
        resource_policy=rp(rp_allow(aws(ACCOUNT_ROOT))),
        owner=OTHER_ACCOUNT,
    ),
    session_case(
        "x-role-session-no-grant",
        IMPLICIT_DENY,
        identity=(ID_ALLOWS,),
        resource_policy=rp(rp_allow(aws(BOB))),
        owner=OTHER_ACCOUNT,
    ),
    session_case("root-allowed-without-policies", ALLOWED, caller=ACCOUNT_ROOT, issuer=None),
    session_case(
        "root-explicit-deny",
        EXPLICIT_DENY,
        caller=ACCOUNT_ROOT,
        issuer=None,
        identity=(doc(deny(ACTION, "*", sid="D")),),
    ),
    session_case(
        "root-resource-policy-deny",
        EXPLICIT_DENY,
        caller=ACCOUNT_ROOT,
        issuer=None,
        resource_policy=rp(deny(ACTION, "*", sid="RpDeny", principal="*")),
    ),
]

# -- policy variables (§7) --------------------------------------------------------------------

HOME = "arn:aws:s3:::bucket/${aws:username}/*"
ANON_HOME = "arn:aws:s3:::bucket/${aws:username, 'anon'}/*"
TEAM = "aws:PrincipalTag/team"
PREFIX = "s3:prefix"

VARIABLE_CASES = [
    grants(
        "var-resource-resolved",
        allow("s3:*", HOME),
        ACTION,
        "arn:aws:s3:::bucket/alice/x",
        True,
        context=[string(U, "alice")],
    ),
    grants(
        "var-resource-other-user",
        allow("s3:*", HOME),
        ACTION,
        "arn:aws:s3:::bucket/bob/x",
        False,
        context=[string(U, "alice")],
    ),
    grants(
        "var-resource-missing", allow("s3:*", HOME), ACTION, "arn:aws:s3:::bucket/alice/x", False
    ),
    grants(
        "var-resource-missing-literal",
        allow("s3:*", HOME),
        ACTION,
        "arn:aws:s3:::bucket/${aws:username}/x",
        False,
    ),
    grants(
        "var-resource-key-case",
        allow("s3:*", "arn:aws:s3:::bucket/${AWS:UserName}/*"),
        ACTION,
        "arn:aws:s3:::bucket/alice/x",
        True,
        context=[string(U, "alice")],
    ),
    grants(
        "var-default-used", allow("s3:*", ANON_HOME), ACTION, "arn:aws:s3:::bucket/anon/x", True
    ),
    grants(
        "var-default-ignored-when-present",
        allow("s3:*", ANON_HOME),
        ACTION,
        "arn:aws:s3:::bucket/anon/x",
        False,
        context=[string(U, "alice")],
    ),
    grants(
        "var-default-present-value",
        allow("s3:*", ANON_HOME),
        ACTION,
        "arn:aws:s3:::bucket/alice/x",
        True,
        context=[string(U, "alice")],
    ),
    grants(
        "var-value-star-is-literal-no",
        allow("s3:*", "arn:aws:s3:::bucket/${aws:username}"),
        ACTION,
        "arn:aws:s3:::bucket/alice",
        False,
        context=[string(U, "*")],
    ),
    grants(
        "var-value-star-is-literal-yes",
        allow("s3:*", "arn:aws:s3:::bucket/${aws:username}"),
        ACTION,
        "arn:aws:s3:::bucket/*",
        True,
        context=[string(U, "*")],
    ),
    grants(
        "var-tag",
        allow("s3:*", "arn:aws:s3:::${aws:PrincipalTag/team}-data/*"),
        ACTION,
        "arn:aws:s3:::red-data/k",
        True,
        context=[string(TEAM, "red")],
    ),
    grants(
        "var-tag-default",
        allow("s3:*", "arn:aws:s3:::${aws:PrincipalTag/team, 'shared'}/*"),
        ACTION,
        "arn:aws:s3:::shared/k",
        True,
    ),
    grants(
        "var-multivalued-unresolved",
        allow("s3:*", "arn:aws:s3:::bucket/${aws:TagKeys}"),
        ACTION,
        "arn:aws:s3:::bucket/a",
        False,
        context=[strings(TK, "a")],
    ),
    grants(
        "var-escape-star-literal-no",
        allow("s3:*", "arn:aws:s3:::bucket/${*}"),
        ACTION,
        "arn:aws:s3:::bucket/x",
        False,
    ),
    grants(
        "var-escape-star-literal-yes",
        allow("s3:*", "arn:aws:s3:::bucket/${*}"),
        ACTION,
        "arn:aws:s3:::bucket/*",
        True,
    ),
    grants(
        "var-escape-qmark-literal-no",
        allow("s3:*", "arn:aws:s3:::bucket/a${?}c"),
        ACTION,
        "arn:aws:s3:::bucket/abc",
        False,
    ),
    grants(
        "var-escape-qmark-literal-yes",
        allow("s3:*", "arn:aws:s3:::bucket/a${?}c"),
        ACTION,
        "arn:aws:s3:::bucket/a?c",
        True,
    ),
    grants(
        "var-escape-dollar",
        allow("s3:*", "arn:aws:s3:::bucket/cost${$}"),
        ACTION,
        "arn:aws:s3:::bucket/cost$",
        True,
    ),
    when(
        "var-cond-stringequals",
        "StringEquals",
        PREFIX,
        "home/${aws:username}/",
        [string(PREFIX, "home/alice/"), string(U, "alice")],
        True,
    ),
    when(
        "var-cond-stringequals-other",
        "StringEquals",
        PREFIX,
        "home/${aws:username}/",
        [string(PREFIX, "home/bob/"), string(U, "alice")],
        False,
    ),
    when(
        "var-cond-stringequals-missing",
        "StringEquals",
        PREFIX,
        "home/${aws:username}/",
        [string(PREFIX, "home//")],
        False,
    ),
    when(
        "var-cond-stringlike",
        "StringLike",
        PREFIX,
        "home/${aws:username}/*",
        [string(PREFIX, "home/alice/docs"), string(U, "alice")],
        True,
    ),
    when(
        "var-cond-stringlike-value-literal",
        "StringLike",
        PREFIX,
        "${aws:username}",
        [string(PREFIX, "abc"), string(U, "a*")],
        False,
    ),
    when(
        "var-cond-default",
        "StringEquals",
        PREFIX,
        "home/${aws:username, 'guest'}/",
        [string(PREFIX, "home/guest/")],
        True,
    ),
    when("var-cond-escape-star", "StringEquals", PREFIX, "a${*}", [string(PREFIX, "a*")], True),
    when(
        "var-cond-escape-qmark-like", "StringLike", PREFIX, "a${?}c", [string(PREFIX, "abc")], False
    ),
    when(
        "var-cond-escape-dollar",
        "StringEquals",
        PREFIX,
        "cost${$}",
        [string(PREFIX, "cost$")],
        True,
    ),
    when(
        "var-cond-arnlike",
        "ArnLike",
        SA,
        "arn:aws:sns:*:*:${aws:username}-*",
        [string(SA, "arn:aws:sns:us-east-1:111122223333:alice-topic"), string(U, "alice")],
        True,
    ),
    when(
        "var-cond-bool",
        "Bool",
        TLS,
        "${aws:PrincipalTag/secure}",
        [boolean(TLS, "true"), string("aws:PrincipalTag/secure", "true")],
        True,
    ),
    # Documented pattern (§7): a negated operator with an unresolved variable is true.
    deny_when(
        "var-neq-deny-no-tag",
        "StringNotEquals",
        "s3:ExistingObjectTag/Team",
        "${aws:PrincipalTag/Team}",
        [string("s3:ExistingObjectTag/Team", "red")],
        True,
    ),
    deny_when(
        "var-neq-deny-same-tag",
        "StringNotEquals",
        "s3:ExistingObjectTag/Team",
        "${aws:PrincipalTag/Team}",
        [string("s3:ExistingObjectTag/Team", "red"), string("aws:PrincipalTag/Team", "red")],
        False,
    ),
    deny_when(
        "var-neq-deny-other-tag",
        "StringNotEquals",
        "s3:ExistingObjectTag/Team",
        "${aws:PrincipalTag/Team}",
        [string("s3:ExistingObjectTag/Team", "red"), string("aws:PrincipalTag/Team", "blue")],
        True,
    ),
    Case(
        "var-notresource-unresolved-denies",
        (
            doc(
                allow("*", "*", sid="All"),
                deny("s3:*", None, sid="Home", not_resource="arn:aws:s3:::home/${aws:username}/*"),
            ),
        ),
        ACTION,
        EXPLICIT_DENY,
        "arn:aws:s3:::home/alice/x",
        matched=("Home",),
    ),
    Case(
        "var-notresource-resolved-exempts",
        (
            doc(
                allow("*", "*", sid="All"),
                deny("s3:*", None, sid="Home", not_resource="arn:aws:s3:::home/${aws:username}/*"),
            ),
        ),
        ACTION,
        ALLOWED,
        "arn:aws:s3:::home/alice/x",
        (string(U, "alice"),),
        matched=("All",),
    ),
    # Version 2008-10-17 or none: ${...} is plain text.
    grants(
        "var-2008-not-expanded",
        allow("s3:*", HOME),
        ACTION,
        "arn:aws:s3:::bucket/alice/x",
        False,
        version=V2008,
        context=[string(U, "alice")],
    ),
    grants(
        "var-2008-literal-text",
        allow("s3:*", HOME),
        ACTION,
        "arn:aws:s3:::bucket/${aws:username}/x",
        True,
        version=V2008,
        context=[string(U, "alice")],
    ),
    grants(
        "var-no-version-not-expanded",
        allow("s3:*", HOME),
        ACTION,
        "arn:aws:s3:::bucket/alice/x",
        False,
        version=None,
        context=[string(U, "alice")],
    ),
    grants(
        "var-no-version-literal-text",
        allow("s3:*", HOME),
        ACTION,
        "arn:aws:s3:::bucket/${aws:username}/x",
        True,
        version=None,
    ),
    grants(
        "var-2008-condition-literal",
        allow(ACTION, "*", condition={"StringEquals": {PREFIX: "${aws:username}"}}),
        ACTION,
        RES,
        True,
        version=V2008,
        context=[string(PREFIX, "${aws:username}"), string(U, "alice")],
    ),
    grants(
        "var-2008-condition-not-expanded",
        allow(ACTION, "*", condition={"StringEquals": {PREFIX: "${aws:username}"}}),
        ACTION,
        RES,
        False,
        version=V2008,
        context=[string(PREFIX, "alice"), string(U, "alice")],
    ),
]

# -- documents IAM rejects (§3) and odd ones it accepts ---------------------------------------


def raw(body: object) -> str:
    """JSON text of an arbitrary (possibly invalid) document."""
    return json.dumps(body)


GOOD_ST: dict[str, object] = {"Effect": "Allow", "Action": ACTION, "Resource": "*"}

MALFORMED_CASES = [
    malformed("bad-not-json", '{"Version": "2012-10-17", "Statement": ['),
    malformed("bad-top-level-list", raw([GOOD_ST])),
    malformed("bad-missing-statement", raw({"Version": V2012})),
    malformed("bad-empty-statement-list", raw({"Version": V2012, "Statement": []})),
    malformed("bad-statement-not-object", raw({"Version": V2012, "Statement": ["Allow"]})),
    malformed("bad-unknown-top-key", raw({"Version": V2012, "Foo": 1, "Statement": [GOOD_ST]})),
    malformed(
        "bad-unknown-statement-key",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Conditions": {}}]}),
    ),
    malformed(
        "bad-lowercase-key",
        raw(
            {
                "Version": V2012,
                "Statement": [{"effect": "Allow", "Action": ACTION, "Resource": "*"}],
            }
        ),
    ),
    malformed(
        "bad-effect-permit", raw({"Version": V2012, "Statement": [{**GOOD_ST, "Effect": "Permit"}]})
    ),
    malformed(
        "bad-effect-lowercase",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Effect": "allow"}]}),
    ),
    malformed(
        "bad-effect-uppercase",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Effect": "DENY"}]}),
    ),
    malformed(
        "bad-missing-effect",
        raw({"Version": V2012, "Statement": [{"Action": ACTION, "Resource": "*"}]}),
    ),
    malformed(
        "bad-missing-action",
        raw({"Version": V2012, "Statement": [{"Effect": "Allow", "Resource": "*"}]}),
    ),
    malformed(
        "bad-empty-action-list", raw({"Version": V2012, "Statement": [{**GOOD_ST, "Action": []}]})
    ),
    malformed(
        "bad-action-and-notaction",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "NotAction": "s3:Put*"}]}),
    ),
    malformed(
        "bad-action-object", raw({"Version": V2012, "Statement": [{**GOOD_ST, "Action": {"a": 1}}]})
    ),
    malformed(
        "bad-action-no-colon",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Action": "s3GetObject"}]}),
    ),
    malformed(
        "bad-action-two-colons",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Action": "s3:Get:Object"}]}),
    ),
    malformed(
        "bad-missing-resource",
        raw({"Version": V2012, "Statement": [{"Effect": "Allow", "Action": ACTION}]}),
    ),
    malformed(
        "bad-resource-and-notresource",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "NotResource": RES}]}),
    ),
    malformed(
        "bad-resource-not-arn",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Resource": "bucket"}]}),
    ),
    malformed(
        "bad-resource-five-parts",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Resource": "arn:aws:s3::bucket"}]}),
    ),
    malformed(
        "bad-resource-unknown-partition",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Resource": "arn:foo:s3:::b"}]}),
    ),
    malformed(
        "bad-resource-s3-region",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Resource": "arn:aws:s3:us-east-1::b"}]}),
    ),
    malformed("bad-version", raw({"Version": "2012-10-18", "Statement": [GOOD_ST]})),
    malformed(
        "bad-duplicate-key",
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Effect": "Deny", '
        '"Action": "s3:GetObject", "Resource": "*"}]}',
    ),
    malformed(
        "bad-duplicate-sid",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Sid": "A"}, {**GOOD_ST, "Sid": "A"}]}),
    ),
    malformed(
        "bad-sid-not-alphanumeric",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Sid": "my-sid"}]}),
    ),
    malformed("bad-sid-number", raw({"Version": V2012, "Statement": [{**GOOD_ST, "Sid": 7}]})),
    malformed(
        "bad-identity-principal",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Principal": "*"}]}),
    ),
    malformed(
        "bad-condition-not-object",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Condition": "x"}]}),
    ),
    malformed(
        "bad-unknown-operator",
        raw(
            {
                "Version": V2012,
                "Statement": [{**GOOD_ST, "Condition": {"StringEqualz": {U: "alice"}}}],
            }
        ),
    ),
    malformed(
        "bad-operator-lowercase",
        raw(
            {
                "Version": V2012,
                "Statement": [{**GOOD_ST, "Condition": {"stringequals": {U: "alice"}}}],
            }
        ),
    ),
    malformed(
        "bad-null-ifexists",
        raw(
            {
                "Version": V2012,
                "Statement": [{**GOOD_ST, "Condition": {"NullIfExists": {U: "true"}}}],
            }
        ),
    ),
    malformed(
        "bad-operator-value-not-object",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Condition": {"StringEquals": "alice"}}]}),
    ),
    malformed(
        "bad-condition-value-object",
        raw(
            {
                "Version": V2012,
                "Statement": [{**GOOD_ST, "Condition": {"StringEquals": {U: {"a": "b"}}}}],
            }
        ),
    ),
    malformed(
        "bad-date-month-13",
        raw(
            {
                "Version": V2012,
                "Statement": [
                    {**GOOD_ST, "Condition": {"DateLessThan": {T: "2024-13-01T00:00:00Z"}}}
                ],
            }
        ),
    ),
    malformed(
        "bad-date-word",
        raw(
            {
                "Version": V2012,
                "Statement": [{**GOOD_ST, "Condition": {"DateGreaterThan": {T: "yesterday"}}}],
            }
        ),
    ),
    malformed(
        "bad-boundary-effect",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Effect": "Permit"}]}),
        where="boundary",
    ),
    malformed(
        "bad-boundary-principal",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Principal": aws(ALICE)}]}),
        where="boundary",
    ),
    malformed(
        "bad-resource-policy-no-principal",
        raw({"Version": V2012, "Statement": [GOOD_ST]}),
        where="resource",
    ),
    malformed("bad-resource-policy-not-json", "{", where="resource"),
    accepted(
        "ok-empty-condition", raw({"Version": V2012, "Statement": [{**GOOD_ST, "Condition": {}}]})
    ),
    accepted(
        "ok-unknown-operator-empty",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Condition": {"Foo": {}}}]}),
    ),
    accepted(
        "ok-unknown-action-name",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Action": ["fsx:ListBucket", ACTION]}]}),
    ),
    accepted(
        "ok-resource-list-with-star",
        raw({"Version": V2012, "Statement": [{**GOOD_ST, "Resource": ["arn:aws:sqs:*:*:q", "*"]}]}),
    ),
    accepted("ok-id-in-identity", raw({"Version": V2012, "Id": "P1", "Statement": [GOOD_ST]})),
    accepted("ok-version-2008", raw({"Version": V2008, "Statement": [GOOD_ST]})),
    accepted("ok-no-version", raw({"Statement": [GOOD_ST]})),
    accepted(
        "ok-json-bool-number-values",
        raw(
            {
                "Version": V2012,
                "Statement": [
                    {
                        **GOOD_ST,
                        "Condition": {
                            "Null": {"aws:TokenIssueTime": True},
                            "NumericLessThanIfExists": {K: 5},
                        },
                    }
                ],
            }
        ),
    ),
    accepted(
        "ok-set-operator-single-value",
        raw(
            {
                "Version": V2012,
                "Statement": [
                    {**GOOD_ST, "Condition": {"ForAnyValue:StringEqualsIfExists": {TK: "a"}}}
                ],
            }
        ),
    ),
    accepted("ok-empty-sid", raw({"Version": V2012, "Statement": [{**GOOD_ST, "Sid": ""}]})),
    accepted(
        "ok-compact-json",
        json.dumps({"Version": V2012, "Statement": [GOOD_ST]}, separators=(",", ":")),
    ),
]

CASES: tuple[Case, ...] = tuple(
    STRING_CASES
    + KEY_CASE_CASES
    + NUMERIC_CASES
    + DATE_CASES
    + BOOL_BINARY_CASES
    + IP_CASES
    + ARN_CASES
    + NULL_IFEXISTS_CASES
    + SET_CASES
    + COMBINATION_CASES
    + ACTION_CASES
    + RESOURCE_CASES
    + DENY_CASES
    + BOUNDARY_CASES
    + RESOURCE_POLICY_CASES
    + SESSION_CASES
    + VARIABLE_CASES
    + MALFORMED_CASES
)
"""Every case, in table order."""

SIMULATABLE: tuple[Case, ...] = tuple(c for c in CASES if c.engine_only is None)
"""The cases ``SimulateCustomPolicy`` can express."""


def account_of(arn: str) -> str:
    """Return the account field of an ARN."""
    return arn.split(":", 5)[4]


__all__ = [
    "ACCOUNT",
    "ALLOWED",
    "CALLER_USERS",
    "CASES",
    "EXPLICIT_DENY",
    "IMPLICIT_DENY",
    "LIST_TYPES",
    "MALFORMED",
    "OTHER_ACCOUNT",
    "OUTCOMES",
    "SCALAR_TYPES",
    "SIMULATABLE",
    "Case",
    "Entry",
    "account_of",
]
