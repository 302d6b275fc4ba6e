"""Tests: Access Analyzer style policy checks (``broker.core.policy.findings``), pure.

Each listed problem is planted in a crafted document and must come back with the right finding
type, issue code and location: the path through the JSON value and a span whose text is the
offending piece of the document. A clean least-privilege policy gives no findings, and no input
string ever makes the checks raise.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy.findings import (
    CATALOGUE,
    ROLE_TRUST_RESOURCE_TYPE,
    SERVICE_ACTIONS,
    FindingType,
    PolicyFinding,
    PolicyType,
    has_blocking,
    learn_more_link,
    validate_policy,
)

IDENTITY = PolicyType.IDENTITY_POLICY
RESOURCE = PolicyType.RESOURCE_POLICY
V = "2012-10-17"


def doc(*statements: dict[str, Any], version: str | None = V, indent: int | None = 2) -> str:
    body: dict[str, Any] = {} if version is None else {"Version": version}
    body["Statement"] = list(statements)
    return json.dumps(body, indent=indent)


def codes(findings: list[PolicyFinding]) -> list[str]:
    return [f.issue_code for f in findings]


def only(findings: list[PolicyFinding], code: str) -> PolicyFinding:
    found = [f for f in findings if f.issue_code == code]
    assert len(found) == 1, codes(findings)
    return found[0]


def spanned(text: str, finding: PolicyFinding, i: int = 0) -> str:
    span = finding.locations[i].span
    return text[span.start.offset : span.end.offset]


def path(finding: PolicyFinding, i: int = 0) -> list[dict[str, object]]:
    out = finding.to_json()["locations"]
    assert isinstance(out, list)
    result: list[dict[str, object]] = out[i]["path"]
    return result


LEAST_PRIVILEGE = doc(
    {
        "Sid": "ReadOwnUser",
        "Effect": "Allow",
        "Action": ["iam:GetUser", "iam:ListAccessKeys"],
        "Resource": "arn:aws:iam::123456789012:user/${aws:username}",
    },
    {
        "Sid": "PassOneRole",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": "arn:aws:iam::123456789012:role/app-role",
    },
    {
        "Sid": "Validate",
        "Effect": "Allow",
        "Action": "access-analyzer:ValidatePolicy",
        "Resource": "*",
    },
)


# -- clean documents ---------------------------------------------------------------------------


def test_clean_least_privilege_identity_policy_has_no_findings() -> None:
    assert validate_policy(LEAST_PRIVILEGE, IDENTITY) == []


def test_clean_role_trust_policy_has_no_findings() -> None:
    text = doc(
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )
    assert validate_policy(text, RESOURCE, ROLE_TRUST_RESOURCE_TYPE) == []


def test_clean_resource_policy_with_named_principal_has_no_findings() -> None:
    text = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::bucket/*",
        }
    )
    assert validate_policy(text, RESOURCE) == []


# -- syntax ------------------------------------------------------------------------------------


def test_bad_json_is_a_syntax_error_at_the_failing_character() -> None:
    text = '{\n  "Version": "2012-10-17",\n  "Statement": [}\n'
    [found] = validate_policy(text, IDENTITY)
    assert (found.finding_type, found.issue_code) == (FindingType.ERROR, "JSON_SYNTAX_ERROR")
    start = found.locations[0].span.start
    assert text[start.offset] == "}"
    assert (start.line, start.column) == (3, 16)
    assert found.details == "Fix the JSON syntax error at index 45 line 3 column 16."
    assert found.locations[0].path == ()


def test_duplicate_keys_are_a_syntax_error() -> None:
    [found] = validate_policy('{"Version": "2012-10-17", "Version": "2012-10-17"}', IDENTITY)
    assert found.issue_code == "JSON_SYNTAX_ERROR"


def test_a_document_that_is_not_an_object_is_a_data_type_mismatch() -> None:
    [found] = validate_policy("[1, 2]", IDENTITY)
    assert (found.finding_type, found.issue_code) == (FindingType.ERROR, "DATA_TYPE_MISMATCH")


def test_unknown_element_points_at_its_key() -> None:
    text = doc({"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*", "Foo": 1})
    found = only(validate_policy(text, IDENTITY), "INVALID_POLICY_ELEMENT")
    assert found.finding_type is FindingType.ERROR
    assert spanned(text, found) == '"Foo"'
    assert path(found) == [{"value": "Statement"}, {"index": 0}, {"key": "Foo"}]
    assert "Foo" in found.details


def test_unknown_top_level_element() -> None:
    text = '{"Version": "2012-10-17", "Extra": true, "Statement": []}'
    found = only(validate_policy(text, IDENTITY), "INVALID_POLICY_ELEMENT")
    assert spanned(text, found) == '"Extra"'
    assert path(found) == [{"key": "Extra"}]


def test_bad_effect_points_at_the_effect_value() -> None:
    text = doc({"Effect": "Alow", "Action": "iam:GetUser", "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "INVALID_EFFECT")
    assert found.finding_type is FindingType.ERROR
    assert spanned(text, found) == '"Alow"'
    assert path(found) == [{"value": "Statement"}, {"index": 0}, {"value": "Effect"}]
    assert found.details == "The effect Alow is not valid. Use Allow or Deny."


def test_missing_effect_and_action_point_at_the_statement() -> None:
    text = doc({"Resource": "*"})
    findings = validate_policy(text, IDENTITY)
    assert {"MISSING_EFFECT", "MISSING_ACTION"} <= set(codes(findings))
    effect = only(findings, "MISSING_EFFECT")
    assert spanned(text, effect).startswith("{") and spanned(text, effect).endswith("}")


def test_principal_in_identity_policy_is_unsupported() -> None:
    text = doc({"Effect": "Allow", "Principal": "*", "Action": "iam:GetUser", "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "UNSUPPORTED_PRINCIPAL")
    assert spanned(text, found) == '"Principal"'


def test_wrong_json_type_is_a_data_type_mismatch() -> None:
    text = doc({"Effect": 1, "Action": "iam:GetUser", "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "DATA_TYPE_MISMATCH")
    assert spanned(text, found) == "1"
    assert "string" in found.details


def test_empty_action_list_is_a_suggestion() -> None:
    text = doc({"Effect": "Allow", "Action": [], "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "EMPTY_ARRAY_ACTION")
    assert found.finding_type is FindingType.SUGGESTION
    assert spanned(text, found) == "[]"


def test_duplicate_sids_are_an_error_in_identity_policies() -> None:
    st_ = {"Sid": "Same", "Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}
    other = {**st_, "Action": "iam:ListUsers"}
    found = only(validate_policy(doc(st_, other), IDENTITY), "UNIQUE_SIDS_REQUIRED")
    assert found.finding_type is FindingType.ERROR
    assert path(found) == [{"value": "Statement"}, {"index": 1}, {"value": "Sid"}]


# -- Version -----------------------------------------------------------------------------------


def test_missing_version_is_a_general_warning_on_the_document() -> None:
    text = doc({"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}, version=None)
    [found] = validate_policy(text, IDENTITY)
    assert (found.finding_type, found.issue_code) == (FindingType.WARNING, "MISSING_VERSION")
    assert found.locations[0].path == ()
    assert spanned(text, found) == text
    assert found.learn_more_link.endswith(
        "#access-analyzer-reference-policy-checks-general-warning-missing-version"
    )


def test_version_2008_is_outdated() -> None:
    text = doc({"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}, version="2008-10-17")
    [found] = validate_policy(text, IDENTITY)
    assert (found.finding_type, found.issue_code) == (FindingType.WARNING, "OUTDATED_VERSION")
    assert spanned(text, found) == '"2008-10-17"'
    assert path(found) == [{"value": "Version"}]


def test_version_2008_with_a_policy_variable_is_an_error() -> None:
    text = doc(
        {
            "Effect": "Allow",
            "Action": "iam:GetUser",
            "Resource": "arn:aws:iam::123456789012:user/${aws:username}",
        },
        version="2008-10-17",
    )
    found = only(validate_policy(text, IDENTITY), "VARIABLE_UNSUPPORTED_IN_VERSION")
    assert found.finding_type is FindingType.ERROR


def test_unknown_version_is_invalid() -> None:
    text = doc({"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}, version="2020-01-01")
    found = only(validate_policy(text, IDENTITY), "INVALID_VERSION")
    assert spanned(text, found) == '"2020-01-01"'


# -- actions -----------------------------------------------------------------------------------


def test_unknown_action_of_a_known_service_with_suggestion() -> None:
    text = doc({"Effect": "Allow", "Action": ["iam:GetUser", "iam:ListUser"], "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "INVALID_ACTION")
    assert found.finding_type is FindingType.ERROR
    assert found.details == "The action iam:ListUser does not exist. Did you mean iam:ListUsers?"
    assert spanned(text, found) == '"iam:ListUser"'
    assert path(found) == [
        {"value": "Statement"},
        {"index": 0},
        {"value": "Action"},
        {"index": 1},
    ]


@pytest.mark.parametrize(
    "action",
    ["sts:AssumeRol", "sts:Nothing*", "access-analyzer:ValidatePolicies", "IAM:DeleteEverything"],
)
def test_unknown_actions_of_served_services(action: str) -> None:
    text = doc({"Effect": "Allow", "Action": action, "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "INVALID_ACTION")
    assert action in found.details


@pytest.mark.parametrize(
    "action",
    [
        "iam:List*",
        "IAM:getuser",
        "sts:TagSession",
        "sts:AssumeRole",
        "iam:PassRole",
        "access-analyzer:ValidatePolicy",
        "s3:AnythingAtAll",
        "iam:*",
    ],
)
def test_known_actions_and_other_services_give_no_invalid_action(action: str) -> None:
    text = doc({"Effect": "Allow", "Action": action, "Resource": "arn:aws:s3:::b"})
    assert "INVALID_ACTION" not in codes(validate_policy(text, IDENTITY))


def test_unknown_action_in_not_action_is_reported_too() -> None:
    text = doc({"Effect": "Deny", "NotAction": "iam:GetUsr", "Resource": "*"})
    assert "INVALID_ACTION" in codes(validate_policy(text, IDENTITY))


def test_action_table_covers_botocore_models_and_the_broker_actions() -> None:
    import broker.api.server  # noqa: F401  (registers every IAM/STS action module)
    from broker.api.iam import IAM_ACTIONS
    from broker.api.sts import STS_ACTIONS

    session = botocore.session.get_session()
    for prefix, model in (("iam", "iam"), ("sts", "sts"), ("access-analyzer", "accessanalyzer")):
        ops = set(session.get_service_model(model).operation_names)
        assert ops <= set(SERVICE_ACTIONS[prefix]), ops - set(SERVICE_ACTIONS[prefix])
    assert set(IAM_ACTIONS) <= set(SERVICE_ACTIONS["iam"])
    assert set(STS_ACTIONS) <= set(SERVICE_ACTIONS["sts"])


# -- iam:PassRole ------------------------------------------------------------------------------


def test_pass_role_on_every_resource_is_a_security_warning() -> None:
    text = doc({"Effect": "Allow", "Action": ["iam:GetRole", "iam:PassRole"], "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "PASS_ROLE_WITH_STAR_IN_RESOURCE")
    assert found.finding_type is FindingType.SECURITY_WARNING
    assert spanned(text, found, 0) == '"iam:PassRole"'
    assert spanned(text, found, 1) == '"*"'
    assert path(found, 1) == [{"value": "Statement"}, {"index": 0}, {"value": "Resource"}]
    assert has_blocking([found])


def test_pass_role_on_all_roles_of_an_account_is_a_security_warning() -> None:
    text = doc(
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": ["arn:aws:iam::123456789012:role/*"],
        }
    )
    found = only(validate_policy(text, IDENTITY), "PASS_ROLE_WITH_STAR_IN_RESOURCE")
    assert spanned(text, found, 1) == '"arn:aws:iam::123456789012:role/*"'


def test_wildcard_action_granting_pass_role_on_star() -> None:
    text = doc({"Effect": "Allow", "Action": "iam:*", "Resource": "*"})
    found = only(validate_policy(text, IDENTITY), "PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE")
    assert found.finding_type is FindingType.SECURITY_WARNING


def test_pass_role_limited_by_passed_to_service_is_fine() -> None:
    text = doc(
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        }
    )
    assert validate_policy(text, IDENTITY) == []


def test_pass_role_denied_is_fine() -> None:
    text = doc({"Effect": "Deny", "Action": "iam:PassRole", "Resource": "*"})
    assert validate_policy(text, IDENTITY) == []


# -- NotAction -----------------------------------------------------------------------------------


def test_allow_with_not_action() -> None:
    text = doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b/*"})
    found = only(validate_policy(text, IDENTITY), "ALLOW_WITH_NOT_ACTION")
    assert found.finding_type is FindingType.WARNING
    assert spanned(text, found) == '"NotAction"'
    assert path(found) == [{"value": "Statement"}, {"index": 0}, {"key": "NotAction"}]


def test_allow_with_not_action_on_star_can_pass_every_role() -> None:
    text = doc({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"})
    findings = validate_policy(text, IDENTITY)
    assert {"ALLOW_WITH_NOT_ACTION", "PASS_ROLE_WITH_STAR_IN_RESOURCE_AND_NOT_ACTION"} <= set(
        codes(findings)
    )
    sec = only(findings, "PASS_ROLE_WITH_STAR_IN_RESOURCE_AND_NOT_ACTION")
    assert sec.finding_type is FindingType.SECURITY_WARNING


def test_deny_with_not_action_is_fine() -> None:
    text = doc({"Effect": "Deny", "NotAction": "iam:GetUser", "Resource": "*"})
    assert validate_policy(text, IDENTITY) == []


def test_scp_allow_with_not_action_is_an_error() -> None:
    text = doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    found = only(
        validate_policy(text, PolicyType.SERVICE_CONTROL_POLICY), "SCP_SYNTAX_ERROR_ALLOW_NOTACTION"
    )
    assert found.finding_type is FindingType.ERROR


# -- wildcard principals ---------------------------------------------------------------------------


def test_wildcard_principal_in_role_trust_policy_is_an_error() -> None:
    text = doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    found = only(
        validate_policy(text, RESOURCE, ROLE_TRUST_RESOURCE_TYPE),
        "ROLE_TRUST_POLICY_UNSUPPORTED_WILDCARD_IN_PRINCIPAL",
    )
    assert found.finding_type is FindingType.ERROR
    assert spanned(text, found) == '"*"'
    assert path(found) == [
        {"value": "Statement"},
        {"index": 0},
        {"value": "Principal"},
        {"value": "AWS"},
    ]


def test_bare_star_principal_in_resource_policy_is_a_security_warning() -> None:
    text = doc(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b",
        }
    )
    found = only(validate_policy(text, RESOURCE), "ALLOW_WITH_WILDCARD_PRINCIPAL")
    assert found.finding_type is FindingType.SECURITY_WARNING
    assert spanned(text, found) == '"*"'


def test_wildcard_principal_with_a_condition_is_accepted_in_resource_policy() -> None:
    text = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::123456789012:root", "*"]},
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}},
        }
    )
    assert validate_policy(text, RESOURCE) == []


# -- redundant statements ----------------------------------------------------------------------


def test_identical_statements_report_the_later_one() -> None:
    st_ = {"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}
    text = doc(st_, dict(st_))
    [found] = validate_policy(text, IDENTITY)
    assert (found.finding_type, found.issue_code) == (FindingType.SUGGESTION, "REDUNDANT_STATEMENT")
    assert path(found, 0) == [{"value": "Statement"}, {"index": 1}]
    assert path(found, 1) == [{"value": "Statement"}, {"index": 0}]
    assert spanned(text, found, 0).startswith("{")


def test_statement_covered_by_a_wider_one_is_redundant() -> None:
    narrow = {
        "Effect": "Allow",
        "Action": ["iam:GetUser", "iam:GetRole"],
        "Resource": "arn:aws:iam::123456789012:user/a",
    }
    wide = {"Effect": "Allow", "Action": "iam:Get*", "Resource": "arn:aws:iam::123456789012:*"}
    [found] = validate_policy(doc(narrow, wide), IDENTITY)
    assert found.issue_code == "REDUNDANT_STATEMENT"
    assert path(found, 0) == [{"value": "Statement"}, {"index": 0}]


@pytest.mark.parametrize(
    "second",
    [
        {"Effect": "Deny", "Action": "iam:Get*", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "iam:Get*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        },
        {"Effect": "Allow", "Action": "iam:Get?", "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:List*", "Resource": "*"},
    ],
)
def test_statements_that_differ_are_not_redundant(second: dict[str, Any]) -> None:
    first = {"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}
    assert "REDUNDANT_STATEMENT" not in codes(validate_policy(doc(first, second), IDENTITY))


# -- positions, catalogue, robustness ------------------------------------------------------------


def test_spans_count_lines_and_columns_with_crlf() -> None:
    text = '{\r\n  "Version": "2012-10-17",\r\n  "Statement": {"Effect": "Alow",\r\n'
    text += '    "Action": "iam:GetUser", "Resource": "*"}\r\n}'
    found = only(validate_policy(text, IDENTITY), "INVALID_EFFECT")
    start, end = found.locations[0].span.start, found.locations[0].span.end
    assert (start.line, start.column) == (3, 26)
    assert (end.line, end.column) == (3, 32)
    assert text[start.offset : end.offset] == '"Alow"'
    assert path(found) == [{"value": "Statement"}, {"value": "Effect"}]


def test_keys_with_dots_and_brackets_are_located() -> None:
    text = doc({"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*", "a.b[0]": 1})
    found = only(validate_policy(text, IDENTITY), "INVALID_POLICY_ELEMENT")
    assert spanned(text, found) == '"a.b[0]"'


def test_every_catalogue_code_has_a_link_and_a_type() -> None:
    for code, (ftype, template) in CATALOGUE.items():
        assert isinstance(ftype, FindingType) and template
        assert learn_more_link(code).startswith("https://docs.aws.amazon.com/IAM/")


def test_to_json_has_the_api_member_names() -> None:
    text = doc({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}, version=None)
    for found in validate_policy(text, IDENTITY):
        out = found.to_json()
        assert set(out) == {
            "findingDetails",
            "findingType",
            "issueCode",
            "learnMoreLink",
            "locations",
        }
        json.dumps(out)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "null",
        "{",
        '{"Statement": null}',
        '{"Statement": [null, 1, "x", []]}',
        '{"Statement": {"Effect": "Allow", "Action": {"a": 1}, "Resource": [1]}}',
        '{"Statement": {"Effect": "Allow", "Action": "*", "Condition": {"Foo": {"a": 1}}}}',
        "[" * 5000 + "]" * 5000,
        '{"a":' * 40 + "1" + "}" * 40,
        '{"Version": NaN}',
        '{"Statement": [{"Effect": "Allow", "Principal": {"Bad": "*"}, "Action": "x:y"}]}',
    ],
)
def test_malformed_input_never_raises(text: str) -> None:
    for ptype in PolicyType:
        findings = validate_policy(text, ptype)
        assert findings
        assert all(isinstance(f, PolicyFinding) for f in findings)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789 \nabcAEfnrtu*?\\', max_size=120))
def test_arbitrary_text_never_raises(text: str) -> None:
    for found in validate_policy(text, IDENTITY):
        for loc in found.locations:
            assert 0 <= loc.span.start.offset <= loc.span.end.offset <= len(text)
