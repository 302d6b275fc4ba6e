"""API tests: the policy simulator and the context-key listings (spec/iam-policy.md section 10).

Replies are parsed with botocore's own query parser (``boto_parse``), so every assertion also
checks that the XML has the shapes boto3 expects.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.service.simulator import MAX_EVALUATIONS, MAX_STATEMENT_CHECKS
from tests.api.conftest import Api, Creds, allow, boto_parse, list_params

ACCOUNT_B = "222222222222"


def stmt(
    effect: str,
    actions: str | list[str],
    resources: str | list[str] | None = "*",
    *,
    condition: dict[str, Any] | None = None,
    principal: Any = None,
    sid: str | None = None,
) -> dict[str, Any]:
    """One policy statement."""
    out: dict[str, Any] = {}
    if sid is not None:
        out["Sid"] = sid
    out["Effect"] = effect
    if principal is not None:
        out["Principal"] = principal
    out["Action"] = actions
    if resources is not None:
        out["Resource"] = resources
    if condition is not None:
        out["Condition"] = condition
    return out


def doc(*statements: dict[str, Any]) -> str:
    """A policy document with ``statements``."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def context_params(entries: list[tuple[str, str, list[str]]]) -> dict[str, str]:
    """Encode ``ContextEntries`` as (name, type, values) triples."""
    out: dict[str, str] = {}
    for i, (name, kind, values) in enumerate(entries, start=1):
        base = f"ContextEntries.member.{i}"
        out[f"{base}.ContextKeyName"] = name
        out[f"{base}.ContextKeyType"] = kind
        if values:
            out.update(list_params(f"{base}.ContextKeyValues", values))
        else:
            out[f"{base}.ContextKeyValues"] = ""
    return out


def sim_params(
    policies: list[str] | None,
    actions: list[str],
    *,
    resources: list[str] | None = None,
    context: list[tuple[str, str, list[str]]] | None = None,
    boundaries: list[str] | None = None,
    resource_policy: str | None = None,
    caller: str | None = None,
    owner: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The parameters of a simulate call."""
    out: dict[str, str] = {}
    if policies is not None:
        out.update(list_params("PolicyInputList", policies))
    out.update(list_params("ActionNames", actions))
    if resources is not None:
        out.update(list_params("ResourceArns", resources))
    if context:
        out.update(context_params(context))
    if boundaries is not None:
        out.update(list_params("PermissionsBoundaryPolicyInputList", boundaries))
    if resource_policy is not None:
        out["ResourcePolicy"] = resource_policy
    if caller is not None:
        out["CallerArn"] = caller
    if owner is not None:
        out["ResourceOwner"] = owner
    out.update(extra)
    return out


async def custom(
    api: Api, params: dict[str, str], creds: Creds | None = None
) -> list[dict[str, Any]]:
    """SimulateCustomPolicy, returning boto3's ``EvaluationResults``."""
    reply = await api.call("SimulateCustomPolicy", creds, params)
    parsed = boto_parse(reply)
    assert reply.ok, parsed
    assert parsed["IsTruncated"] is False
    results: list[dict[str, Any]] = parsed["EvaluationResults"]
    return results


async def principal(
    api: Api, source: str, params: dict[str, str], creds: Creds | None = None
) -> list[dict[str, Any]]:
    """SimulatePrincipalPolicy, returning boto3's ``EvaluationResults``."""
    reply = await api.call("SimulatePrincipalPolicy", creds, {"PolicySourceArn": source, **params})
    parsed = boto_parse(reply)
    assert reply.ok, parsed
    results: list[dict[str, Any]] = parsed["EvaluationResults"]
    return results


async def one(api: Api, params: dict[str, str]) -> dict[str, Any]:
    """The single result of a one-action SimulateCustomPolicy."""
    results = await custom(api, params)
    assert len(results) == 1
    return results[0]


def sources(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(SourcePolicyId, SourcePolicyType) of each matched statement."""
    return [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in result["MatchedStatements"]]


def user_arn(api: Api, name: str) -> str:
    return f"arn:aws:iam::{api.account_id}:user/{name}"


# -- SimulateCustomPolicy: decisions ----------------------------------------------------------


async def test_allowed_result_shape(api: Api) -> None:
    result = await one(api, sim_params([allow("s3:GetObject")], ["s3:GetObject"]))
    assert result["EvalActionName"] == "s3:GetObject"
    assert result["EvalResourceName"] == "*"
    assert result["EvalDecision"] == "allowed"
    assert sources(result) == [("PolicyInputList.1", "none")]
    assert result["MissingContextValues"] == []
    for absent in (
        "ResourceSpecificResults",
        "EvalDecisionDetails",
        "PermissionsBoundaryDecisionDetail",
        "OrganizationsDecisionDetail",
    ):
        assert absent not in result


async def test_implicit_and_explicit_deny(api: Api) -> None:
    policies = [
        allow(["s3:*", "iam:ListUsers"]),
        doc(stmt("Deny", "s3:DeleteBucket", sid="NoDelete")),
    ]
    results = await custom(
        api, sim_params(policies, ["s3:GetObject", "s3:DeleteBucket", "ec2:RunInstances"])
    )
    assert [r["EvalActionName"] for r in results] == [
        "s3:GetObject",
        "s3:DeleteBucket",
        "ec2:RunInstances",
    ]
    assert [r["EvalDecision"] for r in results] == ["allowed", "explicitDeny", "implicitDeny"]
    assert sources(results[0]) == [("PolicyInputList.1", "none")]
    # An explicit deny reports only the deny statements.
    assert sources(results[1]) == [("PolicyInputList.2", "none")]
    assert results[2]["MatchedStatements"] == []


async def test_action_names_match_case_insensitively(api: Api) -> None:
    result = await one(api, sim_params([allow("S3:getobject")], ["s3:GetObject"]))
    assert result["EvalDecision"] == "allowed"


async def test_unspecified_resource_semantics(api: Api) -> None:
    # Resource "*" (the default) stands for an unspecified resource: an Allow on a specific
    # ARN applies, a Deny on a specific ARN does not.
    policies = [
        allow("s3:GetObject", "arn:aws:s3:::bucket/*"),
        doc(stmt("Deny", "s3:GetObject", "arn:aws:s3:::bucket/secret")),
    ]
    result = await one(api, sim_params(policies, ["s3:GetObject"]))
    assert result["EvalDecision"] == "allowed"
    named = await one(
        api, sim_params(policies, ["s3:GetObject"], resources=["arn:aws:s3:::bucket/secret"])
    )
    assert named["EvalDecision"] == "explicitDeny"


async def test_several_resources(api: Api) -> None:
    policies = [
        allow("s3:GetObject", "arn:aws:s3:::open/*"),
        doc(stmt("Deny", "s3:GetObject", "arn:aws:s3:::open/locked")),
    ]
    resources = ["arn:aws:s3:::open/a", "arn:aws:s3:::closed/b", "arn:aws:s3:::open/locked"]
    result = await one(api, sim_params(policies, ["s3:GetObject"], resources=resources))
    # One result per action; the decision is the most restrictive one.
    assert result["EvalResourceName"] == "*"
    assert result["EvalDecision"] == "explicitDeny"
    assert sources(result) == [("PolicyInputList.2", "none")]
    per = result["ResourceSpecificResults"]
    assert [r["EvalResourceName"] for r in per] == resources
    assert [r["EvalResourceDecision"] for r in per] == ["allowed", "implicitDeny", "explicitDeny"]
    assert sources({"MatchedStatements": per[0]["MatchedStatements"]}) == [
        ("PolicyInputList.1", "none")
    ]
    assert per[1]["MatchedStatements"] == []
    assert result["EvalDecisionDetails"] == {}

    fine = await one(api, sim_params(policies, ["s3:GetObject"], resources=resources[:2]))
    assert fine["EvalDecision"] == "implicitDeny"
    assert fine["MatchedStatements"] == []


async def test_single_named_resource(api: Api) -> None:
    arn = "arn:aws:s3:::bucket/key"
    result = await one(api, sim_params([allow("s3:GetObject")], ["s3:GetObject"], resources=[arn]))
    assert result["EvalResourceName"] == arn
    assert result["EvalDecision"] == "allowed"
    assert [r["EvalResourceName"] for r in result["ResourceSpecificResults"]] == [arn]
    assert result["EvalDecisionDetails"] == {}


# -- context entries ----------------------------------------------------------------------------

# (type, operator, key, policy values, matching context values, non-matching values)
CONTEXT_CASES: list[tuple[str, str, str, list[str], list[str], list[str]]] = [
    ("string", "StringEquals", "aws:username", ["alice"], ["alice"], ["bob"]),
    (
        "stringList",
        "ForAllValues:StringEquals",
        "aws:TagKeys",
        ["team", "env"],
        ["team", "env"],
        ["team", "owner"],
    ),
    ("numeric", "NumericLessThan", "aws:MultiFactorAuthAge", ["3600"], ["120"], ["7200"]),
    ("numericList", "ForAnyValue:NumericEquals", "test:sizes", ["10"], ["5", "10.0"], ["5", "6"]),
    ("boolean", "Bool", "aws:SecureTransport", ["true"], ["TRUE"], ["false"]),
    ("booleanList", "ForAnyValue:Bool", "test:flags", ["true"], ["false", "true"], ["false"]),
    ("ip", "IpAddress", "aws:SourceIp", ["10.0.0.0/8"], ["10.1.2.3"], ["192.168.0.1"]),
    ("ipList", "ForAnyValue:IpAddress", "test:hops", ["10.0.0.0/8"], ["1.1.1.1", "10.0.0.9"], []),
    ("binary", "BinaryEquals", "test:blob", ["aGVsbG8="], ["aGVsbG8="], ["d29ybGQ="]),
    (
        "binaryList",
        "ForAnyValue:BinaryEquals",
        "test:blobs",
        ["aGVsbG8="],
        ["d29ybGQ=", "aGVsbG8="],
        ["d29ybGQ="],
    ),
    (
        "date",
        "DateGreaterThan",
        "aws:CurrentTime",
        ["2020-01-01T00:00:00Z"],
        ["1700000000"],
        ["2019-12-31T23:59:59Z"],
    ),
    (
        "dateList",
        "ForAllValues:DateLessThan",
        "test:days",
        ["2021-01-01T00:00:00Z"],
        ["2020-01-01", "2020-06-01T10:00:00+02:00"],
        ["2020-01-01", "2022-01-01"],
    ),
]


@pytest.mark.parametrize(
    ("kind", "operator", "key", "wanted", "good", "bad"),
    CONTEXT_CASES,
    ids=[c[0] for c in CONTEXT_CASES],
)
async def test_context_key_types(
    api: Api, kind: str, operator: str, key: str, wanted: list[str], good: list[str], bad: list[str]
) -> None:
    policy = doc(stmt("Allow", "s3:GetObject", condition={operator: {key: wanted}}))
    allowed = await one(api, sim_params([policy], ["s3:GetObject"], context=[(key, kind, good)]))
    assert allowed["EvalDecision"] == "allowed", kind
    assert allowed["MissingContextValues"] == []
    denied = await one(api, sim_params([policy], ["s3:GetObject"], context=[(key, kind, bad)]))
    assert denied["EvalDecision"] == "implicitDeny", kind
    assert denied["MissingContextValues"] == []


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("numeric", ["ten"]),
        ("numericList", ["1", "x"]),
        ("boolean", ["yes"]),
        ("booleanList", ["true", "1"]),
        ("ip", ["10.0.0.300"]),
        ("ip", ["10.0.0.0/8"]),
        ("ipList", ["::1", "nope"]),
        ("binary", ["***"]),
        ("binaryList", ["aGk=", "a"]),
        ("date", ["yesterday"]),
        ("dateList", ["2020-13-01T00:00:00Z"]),
        ("string", ["a", "b"]),
        ("numeric", []),
    ],
)
async def test_bad_context_values_are_invalid_input(api: Api, kind: str, values: list[str]) -> None:
    params = sim_params([allow("s3:*")], ["s3:GetObject"], context=[("test:key", kind, values)])
    (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")


async def test_unknown_context_type_is_a_validation_error(api: Api) -> None:
    params = sim_params([allow("s3:*")], ["s3:GetObject"], context=[("test:key", "text", ["a"])])
    reply = (await api.call("SimulateCustomPolicy", params=params)).expect(400, "ValidationError")
    assert "contextEntries.member.1.contextKeyType" in (reply.message or "")


async def test_context_entry_needs_a_type_and_unique_names(api: Api) -> None:
    params = sim_params([allow("s3:*")], ["s3:GetObject"])
    params["ContextEntries.member.1.ContextKeyName"] = "aws:username"
    params["ContextEntries.member.1.ContextKeyValues.member.1"] = "alice"
    (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")
    twice = sim_params(
        [allow("s3:*")],
        ["s3:GetObject"],
        context=[("aws:username", "string", ["a"]), ("AWS:UserName", "string", ["b"])],
    )
    (await api.call("SimulateCustomPolicy", params=twice)).expect(400, "InvalidInput")


async def test_context_key_names_are_case_insensitive(api: Api) -> None:
    policy = doc(
        stmt("Allow", "s3:GetObject", condition={"StringEquals": {"aws:PrincipalTag/Team": "x"}})
    )
    result = await one(
        api,
        sim_params(
            [policy], ["s3:GetObject"], context=[("AWS:principaltag/team", "string", ["x"])]
        ),
    )
    assert result["EvalDecision"] == "allowed"


async def test_missing_context_values_and_no_invented_keys(api: Api) -> None:
    policy = doc(
        stmt(
            "Allow",
            "s3:GetObject",
            condition={
                "StringEquals": {"aws:username": "alice"},
                "DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"},
            },
        )
    )
    # The simulator fills in no keys of its own, not even aws:CurrentTime or aws:username.
    result = await one(api, sim_params([policy], ["s3:GetObject"]))
    assert result["EvalDecision"] == "implicitDeny"
    assert "aws:username" in result["MissingContextValues"]
    given = await one(
        api,
        sim_params(
            [policy],
            ["s3:GetObject"],
            context=[
                ("aws:username", "string", ["alice"]),
                ("aws:CurrentTime", "date", ["2024-01-01T00:00:00Z"]),
            ],
        ),
    )
    assert given["EvalDecision"] == "allowed"
    assert given["MissingContextValues"] == []


async def test_missing_key_in_a_negated_deny(api: Api) -> None:
    policies = [
        allow("s3:*"),
        doc(
            stmt(
                "Deny",
                "s3:*",
                condition={"StringNotEquals": {"aws:PrincipalTag/team": "storage"}},
            )
        ),
    ]
    result = await one(api, sim_params(policies, ["s3:GetObject"]))
    assert result["EvalDecision"] == "explicitDeny"
    assert result["MissingContextValues"] == ["aws:PrincipalTag/team"]
    tagged = await one(
        api,
        sim_params(
            policies, ["s3:GetObject"], context=[("aws:PrincipalTag/team", "string", ["storage"])]
        ),
    )
    assert tagged["EvalDecision"] == "allowed"


async def test_missing_values_are_merged_over_resources(api: Api) -> None:
    policy = doc(
        stmt("Allow", "s3:GetObject", "arn:aws:s3:::a/*", condition={"Bool": {"test:one": "true"}}),
        stmt("Allow", "s3:GetObject", "arn:aws:s3:::b/*", condition={"Bool": {"test:two": "true"}}),
    )
    result = await one(
        api,
        sim_params([policy], ["s3:GetObject"], resources=["arn:aws:s3:::a/x", "arn:aws:s3:::b/x"]),
    )
    assert result["MissingContextValues"] == ["test:one", "test:two"]
    per = result["ResourceSpecificResults"]
    assert [r["MissingContextValues"] for r in per] == [["test:one"], ["test:two"]]


async def test_policy_variables_resolve_from_context_entries(api: Api) -> None:
    policy = doc(stmt("Allow", "s3:GetObject", "arn:aws:s3:::home/${aws:username}/*"))
    arn = "arn:aws:s3:::home/alice/notes"
    result = await one(
        api,
        sim_params(
            [policy],
            ["s3:GetObject"],
            resources=[arn],
            context=[("aws:username", "string", ["alice"])],
        ),
    )
    assert result["EvalDecision"] == "allowed"
    other = await one(
        api,
        sim_params(
            [policy],
            ["s3:GetObject"],
            resources=[arn],
            context=[("aws:username", "string", ["bob"])],
        ),
    )
    assert other["EvalDecision"] == "implicitDeny"


# -- permissions boundaries -----------------------------------------------------------------------


async def test_permissions_boundary(api: Api) -> None:
    params = sim_params(
        [allow(["s3:*", "iam:*"])],
        ["s3:GetObject", "iam:CreateUser"],
        boundaries=[allow("s3:*")],
    )
    s3, iam = await custom(api, params)
    assert s3["EvalDecision"] == "allowed"
    assert s3["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": True}
    assert sources(s3) == [
        ("PolicyInputList.1", "none"),
        ("PermissionsBoundaryPolicyInputList.1", "none"),
    ]
    assert iam["EvalDecision"] == "implicitDeny"
    assert iam["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}


async def test_boundary_alone_grants_nothing(api: Api) -> None:
    result = await one(
        api, sim_params([allow("ec2:*")], ["s3:GetObject"], boundaries=[allow("s3:*")])
    )
    assert result["EvalDecision"] == "implicitDeny"
    assert result["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": True}


async def test_boundary_deny_is_explicit(api: Api) -> None:
    boundary = doc(stmt("Allow", "*"), stmt("Deny", "s3:DeleteBucket"))
    result = await one(api, sim_params([allow("s3:*")], ["s3:DeleteBucket"], boundaries=[boundary]))
    assert result["EvalDecision"] == "explicitDeny"
    assert sources(result) == [("PermissionsBoundaryPolicyInputList.1", "none")]


async def test_at_most_one_boundary(api: Api) -> None:
    params = sim_params(
        [allow("s3:*")], ["s3:GetObject"], boundaries=[allow("s3:*"), allow("s3:*")]
    )
    (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")


# -- resource policies ----------------------------------------------------------------------------


async def test_resource_policy_grant_to_the_user(api: Api) -> None:
    caller = user_arn(api, "alice")
    bucket = "arn:aws:s3:::shared/doc"
    rp = doc(stmt("Allow", "s3:GetObject", bucket, principal={"AWS": caller}, sid="Share"))
    result = await one(
        api,
        sim_params(
            [allow("ec2:*")],
            ["s3:GetObject"],
            resources=[bucket],
            resource_policy=rp,
            caller=caller,
        ),
    )
    # Same account: a grant naming the user suffices without an identity allow.
    assert result["EvalDecision"] == "allowed"
    assert sources(result) == [("ResourcePolicy", "resource")]
    assert result["EvalDecisionDetails"] == {
        "IAM Policy": "implicitDeny",
        "Resource Policy": "allowed",
    }
    other = await one(
        api,
        sim_params(
            [allow("ec2:*")],
            ["s3:GetObject"],
            resources=[bucket],
            resource_policy=rp,
            caller=user_arn(api, "mallory"),
        ),
    )
    assert other["EvalDecision"] == "implicitDeny"


async def test_resource_policy_naming_the_account_delegates(api: Api) -> None:
    bucket = "arn:aws:s3:::shared"
    rp = doc(stmt("Allow", "s3:ListBucket", bucket, principal={"AWS": api.account_id}))
    caller = user_arn(api, "alice")

    async def run(identity: str) -> dict[str, Any]:
        params = sim_params(
            [identity], ["s3:ListBucket"], resources=[bucket], resource_policy=rp, caller=caller
        )
        return await one(api, params)

    without = await run(allow("ec2:*"))
    assert without["EvalDecision"] == "implicitDeny"
    with_identity = await run(allow("s3:*"))
    assert with_identity["EvalDecision"] == "allowed"
    assert sources(with_identity) == [("ResourcePolicy", "resource"), ("PolicyInputList.1", "none")]


async def test_resource_policy_deny(api: Api) -> None:
    caller = user_arn(api, "alice")
    rp = doc(stmt("Deny", "s3:*", "arn:aws:s3:::vault/*", principal="*"))
    result = await one(
        api,
        sim_params(
            [allow("s3:*")],
            ["s3:GetObject"],
            resources=["arn:aws:s3:::vault/x"],
            resource_policy=rp,
            caller=caller,
        ),
    )
    assert result["EvalDecision"] == "explicitDeny"
    assert sources(result) == [("ResourcePolicy", "resource")]
    assert result["EvalDecisionDetails"]["Resource Policy"] == "explicitDeny"


async def test_cross_account_needs_both_sides(api: Api) -> None:
    caller = user_arn(api, "alice")
    bucket = "arn:aws:s3:::partner-bucket/obj"
    grant = doc(stmt("Allow", "s3:GetObject", bucket, principal={"AWS": caller}))
    owner = f"arn:aws:iam::{ACCOUNT_B}:root"

    async def run(identity: str, rp: str | None) -> dict[str, Any]:
        return await one(
            api,
            sim_params(
                [identity],
                ["s3:GetObject"],
                resources=[bucket],
                resource_policy=rp,
                caller=caller,
                owner=owner,
            ),
        )

    both = await run(allow("s3:GetObject"), grant)
    assert both["EvalDecision"] == "allowed"
    assert both["EvalDecisionDetails"] == {"IAM Policy": "allowed", "Resource Policy": "allowed"}
    # A resource policy in another account never substitutes for the caller's own policies.
    no_identity = await run(allow("ec2:*"), grant)
    assert no_identity["EvalDecision"] == "implicitDeny"
    assert no_identity["EvalDecisionDetails"]["IAM Policy"] == "implicitDeny"
    other_grant = doc(
        stmt("Allow", "s3:GetObject", bucket, principal={"AWS": user_arn(api, "bob")})
    )
    no_grant = await run(allow("s3:GetObject"), other_grant)
    assert no_grant["EvalDecision"] == "implicitDeny"
    assert no_grant["EvalDecisionDetails"]["Resource Policy"] == "implicitDeny"
    # The trusting account may grant to the caller's whole account.
    account_grant = doc(stmt("Allow", "s3:GetObject", bucket, principal={"AWS": api.account_id}))
    assert (await run(allow("s3:GetObject"), account_grant))["EvalDecision"] == "allowed"


async def test_cross_account_without_resource_policy(api: Api) -> None:
    queue = f"arn:aws:sqs:us-east-1:{ACCOUNT_B}:jobs"
    result = await one(api, sim_params([allow("sqs:*")], ["sqs:SendMessage"], resources=[queue]))
    # The resource's ARN names another account: without a resource policy no access.
    assert result["EvalDecision"] == "implicitDeny"
    assert result["EvalDecisionDetails"] == {"IAM Policy": "allowed"}
    own = f"arn:aws:sqs:us-east-1:{api.account_id}:jobs"
    same = await one(api, sim_params([allow("sqs:*")], ["sqs:SendMessage"], resources=[own]))
    assert same["EvalDecision"] == "allowed"


async def test_resource_owner_sets_owner_of_arns_without_account(api: Api) -> None:
    owner = f"arn:aws:iam::{ACCOUNT_B}:root"
    bucket = "arn:aws:s3:::b/k"
    result = await one(
        api, sim_params([allow("s3:*")], ["s3:GetObject"], resources=[bucket], owner=owner)
    )
    assert result["EvalDecision"] == "implicitDeny"
    by_id = await one(
        api, sim_params([allow("s3:*")], ["s3:GetObject"], resources=[bucket], owner=ACCOUNT_B)
    )
    assert by_id["EvalDecision"] == "implicitDeny"
    mine = await one(
        api,
        sim_params(
            [allow("s3:*")],
            ["s3:GetObject"],
            resources=[bucket],
            owner=f"arn:aws:iam::{api.account_id}:root",
        ),
    )
    assert mine["EvalDecision"] == "allowed"


@pytest.mark.parametrize(
    "caller",
    [
        None,
        "arn:aws:iam::{account}:role/admin",
        "arn:aws:sts::{account}:assumed-role/admin/s",
        "arn:aws:iam::{account}:root",
        "arn:aws:iam::{account}:group/ops",
        "ec2.amazonaws.com",
        "arn:aws:iam::12345:user/short",
    ],
)
async def test_caller_arn_must_be_an_iam_user(api: Api, caller: str | None) -> None:
    rp = doc(stmt("Allow", "s3:*", "*", principal="*"))
    params = sim_params(
        [allow("s3:*")],
        ["s3:GetObject"],
        resource_policy=rp,
        caller=None if caller is None else caller.format(account=api.account_id),
    )
    (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")


@pytest.mark.parametrize(
    "owner", ["arn:aws:iam::123:root", "arn:aws:iam::111111111111:user/x", "x"]
)
async def test_bad_resource_owner(api: Api, owner: str) -> None:
    params = sim_params([allow("s3:*")], ["s3:GetObject"], owner=owner)
    (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", None),
        (
            doc(stmt("Allow", "s3:*", principal={"AWS": "*"})),
            "Policy document should not specify a principal.",
        ),
        (json.dumps({"Version": "2012-10-17", "Statement": []}), None),
        (doc(stmt("Allow", "s3:*", "not-an-arn")), None),
    ],
)
async def test_malformed_identity_policies(api: Api, document: str, message: str | None) -> None:
    params = sim_params([allow("s3:*"), document], ["s3:GetObject"])
    (await api.call("SimulateCustomPolicy", params=params)).expect(
        400, "MalformedPolicyDocument", message
    )
    boundary = sim_params([allow("s3:*")], ["s3:GetObject"], boundaries=[document])
    (await api.call("SimulateCustomPolicy", params=boundary)).expect(400, "MalformedPolicyDocument")
    keys = list_params("PolicyInputList", [document])
    (await api.call("GetContextKeysForCustomPolicy", params=keys)).expect(
        400, "MalformedPolicyDocument"
    )


async def test_malformed_resource_policy(api: Api) -> None:
    no_principal = doc(stmt("Allow", "s3:*"))
    params = sim_params(
        [allow("s3:*")],
        ["s3:GetObject"],
        resource_policy=no_principal,
        caller=user_arn(api, "alice"),
    )
    (await api.call("SimulateCustomPolicy", params=params)).expect(
        400, "MalformedPolicyDocument", "Missing required field Principal."
    )


@pytest.mark.parametrize(
    ("params", "code", "where"),
    [
        (list_params("ActionNames", ["s3:GetObject"]), "ValidationError", "policyInputList"),
        (list_params("PolicyInputList", ["{}"]), "ValidationError", "actionNames"),
        (
            {**list_params("PolicyInputList", ["{}"]), **list_params("ActionNames", ["s3"])},
            "ValidationError",
            "actionNames.member.1",
        ),
        (
            {**sim_params(["{}"], ["s3:GetObject"]), "PolicyInputList.member.1": ""},
            "ValidationError",
            "policyInputList.member.1",
        ),
        ({**sim_params(["{}"], ["s3:GetObject"]), "MaxItems": "0"}, "ValidationError", "maxItems"),
        (
            {**sim_params(["{}"], ["s3:GetObject"]), "MaxItems": "1001"},
            "ValidationError",
            "maxItems",
        ),
    ],
)
async def test_model_constraints(api: Api, params: dict[str, str], code: str, where: str) -> None:
    reply = (await api.call("SimulateCustomPolicy", params=params)).expect(400, code)
    assert where in (reply.message or "")


@pytest.mark.parametrize(
    ("actions", "resources"),
    [
        (["s3:*"], None),
        (["s3:Get?bject"], None),
        (["GetObject"], None),
        (["s3:GetObject"], ["bucket"]),
        (["s3:GetObject"], ["arn:aws:s3"]),
    ],
)
async def test_bad_actions_and_resources(
    api: Api, actions: list[str], resources: list[str] | None
) -> None:
    params = sim_params([allow("s3:*")], actions, resources=resources)
    (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")


async def test_too_many_evaluations(api: Api) -> None:
    # The request stays well under the listener's parameter cap; the product is over the limit.
    actions = [f"s3:Action{i}" for i in range(100)]
    resources = [f"arn:aws:s3:::b/{i}" for i in range(MAX_EVALUATIONS // 100 + 1)]
    params = sim_params([allow("s3:*")], actions, resources=resources)
    (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")


async def test_resource_handling_option(api: Api) -> None:
    region = f"arn:aws:ec2:us-east-1:{api.account_id}"
    resources = [
        f"{region}:instance/i-1",
        "arn:aws:ec2:us-east-1::image/ami-1",
        f"{region}:security-group/sg-1",
        f"{region}:network-interface/eni-1",
    ]
    ok = sim_params(
        [allow("ec2:*")],
        ["ec2:RunInstances"],
        resources=resources,
        ResourceHandlingOption="EC2-VPC-InstanceStore",
    )
    result = await one(api, ok)
    assert result["EvalDecision"] == "allowed"
    assert len(result["ResourceSpecificResults"]) == 4
    short = {**ok, "ResourceHandlingOption": "EC2-VPC-InstanceStore-Subnet"}
    reply = (await api.call("SimulateCustomPolicy", params=short)).expect(400, "InvalidInput")
    assert "subnet" in (reply.message or "")
    unknown = {**ok, "ResourceHandlingOption": "EC2-Mainframe"}
    (await api.call("SimulateCustomPolicy", params=unknown)).expect(400, "InvalidInput")


# -- pagination -----------------------------------------------------------------------------------


async def test_pagination_over_actions(api: Api) -> None:
    actions = [f"s3:Action{i}" for i in range(5)]
    params = sim_params([allow("s3:Action1")], actions, MaxItems="2")
    seen: list[str] = []
    decisions: list[str] = []
    pages = 0
    marker: str | None = None
    while True:
        page_params = dict(params)
        if marker is not None:
            page_params["Marker"] = marker
        reply = await api.call("SimulateCustomPolicy", params=page_params)
        parsed = boto_parse(reply)
        assert reply.ok, parsed
        pages += 1
        results = parsed["EvaluationResults"]
        assert len(results) <= 2
        seen += [r["EvalActionName"] for r in results]
        decisions += [r["EvalDecision"] for r in results]
        if not parsed["IsTruncated"]:
            assert "Marker" not in parsed
            break
        marker = parsed["Marker"]
    assert pages == 3
    assert seen == actions
    assert decisions == ["implicitDeny", "allowed", "implicitDeny", "implicitDeny", "implicitDeny"]
    bad = {**params, "Marker": "abc"}
    (await api.call("SimulateCustomPolicy", params=bad)).expect(400, "ValidationError")


async def test_default_page_size(api: Api) -> None:
    actions = [f"s3:Action{i}" for i in range(101)]
    reply = await api.call("SimulateCustomPolicy", params=sim_params([allow("s3:*")], actions))
    parsed = boto_parse(reply)
    assert len(parsed["EvaluationResults"]) == 100
    assert parsed["IsTruncated"] is True


def _many_statements(count: int) -> str:
    return doc(*(stmt("Allow", f"ec2:Action{i}") for i in range(count)))


async def test_costly_simulations_get_shorter_pages(api: Api) -> None:
    statements, resources = 1000, 100
    cost = statements * resources * 2
    per_page = MAX_STATEMENT_CHECKS // cost
    assert 1 < per_page < 25
    actions = [f"ec2:Action{i}" for i in range(25)]
    params = sim_params(
        [_many_statements(statements)],
        actions,
        resources=[
            f"arn:aws:ec2:us-east-1:{api.account_id}:instance/i-{i}" for i in range(resources)
        ],
        MaxItems="50",
    )
    seen: list[str] = []
    marker: str | None = None
    while True:
        reply = await api.call(
            "SimulateCustomPolicy", params={**params, **({"Marker": marker} if marker else {})}
        )
        parsed = boto_parse(reply)
        assert reply.ok, parsed
        results = parsed["EvaluationResults"]
        assert 1 <= len(results) <= per_page
        seen += [r["EvalActionName"] for r in results]
        assert all(r["EvalDecision"] == "allowed" for r in results)
        if not parsed["IsTruncated"]:
            break
        marker = parsed["Marker"]
    assert seen == actions


async def test_one_action_must_fit_the_work_limit(api: Api) -> None:
    resources = 990  # the listener takes at most 1000 parameters
    statements = MAX_STATEMENT_CHECKS // (2 * resources) + 1
    params = sim_params(
        [_many_statements(statements)],
        ["ec2:Action1"],
        resources=[f"arn:aws:s3:::b/{i}" for i in range(resources)],
    )
    reply = (await api.call("SimulateCustomPolicy", params=params)).expect(400, "InvalidInput")
    assert "too large" in (reply.message or "")


# -- statement positions -------------------------------------------------------------------------


def _where(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


async def test_statement_positions(api: Api) -> None:
    text = (
        "{\n"
        '  "Version": "2012-10-17",\n'
        '  "Statement": [\n'
        '    {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},\n'
        "    {\n"
        '      "Effect": "Allow",\n'
        '      "Action": "s3:GetObject",\n'
        '      "Resource": "*"\n'
        "    }\n"
        "  ]\n"
        "}\n"
    )
    result = await one(api, sim_params([text], ["s3:GetObject"]))
    [matched] = result["MatchedStatements"]
    start = text.index('{\n      "Effect"')
    end = text.index("}\n  ]")
    assert (matched["StartPosition"]["Line"], matched["StartPosition"]["Column"]) == _where(
        text, start
    )
    assert matched["EndPosition"]["Line"] == _where(text, end)[0]
    # The end is the closing brace itself or the place just after it.
    assert matched["EndPosition"]["Column"] in (_where(text, end)[1], _where(text, end)[1] + 1)
    single = await one(api, sim_params([text], ["ec2:RunInstances"]))
    [first] = single["MatchedStatements"]
    assert (first["StartPosition"]["Line"], first["StartPosition"]["Column"]) == (4, 5)


# -- GetContextKeysForCustomPolicy ---------------------------------------------------------------


async def test_context_keys_for_custom_policy(api: Api) -> None:
    first = doc(
        stmt(
            "Allow",
            "s3:*",
            "arn:aws:s3:::home/${aws:username}/*",
            condition={
                "StringEquals": {"aws:PrincipalTag/team": "x", "s3:prefix": "a"},
                "Bool": {"aws:SecureTransport": "true"},
            },
        )
    )
    second = doc(
        stmt(
            "Deny",
            "*",
            condition={
                "StringNotEquals": {"AWS:PrincipalTag/Team": "${aws:PrincipalTag/dept}"},
                "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
            },
        )
    )
    reply = await api.ok(
        "GetContextKeysForCustomPolicy", params=list_params("PolicyInputList", [first, second])
    )
    keys = boto_parse(reply)["ContextKeyNames"]
    assert [k.lower() for k in keys] == [
        "aws:username",
        "aws:principaltag/team",
        "s3:prefix",
        "aws:securetransport",
        "aws:principaltag/dept",
        "aws:sourceip",
    ]
    assert keys[1] == "aws:PrincipalTag/team"  # the first spelling met is kept
    empty = await api.ok(
        "GetContextKeysForCustomPolicy", params=list_params("PolicyInputList", [allow("s3:*")])
    )
    assert boto_parse(empty)["ContextKeyNames"] == []
    (await api.call("GetContextKeysForCustomPolicy")).expect(400, "ValidationError")


# -- SimulatePrincipalPolicy -------------------------------------------------------------------


async def _managed(api: Api, name: str, document: str) -> str:
    reply = await api.ok("CreatePolicy", PolicyName=name, PolicyDocument=document)
    arn = reply.text("Policy/Arn")
    assert arn is not None
    return arn


async def test_principal_policy_gathers_user_and_group_policies(api: Api) -> None:
    await api.ok("CreateUser", UserName="alice", Path="/staff/")
    await api.ok(
        "PutUserPolicy", UserName="alice", PolicyName="own", PolicyDocument=allow("s3:GetObject")
    )
    readers = await _managed(api, "readers", allow("dynamodb:GetItem"))
    await api.ok("AttachUserPolicy", UserName="alice", PolicyArn=readers)
    await api.ok(
        "AttachUserPolicy", UserName="alice", PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    )
    await api.ok("CreateGroup", GroupName="ops")
    await api.ok("AddUserToGroup", GroupName="ops", UserName="alice")
    await api.ok(
        "PutGroupPolicy",
        GroupName="ops",
        PolicyName="no-delete",
        PolicyDocument=doc(stmt("Deny", "s3:DeleteObject"), stmt("Allow", "sqs:*")),
    )
    arn = f"arn:aws:iam::{api.account_id}:user/staff/alice"
    actions = [
        "s3:GetObject",
        "dynamodb:GetItem",
        "iam:ListUsers",
        "sqs:SendMessage",
        "s3:DeleteObject",
        "ec2:RunInstances",
    ]
    results = await principal(api, arn, list_params("ActionNames", actions))
    got = {r["EvalActionName"]: (r["EvalDecision"], sources(r)) for r in results}
    assert got == {
        "s3:GetObject": ("allowed", [("user_alice_own", "user")]),
        "dynamodb:GetItem": ("allowed", [("readers", "user-managed")]),
        "iam:ListUsers": ("allowed", [("IAMReadOnlyAccess", "aws-managed")]),
        "sqs:SendMessage": ("allowed", [("group_ops_no-delete", "group")]),
        "s3:DeleteObject": ("explicitDeny", [("group_ops_no-delete", "group")]),
        "ec2:RunInstances": ("implicitDeny", []),
    }
    # Extra policies given as text join the entity's own.
    more = await principal(
        api,
        arn,
        {
            **list_params("ActionNames", ["ec2:RunInstances"]),
            **list_params("PolicyInputList", [allow("ec2:*")]),
        },
    )
    assert more[0]["EvalDecision"] == "allowed"
    assert sources(more[0]) == [("PolicyInputList.1", "none")]


async def test_principal_policy_for_groups_and_roles(api: Api) -> None:
    await api.ok("CreateGroup", GroupName="devs")
    await api.ok("PutGroupPolicy", GroupName="devs", PolicyName="g", PolicyDocument=allow("s3:*"))
    group = f"arn:aws:iam::{api.account_id}:group/devs"
    [result] = await principal(api, group, list_params("ActionNames", ["s3:PutObject"]))
    assert (result["EvalDecision"], sources(result)) == ("allowed", [("group_devs_g", "group")])

    trust = doc(stmt("Allow", "sts:AssumeRole", None, principal={"Service": "ec2.amazonaws.com"}))
    await api.ok("CreateRole", RoleName="app", AssumeRolePolicyDocument=trust)
    await api.ok("PutRolePolicy", RoleName="app", PolicyName="r", PolicyDocument=allow("sqs:*"))
    await api.ok(
        "AttachRolePolicy", RoleName="app", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    role = f"arn:aws:iam::{api.account_id}:role/app"
    [sqs, ec2] = await principal(
        api, role, list_params("ActionNames", ["sqs:SendMessage", "ec2:RunInstances"])
    )
    assert sources(sqs) == [("role_app_r", "role"), ("AdministratorAccess", "aws-managed")]
    assert (ec2["EvalDecision"], sources(ec2)) == (
        "allowed",
        [("AdministratorAccess", "aws-managed")],
    )
    # The trust policy is not an identity policy: it grants the role nothing.
    [assume] = await principal(api, group, list_params("ActionNames", ["sts:AssumeRole"]))
    assert assume["EvalDecision"] == "implicitDeny"


async def test_principal_policy_applies_the_entity_boundary(api: Api) -> None:
    await api.ok(
        "CreateUser",
        UserName="bounded",
        PermissionsBoundary="arn:aws:iam::aws:policy/IAMReadOnlyAccess",
    )
    await api.ok(
        "AttachUserPolicy",
        UserName="bounded",
        PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess",
    )
    arn = user_arn(api, "bounded")
    s3, iam = await principal(
        api, arn, list_params("ActionNames", ["s3:GetObject", "iam:ListUsers"])
    )
    assert s3["EvalDecision"] == "implicitDeny"
    assert s3["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}
    assert iam["EvalDecision"] == "allowed"
    assert sources(iam) == [
        ("AdministratorAccess", "aws-managed"),
        ("IAMReadOnlyAccess", "aws-managed"),
    ]
    # A boundary given as text replaces the entity's own.
    swapped = await principal(
        api,
        arn,
        {
            **list_params("ActionNames", ["s3:GetObject", "iam:ListUsers"]),
            **list_params("PermissionsBoundaryPolicyInputList", [allow("s3:*")]),
        },
    )
    assert [r["EvalDecision"] for r in swapped] == ["allowed", "implicitDeny"]


async def test_principal_policy_with_a_resource_policy(api: Api) -> None:
    await api.ok("CreateUser", UserName="reader")
    arn = user_arn(api, "reader")
    bucket = "arn:aws:s3:::data/k"
    rp = doc(stmt("Allow", "s3:GetObject", bucket, principal={"AWS": arn}))
    params = {
        **list_params("ActionNames", ["s3:GetObject"]),
        **list_params("ResourceArns", [bucket]),
        "ResourcePolicy": rp,
    }
    # The simulated user is the caller unless CallerArn says otherwise.
    [result] = await principal(api, arn, params)
    assert result["EvalDecision"] == "allowed"
    assert sources(result) == [("ResourcePolicy", "resource")]
    [as_other] = await principal(api, arn, {**params, "CallerArn": user_arn(api, "someone")})
    assert as_other["EvalDecision"] == "implicitDeny"
    await api.ok("CreateGroup", GroupName="g")
    group = f"arn:aws:iam::{api.account_id}:group/g"
    reply = await api.call("SimulatePrincipalPolicy", params={"PolicySourceArn": group, **params})
    reply.expect(400, "InvalidInput")


@pytest.mark.parametrize(
    "exclusion",
    [
        {"PolicyType": "inline"},
        {
            "InlinePolicyIdentifier.PolicyName": "own",
            "InlinePolicyIdentifier.AttachmentType": "user",
            "InlinePolicyIdentifier.AttachmentName": "al*",
        },
    ],
)
async def test_policy_exclusions_remove_inline_policies(
    api: Api, exclusion: dict[str, str]
) -> None:
    await api.ok("CreateUser", UserName="alice")
    await api.ok("PutUserPolicy", UserName="alice", PolicyName="own", PolicyDocument=allow("s3:*"))
    arn = user_arn(api, "alice")
    params = list_params("ActionNames", ["s3:GetObject"])
    [before] = await principal(api, arn, params)
    assert before["EvalDecision"] == "allowed"
    excluded = {f"PolicyExclusionList.member.1.{k}": v for k, v in exclusion.items()}
    [after] = await principal(api, arn, {**params, **excluded})
    assert after["EvalDecision"] == "implicitDeny"


async def test_policy_exclusions_by_arn_and_type(api: Api) -> None:
    fence = await _managed(api, "fence", allow(["s3:List*", "iam:List*"]))
    await api.ok("CreateUser", UserName="bob", PermissionsBoundary=fence)
    mine = await _managed(api, "team-s3", allow("s3:*"))
    await api.ok("AttachUserPolicy", UserName="bob", PolicyArn=mine)
    await api.ok(
        "AttachUserPolicy", UserName="bob", PolicyArn="arn:aws:iam::aws:policy/IAMFullAccess"
    )
    arn = user_arn(api, "bob")
    actions = list_params("ActionNames", ["s3:ListBucket", "iam:ListUsers"])

    async def decisions(extra: dict[str, str]) -> list[str]:
        return [r["EvalDecision"] for r in await principal(api, arn, {**actions, **extra})]

    assert await decisions({}) == ["allowed", "allowed"]
    assert await decisions(
        {"PolicyExclusionList.member.1.PolicyArn": f"arn:aws:iam::{api.account_id}:policy/team-*"}
    ) == ["implicitDeny", "allowed"]
    assert await decisions({"PolicyExclusionList.member.1.PolicyType": "aws-managed"}) == [
        "allowed",
        "implicitDeny",
    ]
    assert await decisions({"PolicyExclusionList.member.1.PolicyType": "user-managed"}) == [
        "implicitDeny",
        "allowed",
    ]
    # Without its boundary the user may write too.
    write = list_params("ActionNames", ["s3:PutObject"])
    [bounded] = await principal(api, arn, write)
    assert bounded["EvalDecision"] == "implicitDeny"
    [free] = await principal(
        api, arn, {**write, "PolicyExclusionList.member.1.PolicyType": "permission-boundary"}
    )
    assert free["EvalDecision"] == "allowed"
    assert "PermissionsBoundaryDecisionDetail" not in free
    for bad in (
        {"PolicyExclusionList.member.1.PolicyArn": "arn:aws:iam::aws:policy/*Access*"},
        {"PolicyExclusionList.member.1.PolicyArn": "arn:aws:iam::aws:pol*cy/IAMFullAccess"},
        {
            "PolicyExclusionList.member.1.PolicyType": "inline",
            "PolicyExclusionList.member.1.PolicyArn": "arn:aws:iam::aws:policy/IAMFullAccess",
        },
    ):
        reply = await api.call(
            "SimulatePrincipalPolicy", params={"PolicySourceArn": arn, **actions, **bad}
        )
        reply.expect(400, "InvalidInput")


async def test_principal_policy_unknown_or_foreign_entities(api: Api) -> None:
    actions = list_params("ActionNames", ["s3:GetObject"])
    for source, code, status in (
        (user_arn(api, "ghost"), "NoSuchEntity", 404),
        (f"arn:aws:iam::{api.account_id}:role/ghost", "NoSuchEntity", 404),
        (f"arn:aws:iam::{ACCOUNT_B}:user/alice", "NoSuchEntity", 404),
        (f"arn:aws:iam::{api.account_id}:policy/readers", "InvalidInput", 400),
        (f"arn:aws:sts::{api.account_id}:assumed-role/r/s", "InvalidInput", 400),
    ):
        reply = await api.call(
            "SimulatePrincipalPolicy", params={"PolicySourceArn": source, **actions}
        )
        reply.expect(status, code)
    await api.ok("CreateUser", UserName="pathy", Path="/a/")
    # The ARN must name the entity with its path.
    reply = await api.call(
        "SimulatePrincipalPolicy", params={"PolicySourceArn": user_arn(api, "pathy"), **actions}
    )
    reply.expect(404, "NoSuchEntity", "The user with name pathy cannot be found.")


async def test_context_keys_for_principal_policy(api: Api) -> None:
    bounded = doc(
        stmt("Allow", "*", condition={"StringEquals": {"aws:RequestedRegion": "eu-west-1"}})
    )
    boundary = await _managed(api, "fence", bounded)
    await api.ok("CreateUser", UserName="carol", PermissionsBoundary=boundary)
    await api.ok(
        "PutUserPolicy",
        UserName="carol",
        PolicyName="p",
        PolicyDocument=doc(
            stmt("Allow", "s3:*", condition={"Bool": {"aws:SecureTransport": "true"}})
        ),
    )
    await api.ok("CreateGroup", GroupName="g")
    await api.ok("AddUserToGroup", GroupName="g", UserName="carol")
    await api.ok(
        "PutGroupPolicy",
        GroupName="g",
        PolicyName="gp",
        PolicyDocument=doc(
            stmt("Allow", "ec2:*", condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
        ),
    )
    extra = doc(
        stmt(
            "Allow",
            "sqs:*",
            condition={"StringLike": {"aws:SECURETRANSPORT": "x", "sqs:queue": "q"}},
        )
    )
    reply = await api.ok(
        "GetContextKeysForPrincipalPolicy",
        params={
            "PolicySourceArn": user_arn(api, "carol"),
            **list_params("PolicyInputList", [extra]),
        },
    )
    keys = boto_parse(reply)["ContextKeyNames"]
    assert keys == ["aws:SecureTransport", "aws:SourceIp", "aws:RequestedRegion", "sqs:queue"]
    (
        await api.call("GetContextKeysForPrincipalPolicy", PolicySourceArn=user_arn(api, "nobody"))
    ).expect(404, "NoSuchEntity")


# -- service control policies ---------------------------------------------------------------------


async def test_organization_policies(api: Api) -> None:
    levels = {
        **list_params(
            "OrderedOrganizationPolicyInputList.member.1.ServiceControlPolicyInputList",
            [allow("*")],
        ),
        **list_params(
            "OrderedOrganizationPolicyInputList.member.2.ServiceControlPolicyInputList",
            [allow(["s3:*", "iam:*"]), doc(stmt("Deny", "iam:DeleteUser"))],
        ),
    }
    params = sim_params([allow("*")], ["s3:GetObject", "ec2:RunInstances", "iam:DeleteUser"])
    params.update(levels)
    s3, ec2, iam = await custom(api, params)
    assert s3["EvalDecision"] == "allowed"
    assert s3["OrganizationsDecisionDetail"] == {"AllowedByOrganizations": True}
    assert ec2["EvalDecision"] == "implicitDeny"
    assert ec2["OrganizationsDecisionDetail"] == {"AllowedByOrganizations": False}
    assert ec2["MatchedStatements"] == []
    assert iam["EvalDecision"] == "explicitDeny"
    assert iam["MatchedStatements"] == []  # statements of SCPs are not reported


# -- authorization of the simulator itself --------------------------------------------------------


async def test_simulator_actions_are_authorized(api: Api) -> None:
    creds, _ = await api.new_user("eve", policy=allow("iam:CreateUser"))
    await api.ok("CreateUser", UserName="target")
    target = user_arn(api, "target")
    checks = [
        ("SimulateCustomPolicy", sim_params([allow("s3:*")], ["s3:GetObject"])),
        ("GetContextKeysForCustomPolicy", list_params("PolicyInputList", [allow("s3:*")])),
        (
            "SimulatePrincipalPolicy",
            {"PolicySourceArn": target, **list_params("ActionNames", ["s3:GetObject"])},
        ),
        ("GetContextKeysForPrincipalPolicy", {"PolicySourceArn": target}),
    ]
    for name, params in checks:
        reply = (await api.call(name, creds, params)).expect(403, "AccessDenied")
        assert f"iam:{name}" in (reply.message or "")
    # An unknown entity is reported only to a caller allowed to simulate it.
    ghost = {
        "PolicySourceArn": user_arn(api, "ghost"),
        **list_params("ActionNames", ["s3:GetObject"]),
    }
    (await api.call("SimulatePrincipalPolicy", creds, ghost)).expect(403, "AccessDenied")


async def test_simulator_permissions_are_scoped_to_the_source(api: Api) -> None:
    await api.ok("CreateUser", UserName="target")
    await api.ok("CreateUser", UserName="other")
    target = user_arn(api, "target")
    policy = doc(
        stmt(
            "Allow", ["iam:SimulatePrincipalPolicy", "iam:GetContextKeysForPrincipalPolicy"], target
        ),
        stmt("Allow", "iam:SimulateCustomPolicy"),
        stmt("Deny", "iam:GetContextKeysForCustomPolicy"),
    )
    creds, _ = await api.new_user("sim", policy=policy)
    actions = list_params("ActionNames", ["s3:GetObject"])
    await custom(api, sim_params([allow("s3:*")], ["s3:GetObject"]), creds)
    await principal(api, target, actions, creds)
    await api.ok("GetContextKeysForPrincipalPolicy", creds, PolicySourceArn=target)
    (
        await api.call(
            "SimulatePrincipalPolicy", creds, {"PolicySourceArn": user_arn(api, "other"), **actions}
        )
    ).expect(403, "AccessDenied")
    (
        await api.call(
            "GetContextKeysForCustomPolicy", creds, list_params("PolicyInputList", [allow("s3:*")])
        )
    ).expect(403, "AccessDenied")
    (
        await api.call(
            "SimulatePrincipalPolicy", creds, {"PolicySourceArn": user_arn(api, "ghost"), **actions}
        )
    ).expect(403, "AccessDenied")


async def test_read_only_access_includes_the_simulator(api: Api) -> None:
    creds, _ = await api.new_user("auditor")
    await api.ok(
        "AttachUserPolicy", UserName="auditor", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess"
    )
    results = await custom(api, sim_params([allow("s3:*")], ["s3:GetObject"]), creds)
    assert results[0]["EvalDecision"] == "allowed"
