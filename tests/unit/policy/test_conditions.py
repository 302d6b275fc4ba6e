"""Condition operators of the policy engine (spec §5, with variables of §7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from ipaddress import ip_address

import pytest

from broker.core.policy.conditions import (
    BASE_OPERATORS,
    CompiledCondition,
    Family,
    SetQualifier,
    parse_date,
    parse_number,
    parse_operator,
)
from broker.core.policy.model import ContextValue

Keys = dict[str, ContextValue]


def holds(
    operator: str, key: str, values: list[str], keys: Keys, *, variables: bool = True
) -> bool:
    spec = parse_operator(operator)
    assert spec is not None, operator
    return CompiledCondition(spec, key, values, variables).evaluate(keys)


# -- operator names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base", "qualifier", "if_exists", "negated"),
    [
        ("StringEquals", "StringEquals", None, False, False),
        ("StringNotEqualsIfExists", "StringNotEquals", None, True, True),
        ("ForAllValues:StringLike", "StringLike", SetQualifier.FOR_ALL_VALUES, False, False),
        ("ForAnyValue:ArnNotLikeIfExists", "ArnNotLike", SetQualifier.FOR_ANY_VALUE, True, True),
        ("NotIpAddress", "NotIpAddress", None, False, True),
        ("Null", "Null", None, False, False),
        ("ForAnyValue:Null", "Null", SetQualifier.FOR_ANY_VALUE, False, False),
    ],
)
def test_parse_operator(
    name: str, base: str, qualifier: SetQualifier | None, if_exists: bool, negated: bool
) -> None:
    spec = parse_operator(name)
    assert spec is not None
    assert (spec.base, spec.qualifier, spec.if_exists, spec.negated) == (
        base,
        qualifier,
        if_exists,
        negated,
    )


@pytest.mark.parametrize(
    "name",
    [
        "stringequals",
        "StringEqualz",
        "NullIfExists",
        "IfExists",
        "ForAllValues:",
        "forallvalues:StringEquals",
        "ForAllValues:ForAnyValue:StringEquals",
        "StringEqualsIfExistsIfExists",
        "",
    ],
)
def test_unknown_operators(name: str) -> None:
    assert parse_operator(name) is None


def test_every_base_operator_composes() -> None:
    for base in BASE_OPERATORS:
        assert parse_operator(f"ForAllValues:{base}") is not None
        assert (parse_operator(f"{base}IfExists") is None) is (base == "Null")


# -- value parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01t12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123Z", datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2024-06-01T12:00:00+02:00", datetime(2024, 6, 1, 10, tzinfo=UTC)),
        ("2024-06-01T12:00:00-01:30", datetime(2024, 6, 1, 13, 30, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("1714564800", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2024-13-01", None),
        ("2024-02-30", None),
        ("yesterday", None),
        ("2024-05-01T25:00:00Z", None),
        ("2024-05-01 12:00:00", None),
        ("", None),
        ("999999999999", None),
    ],
)
def test_parse_date(text: str, expected: datetime | None) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", Decimal(10)),
        ("-3.5", Decimal("-3.5")),
        ("+.5", Decimal("0.5")),
        ("1e3", Decimal(1000)),
        ("0.1", Decimal("0.1")),
        ("ten", None),
        ("", None),
        ("NaN", None),
        ("Infinity", None),
        ("1 0", None),
    ],
)
def test_parse_number(text: str, expected: Decimal | None) -> None:
    assert parse_number(text) == expected


# -- operators on present single values -----------------------------------------------------------

_T = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("operator", "values", "context", "expected"),
    [
        # strings
        ("StringEquals", ["abc"], "abc", True),
        ("StringEquals", ["abc"], "ABC", False),
        ("StringEquals", ["a*"], "abc", False),
        ("StringEquals", ["a*"], "a*", True),
        ("StringEquals", ["x", "abc"], "abc", True),
        ("StringEquals", [], "abc", False),
        ("StringNotEquals", ["a", "b"], "c", True),
        ("StringNotEquals", ["a", "b"], "b", False),
        ("StringNotEquals", [], "abc", True),
        ("StringEqualsIgnoreCase", ["ABC"], "abc", True),
        ("StringEqualsIgnoreCase", ["Straße"], "STRASSE", True),
        ("StringNotEqualsIgnoreCase", ["ABC"], "abc", False),
        ("StringNotEqualsIgnoreCase", ["ABC"], "abd", True),
        ("StringLike", ["a*"], "abc", True),
        ("StringLike", ["a?c"], "abc", True),
        ("StringLike", ["a?c"], "ac", False),
        ("StringLike", ["A*"], "abc", False),
        ("StringLike", ["b"], "abc", False),
        ("StringLike", ["*:finance/*"], "arn:aws:x:r:1:store/a:finance/d", True),
        ("StringNotLike", ["aws:*"], "aws:cloudformation", False),
        ("StringNotLike", ["aws:*"], "team", True),
        ("StringEquals", ["true"], True, True),
        ("StringEquals", ["10"], 10, True),
        # numbers
        ("NumericEquals", ["10"], "10", True),
        ("NumericEquals", ["10"], "10.0", True),
        ("NumericEquals", ["10"], 10, True),
        ("NumericEquals", ["10"], Decimal("10.00"), True),
        ("NumericNotEquals", ["10"], "11", True),
        ("NumericNotEquals", ["10"], "10", False),
        ("NumericLessThan", ["10"], "9", True),
        ("NumericLessThan", ["10"], "10", False),
        ("NumericLessThanEquals", ["10"], "10", True),
        ("NumericGreaterThan", ["9"], "10", True),
        ("NumericGreaterThan", ["10"], "9", False),
        ("NumericGreaterThanEquals", ["0.3"], "0.3", True),
        ("NumericEquals", ["0.3"], "0.30", True),
        ("NumericLessThan", ["10"], "ten", False),
        ("NumericEquals", ["ten"], "10", False),
        ("NumericLessThan", ["10"], True, False),
        # dates
        ("DateEquals", ["2024-06-01T12:00:00+02:00"], "2024-06-01T10:00:00Z", True),
        ("DateEquals", ["2024-05-01T12:00:00Z"], _T, True),
        ("DateEquals", ["1714564800"], _T, True),
        ("DateEquals", ["2024-05-01T12:00:00Z"], 1714564800, True),
        ("DateEquals", ["2024-05-01T12:00:00Z"], "1714564800", True),
        ("DateNotEquals", ["2024-05-01T12:00:00Z"], _T, False),
        ("DateLessThan", ["2024-05-01T12:00:01Z"], _T, True),
        ("DateLessThan", ["2024-05-01T12:00:00Z"], _T, False),
        ("DateLessThanEquals", ["2024-05-01T12:00:00Z"], _T, True),
        ("DateGreaterThan", ["2024-05-01"], _T, True),
        ("DateGreaterThanEquals", ["2024-05-02"], _T, False),
        ("DateGreaterThan", ["2024-05-01"], datetime(2024, 5, 1, 13), True),
        ("DateGreaterThan", ["2024-05-01"], "not a date", False),
        (
            "DateLessThan",
            ["2024-05-01T12:00:00Z"],
            datetime(2024, 5, 1, 13, tzinfo=timezone(timedelta(hours=2))),
            True,
        ),
        # bool
        ("Bool", ["true"], True, True),
        ("Bool", ["true"], "true", True),
        ("Bool", ["TRUE"], "True", True),
        ("Bool", ["false"], True, False),
        ("Bool", ["false"], "false", True),
        ("Bool", ["yes"], True, False),
        ("Bool", ["true"], "1", False),
        # binary
        ("BinaryEquals", ["QmluYXJ5"], "QmluYXJ5", True),
        ("BinaryEquals", ["QmluYXJ5"], b"Binary", True),
        ("BinaryEquals", ["QmluYXJ5"], b"binary", False),
        ("BinaryEquals", ["not base64!"], "not base64!", True),
        ("BinaryEquals", ["not base64!"], "not base64?", False),
        # ip
        ("IpAddress", ["203.0.113.0/24"], "203.0.113.7", True),
        ("IpAddress", ["203.0.113.0/24"], "203.0.114.7", False),
        ("IpAddress", ["203.0.113.7/24"], "203.0.113.200", True),
        ("IpAddress", ["203.0.113.7"], "203.0.113.7", True),
        ("IpAddress", ["203.0.113.7"], "203.0.113.8", False),
        ("IpAddress", ["2001:DB8:1234:5678::/64"], "2001:db8:1234:5678::1", True),
        ("IpAddress", ["2001:DB8:1234:5678::/64"], "2001:db8:1234:5679::1", False),
        ("IpAddress", ["0.0.0.0/0"], "::ffff:203.0.113.7", False),
        ("IpAddress", ["::/0"], "203.0.113.7", False),
        ("IpAddress", ["203.0.113.0/24"], ip_address("203.0.113.9"), True),
        ("IpAddress", ["203.0.113.0/24"], "not-an-ip", False),
        ("IpAddress", ["bogus"], "203.0.113.7", False),
        ("NotIpAddress", ["203.0.113.0/24"], "198.51.100.1", True),
        ("NotIpAddress", ["203.0.113.0/24"], "203.0.113.1", False),
        # arn
        (
            "ArnLike",
            ["arn:aws:iam::123456789012:role/*"],
            "arn:aws:iam::123456789012:role/a/b",
            True,
        ),
        ("ArnEquals", ["arn:aws:iam::*:role/x"], "arn:aws:iam::123456789012:role/x", True),
        (
            "ArnLike",
            ["arn:aws:someservice:*:111122223333:finance/*"],
            "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/d.txt",
            False,
        ),
        ("ArnLike", ["arn:aws:s3:::Bucket"], "arn:aws:s3:::bucket", False),
        ("ArnLike", ["*"], "arn:aws:s3:::bucket", True),
        ("ArnLike", ["arn:aws:s3:::*"], "not-an-arn", False),
        ("ArnNotLike", ["arn:aws:iam::*:role/admin"], "arn:aws:iam::1:role/dev", True),
        ("ArnNotEquals", ["arn:aws:iam::*:role/admin"], "arn:aws:iam::1:role/admin", False),
    ],
)
def test_operator_on_single_value(
    operator: str, values: list[str], context: ContextValue, expected: bool
) -> None:
    assert holds(operator, "k:key", values, {"k:key": context}) is expected


# -- the missing-key rule (§5.2) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "values", "expected"),
    [
        ("StringEquals", ["a"], False),
        ("StringLike", ["*"], False),
        ("NumericLessThan", ["10"], False),
        ("DateLessThan", ["2030-01-01"], False),
        ("Bool", ["false"], False),
        ("BinaryEquals", ["QQ=="], False),
        ("IpAddress", ["0.0.0.0/0"], False),
        ("ArnLike", ["*"], False),
        ("StringNotEquals", ["a"], True),
        ("StringNotEqualsIgnoreCase", ["a"], True),
        ("StringNotLike", ["a"], True),
        ("NumericNotEquals", ["1"], True),
        ("DateNotEquals", ["2024-01-01"], True),
        ("NotIpAddress", ["10.0.0.0/8"], True),
        ("ArnNotEquals", ["arn:aws:s3:::b"], True),
        ("ArnNotLike", ["arn:aws:s3:::b"], True),
        ("StringEqualsIfExists", ["a"], True),
        ("BoolIfExists", ["false"], True),
        ("StringNotEqualsIfExists", ["a"], True),
        ("ForAllValues:StringEquals", ["a"], True),
        ("ForAllValues:StringNotEquals", ["a"], True),
        ("ForAnyValue:StringEquals", ["a"], False),
        ("ForAnyValue:StringNotEquals", ["a"], False),
        ("ForAnyValue:StringEqualsIfExists", ["a"], True),
        ("Null", ["true"], True),
        ("Null", ["false"], False),
        ("Null", [], False),
    ],
)
def test_missing_key_rule(operator: str, values: list[str], expected: bool) -> None:
    assert holds(operator, "k:absent", values, {"k:other": "x"}) is expected


@pytest.mark.parametrize(
    ("values", "context", "expected"),
    [
        (["true"], "x", False),
        (["false"], "x", True),
        (["false"], "", True),
        (["FALSE"], [], True),
        (["true", "false"], "x", True),
        (["maybe"], "x", False),
    ],
)
def test_null_on_present_key(values: list[str], context: ContextValue, expected: bool) -> None:
    assert holds("Null", "k:key", values, {"k:key": context}) is expected


def test_if_exists_on_present_key_is_the_plain_operator() -> None:
    assert holds("StringEqualsIfExists", "k:key", ["a"], {"k:key": "b"}) is False
    assert holds("StringEqualsIfExists", "k:key", ["a"], {"k:key": "a"}) is True
    assert holds("BoolIfExists", "aws:mfa", ["false"], {"aws:mfa": "false"}) is True
    assert holds("BoolIfExists", "aws:mfa", ["false"], {"aws:mfa": "true"}) is False


def test_key_names_are_case_insensitive() -> None:
    assert holds("StringEquals", "AWS:SourceVpc", ["vpc-1"], {"aws:sourcevpc": "vpc-1"})
    assert holds("StringEquals", "aws:ResourceTag/Dept", ["x"], {"aws:resourcetag/dept": "x"})


# -- set operators and multi-valued keys (§5.3, §5.4) ---------------------------------------------


@pytest.mark.parametrize(
    ("operator", "values", "context", "expected"),
    [
        ("ForAllValues:StringEquals", ["a", "b"], ["a", "b"], True),
        ("ForAllValues:StringEquals", ["a", "b"], ["a", "c"], False),
        ("ForAllValues:StringEquals", ["a", "b"], [], True),
        ("ForAllValues:StringEquals", ["a"], "a", True),
        ("ForAnyValue:StringEquals", ["a", "b"], ["c", "b"], True),
        ("ForAnyValue:StringEquals", ["a", "b"], ["c", "d"], False),
        ("ForAnyValue:StringEquals", ["a"], [], False),
        ("ForAnyValue:StringEquals", ["a"], "a", True),
        ("ForAllValues:StringNotEquals", ["Project"], ["Team", "Cost"], True),
        ("ForAllValues:StringNotEquals", ["Project"], ["Team", "Project"], False),
        ("ForAnyValue:StringNotLike", ["aws:*"], ["aws:a", "team"], True),
        ("ForAnyValue:StringNotLike", ["aws:*"], ["aws:a", "aws:b"], False),
        ("ForAllValues:StringLike", ["t*"], ["team", "tier"], True),
        ("ForAnyValue:IpAddress", ["10.0.0.0/8"], ["192.0.2.1", "10.1.2.3"], True),
        ("ForAllValues:NumericLessThan", ["5"], ["1", "4"], True),
        ("ForAllValues:NumericLessThan", ["5"], ["1", "6"], False),
        # without a set qualifier: positive = any value, negated = every value
        ("StringEquals", ["a"], ["b", "a"], True),
        ("StringEquals", ["a"], ["b", "c"], False),
        ("StringNotEquals", ["a"], ["b", "c"], True),
        ("StringNotEquals", ["a"], ["b", "a"], False),
    ],
)
def test_multi_valued(
    operator: str, values: list[str], context: ContextValue, expected: bool
) -> None:
    assert holds(operator, "aws:TagKeys", values, {"aws:tagkeys": context}) is expected


# -- policy variables in condition values (§7) ----------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "values", "keys", "expected"),
    [
        ("StringEquals", ["${aws:username}"], {"k:v": "bob", "aws:username": "bob"}, True),
        ("StringEquals", ["${aws:username}"], {"k:v": "bob", "aws:username": "al"}, False),
        ("StringEquals", ["${aws:username}"], {"k:v": "${aws:username}"}, False),
        ("StringEquals", ["${aws:username, 'bob'}"], {"k:v": "bob"}, True),
        (
            "StringEqualsIgnoreCase",
            ["${aws:username}"],
            {"k:v": "BOB", "aws:username": "bob"},
            True,
        ),
        (
            "StringLike",
            ["home/${aws:username}/*"],
            {"k:v": "home/bob/x", "aws:username": "bob"},
            True,
        ),
        (
            "StringLike",
            ["home/${aws:username}/*"],
            {"k:v": "home/al/x", "aws:username": "bob"},
            False,
        ),
        ("StringLike", ["${aws:username}"], {"k:v": "anything", "aws:username": "*"}, False),
        ("StringLike", ["${aws:username}"], {"k:v": "*", "aws:username": "*"}, True),
        ("StringLike", ["a${*}"], {"k:v": "a*"}, True),
        ("StringLike", ["a${*}"], {"k:v": "abc"}, False),
        ("StringLike", ["${aws:username}"], {"k:v": "x"}, False),
        # a negated operator whose only value is unresolved is true
        ("StringNotEquals", ["${aws:PrincipalTag/Team}"], {"k:v": "red"}, True),
        (
            "StringNotEquals",
            ["${aws:PrincipalTag/Team}"],
            {"k:v": "red", "aws:principaltag/team": "red"},
            False,
        ),
        ("Bool", ["${aws:securetransport}"], {"k:v": True, "aws:securetransport": "true"}, True),
        (
            "ArnLike",
            ["arn:aws:iam::*:user/${aws:username}"],
            {"k:v": "arn:aws:iam::1:user/bob", "aws:username": "bob"},
            True,
        ),
        (
            "ArnLike",
            ["arn:aws:iam::*:user/${aws:username}"],
            {"k:v": "arn:aws:iam::1:user/al", "aws:username": "bob"},
            False,
        ),
        # not substituted in numeric, date and ip operators
        ("NumericEquals", ["${n}"], {"k:v": "5", "n": "5"}, False),
        ("IpAddress", ["${ip}"], {"k:v": "10.0.0.1", "ip": "10.0.0.1"}, False),
    ],
)
def test_variables_in_values(operator: str, values: list[str], keys: Keys, expected: bool) -> None:
    assert holds(operator, "k:v", values, keys) is expected


def test_variables_disabled_for_old_versions() -> None:
    keys: Keys = {"k:v": "${aws:username}", "aws:username": "bob"}
    assert holds("StringEquals", "k:v", ["${aws:username}"], keys, variables=False) is True
    assert holds("StringEquals", "k:v", ["${aws:username}"], keys, variables=True) is False


def test_missing_keys_are_reported() -> None:
    spec = parse_operator("StringEqualsIfExists")
    assert spec is not None
    condition = CompiledCondition(spec, "aws:SourceVpc", ["vpc-1"], True)
    missing: list[str] = []
    assert condition.evaluate({}, missing) is True
    assert missing == ["aws:SourceVpc"]


def test_family_of_every_base_operator() -> None:
    families = {parse_operator(b).family for b in BASE_OPERATORS}  # type: ignore[union-attr]
    assert families == set(Family)
