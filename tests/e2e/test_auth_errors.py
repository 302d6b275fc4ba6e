"""Authentication and request errors: exact AWS codes and statuses, never a 500."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.broker_proc import BrokerProcess, Creds

NOW = dt.datetime.now


def test_wrong_secret_is_signature_does_not_match(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.root_creds()
    bad = Creds(
        root.access_key_id,
        root.secret_access_key[:-1] + ("A" if root.secret_access_key[-1] != "A" else "B"),
    )
    reply = sqlite_broker.signed({"Action": "ListUsers", "Version": "2010-05-08"}, bad)
    assert reply.status == 403
    assert reply.error_code() == "SignatureDoesNotMatch"
    assert reply.headers["x-amzn-requestid"]


def test_unknown_key_is_invalid_client_token_id(sqlite_broker: BrokerProcess) -> None:
    stranger = Creds("AKIAZZZZZZZZZZZZZZZZ", "x" * 40)
    reply = sqlite_broker.signed(
        {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, stranger, service="sts"
    )
    assert reply.status == 403
    assert reply.error_code() == "InvalidClientTokenId"
    assert reply.error_message() == "The security token included in the request is invalid."


def test_old_request_is_signature_expired(sqlite_broker: BrokerProcess) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    reply = sqlite_broker.signed(
        {"Action": "GetCallerIdentity", "Version": "2011-06-15"},
        sqlite_broker.root_creds(),
        service="sts",
        when=when,
    )
    assert reply.status == 403
    assert reply.error_code() == "SignatureDoesNotMatch"
    assert (reply.error_message() or "").startswith("Signature expired:")
    iam = sqlite_broker.signed(
        {"Action": "ListUsers", "Version": "2010-05-08"}, sqlite_broker.root_creds(), when=when
    )
    assert (iam.status, iam.error_code()) == (403, "SignatureDoesNotMatch")


def test_future_request_is_not_yet_current(sqlite_broker: BrokerProcess) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    reply = sqlite_broker.signed(
        {"Action": "ListUsers", "Version": "2010-05-08"}, sqlite_broker.root_creds(), when=when
    )
    assert reply.status == 403
    assert (reply.error_message() or "").startswith("Signature not yet current:")


def test_unsigned_call_is_missing_authentication_token(sqlite_broker: BrokerProcess) -> None:
    reply = sqlite_broker.signed({"Action": "GetCallerIdentity", "Version": "2011-06-15"}, None)
    assert reply.status == 403
    assert reply.error_code() == "MissingAuthenticationToken"
    assert reply.error_message() == "Request is missing Authentication Token"


def test_unknown_action_is_invalid_action(sqlite_broker: BrokerProcess) -> None:
    reply = sqlite_broker.signed(
        {"Action": "FlyToTheMoon", "Version": "2010-05-08"}, sqlite_broker.root_creds()
    )
    assert reply.status == 400
    assert reply.error_code() == "InvalidAction"
    missing = sqlite_broker.signed({"Version": "2010-05-08"}, sqlite_broker.root_creds())
    assert (missing.status, missing.error_code()) == (400, "MissingAction")


def test_malformed_policy_is_rejected_and_nothing_stored(sqlite_broker: BrokerProcess) -> None:
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    from botocore.exceptions import ClientError

    bad_docs = [
        "{not json",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Permit", "Action": "*", "Resource": "*"}],
            }
        ),
        json.dumps({"Version": "2012-10-17", "Statement": []}),
    ]
    for doc in bad_docs:
        with pytest.raises(ClientError) as err:
            iam.create_policy(PolicyName="broken", PolicyDocument=doc)
        assert err.value.response["Error"]["Code"] == "MalformedPolicyDocument"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert [p for p in iam.list_policies(Scope="Local")["Policies"]] == []
    iam.create_user(UserName="carol")
    with pytest.raises(ClientError) as err:
        iam.put_user_policy(UserName="carol", PolicyName="p", PolicyDocument="[]")
    assert err.value.response["Error"]["Code"] == "MalformedPolicyDocument"
    assert iam.list_user_policies(UserName="carol")["PolicyNames"] == []


def test_tampered_body_and_bad_inputs_never_500(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.root_creds()

    def flip(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return headers, body.replace(b"ListUsers", b"ListRoles")

    reply = sqlite_broker.signed(
        {"Action": "ListUsers", "Version": "2010-05-08"}, root, tamper=flip
    )
    assert (reply.status, reply.error_code()) == (403, "SignatureDoesNotMatch")

    def garble(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=AKIA/garbage"
        return headers, body

    reply = sqlite_broker.signed(
        {"Action": "ListUsers", "Version": "2010-05-08"}, root, tamper=garble
    )
    assert (reply.status, reply.error_code()) == (400, "IncompleteSignature")

    for params in (
        {"Action": "CreateUser", "Version": "2010-05-08", "UserName": "bad name!"},
        {"Action": "CreateUser", "Version": "2010-05-08"},
        {"Action": "CreateUser", "Version": "2010-05-08", "UserName": "x" * 65},
        {
            "Action": "CreateRole",
            "Version": "2010-05-08",
            "RoleName": "r",
            "AssumeRolePolicyDocument": "{}",
            "MaxSessionDuration": "60",
        },
        {"Action": "ListUsers", "Version": "2010-05-08", "MaxItems": "0"},
        {
            "Action": "UpdateAccessKey",
            "Version": "2010-05-08",
            "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA",
            "Status": "Sleeping",
        },
    ):
        reply = sqlite_broker.signed(params, root)
        assert reply.status == 400, (params, reply.text)
        assert reply.error_code() == "ValidationError", (params, reply.text)
    reply = sqlite_broker.signed(
        {"Action": "CreateUser", "Version": "2010-05-08", "UserName": "bad name!"}, root
    )
    assert "Value 'bad name!' at 'userName' failed to satisfy constraint" in (
        reply.error_message() or ""
    )

    big = sqlite_broker.request(
        "POST",
        "/",
        body=b"A=" + b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert big.status == 413
    bad_pct = sqlite_broker.request(
        "POST",
        "/",
        body=b"Action=%zz",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (bad_pct.status, bad_pct.error_code()) == (400, "MalformedQueryString")
    assert "broker exited" not in sqlite_broker.log()
    assert "Traceback" not in sqlite_broker.log()


def test_health_and_readiness(sqlite_broker: BrokerProcess) -> None:
    assert sqlite_broker.get("/healthz").status == 200
    ready = sqlite_broker.get("/readyz")
    assert ready.status == 200
    assert json.loads(ready.body)["status"] == "ready"


def test_failed_authentications_per_address_are_throttled(tmp_path: Path) -> None:
    # 0.5 failures a second per address, 10 seconds' worth saved up: 5 failures, then Throttling.
    env = {"BROKER_LIMITS_FAILED_AUTH_RPS_PER_IP": "0.5"}
    broker = BrokerProcess(tmp_path / "data", env=env).start()
    try:
        good = broker.client("sts", broker.root_creds())
        assert good.get_caller_identity()["Account"] == broker.account_id()
        bad = broker.client("sts", Creds("AKIAIOSFODNN7EXAMPLE", "x" * 40))
        for _ in range(5):
            with pytest.raises(ClientError) as failed:
                bad.get_caller_identity()
            assert failed.value.response["Error"]["Code"] == "InvalidClientTokenId"
        # The address is now over its budget: even a good signature is refused, unchecked.
        for client in (bad, good):
            with pytest.raises(ClientError) as throttled:
                client.get_caller_identity()
            assert throttled.value.response["Error"]["Code"] == "Throttling"
            assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        time.sleep(2.5)  # one failure's worth refills in 2 s
        assert good.get_caller_identity()["Account"] == broker.account_id()
        # Successful calls cost nothing.
        for _ in range(10):
            good.get_caller_identity()
    finally:
        broker.stop()
