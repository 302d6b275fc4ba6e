"""Access Analyzer ``ValidatePolicy`` through unmodified boto3 against a real ``broker serve``.

boto3's ``accessanalyzer`` client signs for the service ``access-analyzer`` and speaks
restJson1 (``POST /policy/validation``); the broker must answer in a shape botocore parses,
including its pagination and its restJson1 errors.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.broker_proc import BrokerProcess, Creds

RISKY = json.dumps(
    {
        "Statement": [
            {"Effect": "Allow", "Action": ["iam:PassRole", "iam:ListUser"], "Resource": "*"},
            {"Effect": "Allow", "NotAction": "s3:*", "Resource": "arn:aws:s3:::b"},
        ]
    },
    indent=2,
)

CLEAN = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["iam:GetUser", "iam:ListAccessKeys"],
                "Resource": "arn:aws:iam::123456789012:user/${aws:username}",
            }
        ],
    }
)


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: dict[str, Any] = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def new_user(broker: BrokerProcess, name: str) -> Creds:
    iam = broker.client("iam", broker.root_creds())
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Creds(key["AccessKeyId"], key["SecretAccessKey"])


def test_validate_policy_findings_through_boto3(sqlite_broker: BrokerProcess) -> None:
    aa = sqlite_broker.client("accessanalyzer", sqlite_broker.root_creds())
    answer = aa.validate_policy(policyDocument=RISKY, policyType="IDENTITY_POLICY")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["ResponseMetadata"]["RequestId"]
    findings = answer["findings"]
    by_code = {f["issueCode"]: f for f in findings}
    assert set(by_code) == {
        "MISSING_VERSION",
        "PASS_ROLE_WITH_STAR_IN_RESOURCE",
        "INVALID_ACTION",
        "ALLOW_WITH_NOT_ACTION",
    }
    assert by_code["PASS_ROLE_WITH_STAR_IN_RESOURCE"]["findingType"] == "SECURITY_WARNING"
    assert by_code["MISSING_VERSION"]["findingType"] == "WARNING"
    invalid = by_code["INVALID_ACTION"]
    assert invalid["findingType"] == "ERROR"
    assert "iam:ListUsers" in invalid["findingDetails"]
    assert invalid["learnMoreLink"].startswith("https://docs.aws.amazon.com/IAM/")
    [loc] = invalid["locations"]
    assert loc["path"] == [
        {"value": "Statement"},
        {"index": 0},
        {"value": "Action"},
        {"index": 1},
    ]
    span = loc["span"]
    assert RISKY[span["start"]["offset"] : span["end"]["offset"]] == '"iam:ListUser"'
    assert span["start"]["line"] == RISKY[: span["start"]["offset"]].count("\n") + 1

    clean = aa.validate_policy(policyDocument=CLEAN, policyType="IDENTITY_POLICY")
    assert clean["findings"] == []


def test_trust_policy_with_wildcard_principal(sqlite_broker: BrokerProcess) -> None:
    aa = sqlite_broker.client("accessanalyzer", sqlite_broker.root_creds())
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    answer = aa.validate_policy(
        policyDocument=trust,
        policyType="RESOURCE_POLICY",
        validatePolicyResourceType="AWS::IAM::AssumeRolePolicyDocument",
    )
    [found] = answer["findings"]
    assert found["issueCode"] == "ROLE_TRUST_POLICY_UNSUPPORTED_WILDCARD_IN_PRINCIPAL"
    assert found["findingType"] == "ERROR"


def test_pagination_with_the_boto3_paginator(sqlite_broker: BrokerProcess) -> None:
    aa = sqlite_broker.client("accessanalyzer", sqlite_broker.root_creds())
    everything = aa.validate_policy(policyDocument=RISKY, policyType="IDENTITY_POLICY")["findings"]
    first = aa.validate_policy(policyDocument=RISKY, policyType="IDENTITY_POLICY", maxResults=1)
    assert first["findings"] == everything[:1]
    assert first["nextToken"]
    pages = aa.get_paginator("validate_policy").paginate(
        policyDocument=RISKY,
        policyType="IDENTITY_POLICY",
        PaginationConfig={"PageSize": 1},
    )
    collected = [f for page in pages for f in page["findings"]]
    assert collected == everything
    last = aa.validate_policy(
        policyDocument=RISKY,
        policyType="IDENTITY_POLICY",
        maxResults=len(everything),
    )
    assert "nextToken" not in last

    # A token of another document is refused.
    with pytest.raises(aa.exceptions.ValidationException) as bad:
        aa.validate_policy(
            policyDocument=CLEAN, policyType="IDENTITY_POLICY", nextToken=first["nextToken"]
        )
    assert error_of(bad) == ("ValidationException", 400)


def test_validation_exceptions(sqlite_broker: BrokerProcess) -> None:
    aa = sqlite_broker.client("accessanalyzer", sqlite_broker.root_creds())
    with pytest.raises(aa.exceptions.ValidationException) as bad:
        aa.validate_policy(policyDocument=CLEAN, policyType="NOT_A_TYPE")
    assert error_of(bad) == ("ValidationException", 400)
    response: dict[str, Any] = bad.value.response
    assert response["reason"] == "fieldValidationFailed"
    assert response["fieldList"][0]["name"] == "policyType"
    with pytest.raises(aa.exceptions.ValidationException) as bad:
        aa.validate_policy(
            policyDocument=CLEAN,
            policyType="IDENTITY_POLICY",
            validatePolicyResourceType="AWS::S3::Bucket",
        )
    assert bad.value.response["reason"] == "notSupported"


def test_user_without_permission_is_denied_then_allowed(sqlite_broker: BrokerProcess) -> None:
    creds = new_user(sqlite_broker, "reviewer")
    aa = sqlite_broker.client("accessanalyzer", creds)
    with pytest.raises(aa.exceptions.AccessDeniedException) as denied:
        aa.validate_policy(policyDocument=CLEAN, policyType="IDENTITY_POLICY")
    assert error_of(denied) == ("AccessDeniedException", 403)
    assert "access-analyzer:ValidatePolicy" in denied.value.response["Error"]["Message"]

    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    iam.put_user_policy(
        UserName="reviewer",
        PolicyName="validate",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "access-analyzer:ValidatePolicy",
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    answer = aa.validate_policy(policyDocument=CLEAN, policyType="IDENTITY_POLICY")
    assert answer["findings"] == []


def test_administrator_access_grants_validate_policy(sqlite_broker: BrokerProcess) -> None:
    creds = new_user(sqlite_broker, "admin")
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    iam.attach_user_policy(
        UserName="admin", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    aa = sqlite_broker.client("accessanalyzer", creds)
    assert aa.validate_policy(policyDocument=CLEAN, policyType="IDENTITY_POLICY")["findings"] == []


def test_bad_signature_and_unknown_key(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.root_creds()
    wrong_secret = sqlite_broker.client(
        "accessanalyzer", Creds(root.access_key_id, "x" * len(root.secret_access_key))
    )
    with pytest.raises(ClientError) as bad:
        wrong_secret.validate_policy(policyDocument=CLEAN, policyType="IDENTITY_POLICY")
    assert error_of(bad) == ("InvalidSignatureException", 403)
    assert "signature" in bad.value.response["Error"]["Message"].lower()

    unknown = sqlite_broker.client(
        "accessanalyzer", Creds("AKIAAAAAAAAAAAAAAAAA", root.secret_access_key)
    )
    with pytest.raises(ClientError) as bad:
        unknown.validate_policy(policyDocument=CLEAN, policyType="IDENTITY_POLICY")
    assert error_of(bad) == ("UnrecognizedClientException", 403)

    # Unsigned: no Authorization header at all.
    reply = sqlite_broker.request(
        "POST",
        "/policy/validation",
        body=json.dumps({"policyDocument": CLEAN, "policyType": "IDENTITY_POLICY"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 403
    assert reply.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert json.loads(reply.body)["message"]


def test_signed_for_another_service_is_refused(sqlite_broker: BrokerProcess) -> None:
    # A request signed for ``iam`` cannot be replayed at the Access Analyzer endpoint.
    root = sqlite_broker.root_creds()
    iam_scoped = sqlite_broker.signed({"Action": "ListUsers"}, root, service="iam")
    assert iam_scoped.status == 200
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps({"policyDocument": CLEAN, "policyType": "IDENTITY_POLICY"}).encode()
    req = AWSRequest(
        method="POST",
        url=sqlite_broker.url + "/policy/validation",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    botocore.auth.SigV4Auth(
        Credentials(root.access_key_id, root.secret_access_key), "iam", "us-east-1"
    ).add_auth(req)
    reply = sqlite_broker.request(
        "POST", "/policy/validation", body=body, headers=dict(req.headers.items())
    )
    assert reply.status == 403
    assert reply.headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_validate_policy_is_audited(sqlite_broker: BrokerProcess) -> None:
    aa = sqlite_broker.client("accessanalyzer", sqlite_broker.root_creds())
    aa.validate_policy(policyDocument=CLEAN, policyType="IDENTITY_POLICY")
    deadline = time.monotonic() + 10
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not events:
        out = sqlite_broker.run_cli(["audit", "tail", "--filter", "eventName=ValidatePolicy"])
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        if not events:
            time.sleep(0.2)
    assert events, "no ValidatePolicy audit event"
    event = events[-1]
    assert event["eventSource"] == "access-analyzer.amazonaws.com"
    assert event["readOnly"] is True
    assert "errorCode" not in event or event["errorCode"] is None
    assert CLEAN not in json.dumps(event)  # the policy text is never recorded


def test_aws_cli_validate_policy(sqlite_broker: BrokerProcess) -> None:
    out = sqlite_broker.aws(
        [
            "accessanalyzer",
            "validate-policy",
            "--policy-type",
            "IDENTITY_POLICY",
            "--policy-document",
            RISKY,
        ],
        sqlite_broker.root_creds(),
    )
    assert out.returncode == 0, out.stderr
    codes = {f["issueCode"] for f in json.loads(out.stdout)["findings"]}
    assert "PASS_ROLE_WITH_STAR_IN_RESOURCE" in codes
