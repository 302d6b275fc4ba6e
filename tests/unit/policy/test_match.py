"""Wildcard, action, ARN and variable matching of the policy engine (spec §4, §7)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy.match import ActionMatcher, ArnPattern, Glob, split_arn
from broker.core.policy.model import ContextValue
from broker.core.policy.variables import Escaped, Template, Var, parse_template

# -- Glob -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("abc", "ABC", False),
        ("*", "", True),
        ("*", "anything/at:all", True),
        ("**", "x", True),
        ("a*", "a", True),
        ("a*", "ba", False),
        ("*a", "ba", True),
        ("*a", "ab", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acb", False),
        ("a*b*c", "abcbc", True),
        ("?", "", False),
        ("?", "x", True),
        ("?", "xy", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("*?", "", False),
        ("*?", "x", True),
        ("?*?", "x", False),
        ("?*?", "xy", True),
        ("a*?b", "ab", False),
        ("a*?b", "axb", True),
        ("*x?z*", "aaxyzbb", True),
        ("*x?z*", "aaxyybb", False),
        ("*ab?d*", "abab?dab", True),
        ("*ab?d*", "ababcd", True),
        ("*ab?d*", "abab", False),
        # characters that are special elsewhere are literal here
        ("a.c", "abc", False),
        ("a.c", "a.c", True),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("a+b", "aab", False),
        ("(x)|y", "(x)|y", True),
        ("a\\*", "a\\bc", True),
        ("fo$o^", "fo$o^", True),
        ("line\n*", "line\nnext", True),
    ],
)
def test_glob_table(pattern: str, text: str, expected: bool) -> None:
    assert Glob.compile(pattern).match(text) is expected


def test_glob_literal_parts_keep_wildcards_literal() -> None:
    glob = Glob.from_parts((("home/", True), ("a*b?", False), ("/*", True)))
    assert glob.match("home/a*b?/file")
    assert not glob.match("home/aXXbY/file")
    assert Glob.literal("*").match("*")
    assert not Glob.literal("*").match("x")


def test_glob_properties() -> None:
    assert Glob.compile("***").matches_everything
    assert not Glob.compile("*a*").matches_everything
    assert Glob.compile("abc").exact == "abc"
    assert Glob.compile("a*").exact is None
    assert Glob.compile("a*b?c*").wildcards == 3


_PATTERN_CHARS = st.sampled_from("ab*?:/.\\")
_TEXT_CHARS = st.sampled_from("ab:/.*?\\")


@settings(max_examples=600, deadline=None)
@given(
    pattern=st.lists(_PATTERN_CHARS, max_size=12).map("".join),
    text=st.lists(_TEXT_CHARS, max_size=16).map("".join),
)
def test_glob_agrees_with_fnmatchcase(pattern: str, text: str) -> None:
    assert Glob.compile(pattern).match(text) is fnmatch.fnmatchcase(text, pattern)


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.text(alphabet=st.characters(exclude_characters="["), max_size=20),
    text=st.text(max_size=30),
)
def test_glob_agrees_with_fnmatchcase_on_any_text(pattern: str, text: str) -> None:
    assert Glob.compile(pattern).match(text) is fnmatch.fnmatchcase(text, pattern)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab", max_size=40))
def test_glob_segment_pattern_matches_when_built_from_text(text: str) -> None:
    # Replacing every other character of a text with a wildcard must still match it.
    pattern = "".join("?" if i % 3 == 0 else "*" if i % 3 == 1 else ch for i, ch in enumerate(text))
    assert Glob.compile(pattern).match(text)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("a*a*a*a*a*a*a*a*b", "a" * 5000),
        ("*a*a*a*a*a*a*a*a*a*a*a*a*b*", "a" * 20000),
        ("?*?*?*?*?*?*?*?*?*?*b", "a" * 20000),
        ("*" + "a?" * 30 + "b", "a" * 20000),
        ("*" + "*a" * 60, "b" * 1224),
    ],
)
def test_pathological_patterns_finish(pattern: str, text: str) -> None:
    # No timing assertion: an exponential matcher would never get past these.
    assert Glob.compile(pattern).match(text) is False


def test_long_matching_text_finishes() -> None:
    text = "ab" * 50_000
    assert Glob.compile("*a*a*a*a*b*b*b*b").match(text)
    assert Glob.compile("*" + "a?" * 100 + "*").match(text)


# -- actions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "action", "expected"),
    [
        (["s3:GetObject"], "s3:GetObject", True),
        (["S3:getobject"], "s3:GetObject", True),
        (["s3:GetObject"], "S3:GETOBJECT", True),
        (["s3:*"], "s3:PutObject", True),
        (["s3:*"], "s3-object-lambda:GetObject", False),
        (["s3*"], "s3-object-lambda:GetObject", True),
        (["*"], "iam:CreateUser", True),
        (["iam:List*"], "iam:ListUsers", True),
        (["iam:List*"], "iam:GetUser", False),
        (["iam:Get?ser"], "iam:GetUser", True),
        (["iam:Get?ser"], "iam:GetUsers", False),
        (["iam:*User"], "iam:CreateUser", True),
        (["iam:*User"], "iam:CreateUsers", False),
        (["ec2:*", "iam:Get*"], "iam:GetRole", True),
        (["ec2:*", "iam:Get*"], "sts:GetCallerIdentity", False),
        (["sts:AssumeRole"], "sts:AssumeRoleWithSAML", False),
        ([], "iam:ListUsers", False),
    ],
)
def test_action_matching(patterns: list[str], action: str, expected: bool) -> None:
    assert ActionMatcher(patterns).matches(action.lower()) is expected


# -- ARNs and resources -----------------------------------------------------------------------


def _resource(pattern: str, resource: str, keys: dict[str, ContextValue] | None = None) -> bool:
    template = parse_template(pattern, True)
    return ArnPattern(template).matches(split_arn(resource), keys or {})


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("*", "arn:aws:iam::123456789012:user/Bob", True),
        ("*", "*", True),
        ("arn:*", "*", False),
        ("arn:aws:iam::123456789012:user/Bob", "*", False),
        ("arn:aws:iam::123456789012:user/Bob", "arn:aws:iam::123456789012:user/Bob", True),
        ("arn:aws:iam::123456789012:user/Bob", "arn:aws:iam::123456789012:user/bob", False),
        ("arn:aws:s3:::MyBucket", "arn:aws:s3:::mybucket", False),
        ("arn:aws:IAM::123456789012:user/Bob", "arn:aws:iam::123456789012:user/Bob", False),
        ("arn:aws:s3:::bucket*", "arn:aws:s3:::bucket/a/b", True),
        ("arn:aws:s3:::bucket*", "arn:aws:s3:::bucket-2", True),
        ("arn:aws:s3:::bucket*", "arn:aws:s3:::buck", False),
        ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a:b/c", True),
        ("arn:aws:sqs:us-*-1:123456789012:q", "arn:aws:sqs:us-east-1:123456789012:q", True),
        ("arn:aws:sqs:us-*-1:123456789012:q", "arn:aws:sqs:eu-west-1:123456789012:q", False),
        ("arn:aws:sqs:us-east-?:123456789012:q", "arn:aws:sqs:us-east-1:123456789012:q", True),
        ("arn:aws:sqs:us-east-?:123456789012:q", "arn:aws:sqs:us-east-:123456789012:q", False),
        ("arn:aws:iam::*:role/*", "arn:aws:iam::123456789012:role/x", True),
        ("arn:aws:iam::*:role/*", "arn:aws:iam::123456789012:user/x", False),
        # a wildcard in the first five fields stays within its field
        ("arn:aws:s*", "arn:aws:s3:::bucket", True),
        ("arn:aws:s3:*", "arn:aws:s3:::bucket", True),
        ("arn:aws:sqs:us-east-1:*", "arn:aws:sqs:us-east-1:123456789012:q", True),
        ("arn:aws:sqs:us-east-1:*", "arn:aws:sqs:us-west-2:123456789012:q", False),
        ("arn:aws:sqs:us-east-1", "arn:aws:sqs:us-east-1:123456789012:q", False),
        ("arn:aws:sqs:*:1*:q", "arn:aws:sqs:us-east-1:123456789012:q", True),
        ("arn:*:*:*:*:*", "arn:aws:sqs:us-east-1:123456789012:q", True),
        ("arn:aws:iam::123456789012:user/*", "not-an-arn", False),
        # the resource field spans colons; ARN-shaped text without six fields is no ARN
        ("arn:aws:s3:::*", "arn:aws:s3:::a:b:c", True),
        ("arn:aws:s3:::*", "arn:aws:s3::", False),
    ],
)
def test_resource_matching(pattern: str, resource: str, expected: bool) -> None:
    assert _resource(pattern, resource) is expected


def test_split_arn() -> None:
    assert split_arn("arn:aws:s3:::b/c:d") == ("arn", "aws", "s3", "", "", "b/c:d")
    assert split_arn("arn:aws:s3") is None
    assert split_arn("*") is None


# -- policy variables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("plain", ("plain",)),
        ("", ("",)),
        ("${aws:username}", (Var("aws:username", None, "${aws:username}"),)),
        (
            "home/${AWS:UserName}/*",
            ("home/", Var("aws:username", None, "${AWS:UserName}"), "/*"),
        ),
        (
            "${aws:PrincipalTag/team, 'none'}",
            (Var("aws:principaltag/team", "none", "${aws:PrincipalTag/team, 'none'}"),),
        ),
        ("${k, 'a}b'}", (Var("k", "a}b", "${k, 'a}b'}"),)),
        ("a${*}b", ("a", Escaped("*", "${*}"), "b")),
        ("${?}${$}", (Escaped("?", "${?}"), Escaped("$", "${$}"))),
        ("${}", ("${}",)),
        ("${unclosed", ("${unclosed",)),
        ("${has space}", ("${has space}",)),
        ("$${x}", ("$", Var("x", None, "${x}"))),
        ("${a, 'unterminated}", ("${a, 'unterminated}",)),
    ],
)
def test_parse_template(text: str, parts: tuple[object, ...]) -> None:
    template = parse_template(text, True)
    assert template.parts == parts
    assert template.source == text


def test_parse_template_disabled_is_plain() -> None:
    assert parse_template("home/${aws:username}", False) == Template.plain("home/${aws:username}")


@pytest.mark.parametrize(
    ("text", "keys", "expected"),
    [
        ("u/${aws:username}", {"aws:username": "bob"}, "u/bob"),
        ("u/${aws:username}", {}, None),
        ("u/${aws:username, 'nobody'}", {}, "u/nobody"),
        ("u/${aws:username, 'nobody'}", {"aws:username": "bob"}, "u/bob"),
        ("${aws:tagkeys}", {"aws:tagkeys": ["a", "b"]}, None),
        ("${aws:tagkeys, 'd'}", {"aws:tagkeys": ["a"]}, None),
        ("${aws:securetransport}", {"aws:securetransport": True}, "true"),
        ("${n}", {"n": 7}, "7"),
        ("a${*}", {}, "a*"),
    ],
)
def test_template_resolve_text(
    text: str, keys: dict[str, ContextValue], expected: str | None
) -> None:
    assert parse_template(text, True).resolve_text(keys) == expected


@pytest.mark.parametrize(
    ("pattern", "resource", "keys", "expected"),
    [
        (
            "arn:aws:iam::123456789012:user/${aws:username}",
            "arn:aws:iam::123456789012:user/bob",
            {"aws:username": "bob"},
            True,
        ),
        (
            "arn:aws:iam::123456789012:user/${aws:username}",
            "arn:aws:iam::123456789012:user/alice",
            {"aws:username": "bob"},
            False,
        ),
        # unresolved: matches nothing, not even its own literal text
        (
            "arn:aws:iam::123456789012:user/${aws:username}",
            "arn:aws:iam::123456789012:user/${aws:username}",
            {},
            False,
        ),
        # a variable's value is literal, never a wildcard
        (
            "arn:aws:s3:::bucket/${aws:username}/x",
            "arn:aws:s3:::bucket/anything/x",
            {"aws:username": "*"},
            False,
        ),
        (
            "arn:aws:s3:::bucket/${aws:username}/*",
            "arn:aws:s3:::bucket/*/file",
            {"aws:username": "*"},
            True,
        ),
        ("arn:aws:s3:::bucket/${*}", "arn:aws:s3:::bucket/*", {}, True),
        ("arn:aws:s3:::bucket/${*}", "arn:aws:s3:::bucket/abc", {}, False),
        # a value holding ':' stays inside the resource field
        (
            "arn:aws:s3:::b/${aws:userid}",
            "arn:aws:s3:::b/AROAEXAMPLE:sess",
            {"aws:userid": "AROAEXAMPLE:sess"},
            True,
        ),
        # variables are not substituted outside the resource field
        (
            "arn:aws:iam::${aws:PrincipalAccount}:user/x",
            "arn:aws:iam::123456789012:user/x",
            {"aws:principalaccount": "123456789012"},
            False,
        ),
    ],
)
def test_resource_with_variables(
    pattern: str, resource: str, keys: dict[str, ContextValue], expected: bool
) -> None:
    assert _resource(pattern, resource, keys) is expected
