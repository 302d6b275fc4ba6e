"""Statement positions in the source text (simulator StartPosition/EndPosition, spec §10)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy import (
    Decision,
    MatchedStatement,
    Policy,
    PolicyKind,
    PolicySet,
    RequestContext,
    SourceSpan,
    Statement,
    compile_policy,
    evaluate_request,
    evaluate_statements,
    parse_policy,
    render_policy,
    statement_spans,
)

A = "111122223333"
USER = f"arn:aws:iam::{A}:user/alice"

MULTI_LINE = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "A",
      "Effect": "Allow",
      "Action": "s3:GetObject",
      "Resource": "*"
    },
    {"Sid": "B", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::secret/*"}
  ]
}"""


def spans(text: str) -> list[tuple[int, int, int, int]]:
    return [
        (s.start_line, s.start_column, s.end_line, s.end_column)
        for s in (st_.span for st_ in parse_policy(text).statements)
        if s is not None
    ]


def one_line_span(text: str, start: str, end: str) -> tuple[int, int, int, int]:
    """Expected span on a one-line document: from the text ``start`` to just after ``end``."""
    first = text.index(start)
    last = text.index(end, first) + len(end)
    return (1, first + 1, 1, last + 1)


def test_multi_line_list() -> None:
    assert spans(MULTI_LINE) == [(4, 5, 9, 6), (10, 5, 10, 90)]


def test_single_statement_object_one_line() -> None:
    text = '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}'
    assert spans(text) == [(1, 37, 1, 86)]
    assert spans(text) == [one_line_span(text, '{"Effect"', '"*"}')]


def test_single_statement_object_multi_line() -> None:
    text = (
        '{\n  "Statement": {\n    "Effect": "Allow",\n    "Action": "*",\n'
        '    "Resource": "*"\n  }\n}'
    )
    assert spans(text) == [(2, 16, 6, 4)]


def test_list_on_one_line() -> None:
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"},
            ],
        }
    )
    assert spans(text) == [
        one_line_span(text, '{"Effect": "Allow"', '"*"}'),
        one_line_span(text, '{"Effect": "Deny"', '"*"}'),
    ]


def test_unicode_before_the_statement_counts_characters() -> None:
    text = (
        '{"Id": "d\u00e9j\u00e0 vu \U0001f389 \u6f22\u5b57", "Version": "2012-10-17", '
        '"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
    )
    expected = one_line_span(text, '{"Effect"', '"*"}')
    assert spans(text) == [expected]
    # 62 code points precede the statement (the emoji is one column, not two or four)
    assert expected[1] == 63


def test_unicode_on_an_earlier_line_does_not_shift_columns() -> None:
    text = (
        '{"Id": "\u00fc\u00f1\u00ee\U0001f600",\n'
        ' "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}'
    )
    assert spans(text) == [(2, 15, 2, 66)]


def test_crlf_and_lone_cr_line_breaks() -> None:
    crlf = MULTI_LINE.replace("\n", "\r\n")
    cr = MULTI_LINE.replace("\n", "\r")
    assert spans(crlf) == spans(MULTI_LINE)
    assert spans(cr) == spans(MULTI_LINE)


def test_strings_with_json_punctuation_do_not_confuse_the_scan() -> None:
    statements = [
        {
            "Sid": "A",
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "arn:aws:s3:::b/{x}[y]",
            "Condition": {"StringEquals": {"s3:prefix": ['a"}]{["', "\\", "Statement"]}},
        },
        {"Sid": "B", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
    ]
    text = json.dumps({"Id": '{"Statement": [}', "Statement": statements, "Version": "2012-10-17"})
    first = text.index('{"Sid": "A"')
    second = text.index('{"Sid": "B"')
    assert spans(text) == [
        (1, first + 1, 1, second - 1),
        one_line_span(text, '{"Sid": "B"', '"*"}'),
    ]


def test_escaped_member_name_is_still_the_statement() -> None:
    text = (
        '{"Version": "2012-10-17", "Statem\\u0065nt": '
        '{"Effect": "Allow", "Action": "*", "Resource": "*"}}'
    )
    assert spans(text) == [one_line_span(text, '{"Effect"', '"*"}')]


def test_whitespace_between_list_elements() -> None:
    text = (
        '{"Statement":\n[\n\n  {"Effect":"Allow","Action":"*","Resource":"*"}  ,\t'
        '{"Effect":"Deny","Action":"*","Resource":"*"}\n]}'
    )
    assert spans(text) == [(4, 3, 4, 49), (4, 53, 4, 98)]


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", '{"Statement": "x"}', '{"Statement": [1, 2]}', '{"Version": 1}', "{"],
)
def test_unexpected_shapes_give_no_spans(text: str) -> None:
    assert statement_spans(text) == ()


def test_spans_take_no_part_in_equality() -> None:
    pretty = parse_policy(MULTI_LINE)
    compact = parse_policy(render_policy(pretty))
    assert pretty == compact
    assert pretty.statements[0].span != compact.statements[0].span


def test_matched_statements_carry_positions() -> None:
    compiled = compile_policy(parse_policy(MULTI_LINE, PolicyKind.IDENTITY))
    read = RequestContext("s3:GetObject", "arn:aws:s3:::public/k", USER, A)
    secret = RequestContext("s3:GetObject", "arn:aws:s3:::secret/k", USER, A)
    for identity in ([("P", compiled)], PolicySet([("P", compiled)])):
        allowed = evaluate_request(read, identity=identity)
        assert allowed.decision is Decision.ALLOW
        assert allowed.matched == (MatchedStatement("P", "A", "Allow", 0, 4, 5, 9, 6),)
        denied = evaluate_statements(identity, secret)
        assert denied.decision is Decision.EXPLICIT_DENY
        assert denied.matched == (MatchedStatement("P", "B", "Deny", 1, 10, 5, 10, 90),)


def test_statements_built_without_text_report_zero_positions() -> None:
    parsed = parse_policy(MULTI_LINE)
    bare = Policy(
        parsed.version,
        parsed.id,
        tuple(
            Statement(s.sid, s.effect, s.actions, resources=s.resources) for s in parsed.statements
        ),
    )
    result = evaluate_statements(
        [("P", compile_policy(bare))], RequestContext("s3:GetObject", "*", USER, A)
    )
    [matched] = result.matched
    assert matched == MatchedStatement("P", "A", "Allow", 0)
    assert (matched.start_line, matched.start_column) == (0, 0)
    assert (matched.end_line, matched.end_column) == (0, 0)


def test_source_span_fields() -> None:
    assert parse_policy(MULTI_LINE).statements[1].span == SourceSpan(10, 5, 10, 90)


# -- property: a span cuts exactly its statement out of the text -------------------------------

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def offset_of(text: str, line: int, column: int) -> int:
    starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]
    return starts[line - 1] + column - 1


_statement = st.fixed_dictionaries(
    {"Effect": st.sampled_from(["Allow", "Deny"]), "Action": st.sampled_from(["s3:*", "*"])},
    optional={
        "Resource": st.sampled_from(["*", "arn:aws:s3:::b/{x}", 'arn:aws:s3:::"q"/*']),
        "Condition": st.just({"StringEquals": {"aws:username": ["\u00e9l\u00e8ve", "}]", "\\"]}}),
    },
).map(lambda d: {"Resource": "*", **d})


@settings(max_examples=200, deadline=None)
@given(
    body=st.lists(_statement, min_size=1, max_size=4),
    as_object=st.booleans(),
    policy_id=st.text(max_size=6),
    indent=st.sampled_from([None, 0, 2, "\t"]),
    ascii_only=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_spans_cut_out_each_statement(
    body: list[dict[str, object]],
    as_object: bool,
    policy_id: str,
    indent: int | str | None,
    ascii_only: bool,
    newline: str,
) -> None:
    body = [{"Sid": f"S{i}", **s} if i % 2 else s for i, s in enumerate(body)]  # unique Sids
    statements: object = body[0] if as_object else body
    doc = {"Id": policy_id, "Statement": statements, "Version": "2012-10-17"}
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only).replace("\n", newline)
    parsed = parse_policy(text)
    expected = [body[0]] if as_object else body
    assert len(parsed.statements) == len(expected)
    for statement, source in zip(parsed.statements, expected, strict=True):
        span = statement.span
        assert span is not None
        start = offset_of(text, span.start_line, span.start_column)
        end = offset_of(text, span.end_line, span.end_column)
        assert text[start] == "{" and text[end - 1] == "}"
        assert json.loads(text[start:end]) == source
