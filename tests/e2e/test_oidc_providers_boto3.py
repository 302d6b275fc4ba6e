"""OIDC identity providers through unmodified boto3 and the real ``aws`` CLI, on a real broker.

Also a broker started with ``BROKER_FEDERATION_ALLOW_HTTP_ISSUERS=true``: it registers
``http://127.0.0.1:PORT/path`` issuers (test and lab set-ups), whose ARN keeps ``host:port``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.core.oidc import NOT_HTTPS, THUMBPRINTS_PER_PROVIDER
from tests.support.broker_proc import BrokerProcess, Creds

THUMB_A = "3768084dfb3d2b68b7897bf5f565da8ef0aaaaaa"
THUMB_B = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
GITHUB = "https://token.actions.githubusercontent.com"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response: dict[str, Any] = exc.value.response
    error = response["Error"]
    return error["Code"], response["ResponseMetadata"]["HTTPStatusCode"], error["Message"]


@pytest.fixture
def lab_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker on SQLite that accepts http, loopback and port-carrying issuer URLs."""
    broker = BrokerProcess(
        tmp_path / "data", env={"BROKER_FEDERATION_ALLOW_HTTP_ISSUERS": "true"}
    ).start()
    yield broker
    broker.stop()


def test_boto3_oidc_provider_lifecycle(broker: BrokerProcess) -> None:
    iam = broker.client("iam", broker.root_creds())
    account = broker.account_id()

    created = iam.create_open_id_connect_provider(
        Url=GITHUB,
        ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=[THUMB_A.upper()],
        Tags=[{"Key": "team", "Value": "ci"}],
    )
    arn = created["OpenIDConnectProviderArn"]
    assert arn == f"arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com"
    assert created["Tags"] == [{"Key": "team", "Value": "ci"}]

    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert got["Url"] == "token.actions.githubusercontent.com"
    assert got["ClientIDList"] == ["sts.amazonaws.com"]
    assert got["ThumbprintList"] == [THUMB_A]
    assert got["Tags"] == [{"Key": "team", "Value": "ci"}]
    assert got["CreateDate"].tzinfo is not None

    listed = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert [p["Arn"] for p in listed] == [arn]

    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="app-2")
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="app-2")
    iam.remove_client_id_from_open_id_connect_provider(
        OpenIDConnectProviderArn=arn, ClientID="sts.amazonaws.com"
    )
    iam.update_open_id_connect_provider_thumbprint(
        OpenIDConnectProviderArn=arn, ThumbprintList=[THUMB_B, THUMB_A]
    )
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert got["ClientIDList"] == ["app-2"]
    assert got["ThumbprintList"] == [THUMB_B, THUMB_A]
    # Thumbprints are optional: an empty list clears them.
    iam.update_open_id_connect_provider_thumbprint(OpenIDConnectProviderArn=arn, ThumbprintList=[])
    assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["ThumbprintList"] == []

    iam.tag_open_id_connect_provider(
        OpenIDConnectProviderArn=arn, Tags=[{"Key": "env", "Value": "prod"}]
    )
    iam.untag_open_id_connect_provider(OpenIDConnectProviderArn=arn, TagKeys=["TEAM"])
    tags = iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn)
    assert tags["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert tags["IsTruncated"] is False

    with pytest.raises(iam.exceptions.EntityAlreadyExistsException) as dup:
        iam.create_open_id_connect_provider(Url=GITHUB, ClientIDList=["x"])
    assert error_of(dup) == (
        "EntityAlreadyExists",
        409,
        f"Provider with url {GITHUB} already exists.",
    )

    with pytest.raises(iam.exceptions.InvalidInputException) as bad:
        iam.create_open_id_connect_provider(Url="http://issuer.example.com")
    assert error_of(bad) == ("InvalidInput", 400, NOT_HTTPS)

    with pytest.raises(iam.exceptions.InvalidInputException) as local:
        iam.create_open_id_connect_provider(Url="https://127.0.0.1:8443/x")
    assert error_of(local)[:2] == ("InvalidInput", 400)

    with pytest.raises(iam.exceptions.InvalidInputException) as thumbs:
        iam.create_open_id_connect_provider(
            Url="https://issuer.example.com",
            ThumbprintList=[f"{i}" * 40 for i in range(THUMBPRINTS_PER_PROVIDER + 1)],
        )
    assert error_of(thumbs)[:2] == ("InvalidInput", 400)

    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
    with pytest.raises(iam.exceptions.NoSuchEntityException) as gone:
        iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert error_of(gone) == (
        "NoSuchEntity",
        404,
        f"OpenIDConnect Provider not found for arn {arn}",
    )


def test_user_needs_permission(sqlite_broker: BrokerProcess) -> None:
    root = sqlite_broker.client("iam", sqlite_broker.root_creds())
    arn = root.create_open_id_connect_provider(Url=GITHUB)["OpenIDConnectProviderArn"]
    root.create_user(UserName="erin")
    key = root.create_access_key(UserName="erin")["AccessKey"]
    erin = sqlite_broker.client("iam", Creds(key["AccessKeyId"], key["SecretAccessKey"]))
    with pytest.raises(ClientError) as denied:
        erin.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert error_of(denied)[:2] == ("AccessDenied", 403)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iam:GetOpenIDConnectProvider", "Resource": arn}
        ],
    }
    root.put_user_policy(UserName="erin", PolicyName="p", PolicyDocument=json.dumps(policy))
    assert erin.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["Url"] == (
        "token.actions.githubusercontent.com"
    )
    with pytest.raises(ClientError) as still_denied:
        erin.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert error_of(still_denied)[:2] == ("AccessDenied", 403)


def test_aws_cli(sqlite_broker: BrokerProcess) -> None:
    creds = sqlite_broker.root_creds()
    account = sqlite_broker.account_id()
    url = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    out = sqlite_broker.aws(
        [
            "iam",
            "create-open-id-connect-provider",
            "--url",
            url,
            "--client-id-list",
            "sts.amazonaws.com",
            "--thumbprint-list",
            THUMB_A,
        ],
        creds,
        check=True,
    )
    arn = json.loads(out.stdout)["OpenIDConnectProviderArn"]
    assert arn == (
        f"arn:aws:iam::{account}:oidc-provider/"
        "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    )
    got = sqlite_broker.aws(
        ["iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", arn],
        creds,
        check=True,
    )
    shown = json.loads(got.stdout)
    assert shown["Url"] == url.removeprefix("https://")
    assert shown["ClientIDList"] == ["sts.amazonaws.com"]
    listed = sqlite_broker.aws(["iam", "list-open-id-connect-providers"], creds, check=True)
    assert json.loads(listed.stdout)["OpenIDConnectProviderList"] == [{"Arn": arn}]
    dup = sqlite_broker.aws(
        ["iam", "create-open-id-connect-provider", "--url", url], creds, check=False
    )
    assert dup.returncode != 0
    assert "EntityAlreadyExists" in dup.stderr


def test_http_issuer_on_a_lab_broker(lab_broker: BrokerProcess) -> None:
    iam = lab_broker.client("iam", lab_broker.root_creds())
    account = lab_broker.account_id()
    url = f"http://127.0.0.1:{lab_broker.port}/realms/dev"
    arn = iam.create_open_id_connect_provider(Url=url, ClientIDList=["lab-client"])[
        "OpenIDConnectProviderArn"
    ]
    assert arn == f"arn:aws:iam::{account}:oidc-provider/127.0.0.1:{lab_broker.port}/realms/dev"
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert got["Url"] == f"127.0.0.1:{lab_broker.port}/realms/dev"
    assert got["ThumbprintList"] == []
    loopback = iam.create_open_id_connect_provider(Url="https://localhost:8443/")
    assert loopback["OpenIDConnectProviderArn"].endswith(":oidc-provider/localhost:8443/")
    arns = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    assert arns == sorted([arn, loopback["OpenIDConnectProviderArn"]])
    # Still no query strings, user info or non-http schemes.
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.create_open_id_connect_provider(Url=f"http://127.0.0.1:{lab_broker.port}/x?a=1")
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.create_open_id_connect_provider(Url="ftp://127.0.0.1/x")


def test_http_issuer_refused_by_default(sqlite_broker: BrokerProcess) -> None:
    iam = sqlite_broker.client("iam", sqlite_broker.root_creds())
    with pytest.raises(iam.exceptions.InvalidInputException) as err:
        iam.create_open_id_connect_provider(Url=f"http://127.0.0.1:{sqlite_broker.port}/realms/dev")
    assert error_of(err) == ("InvalidInput", 400, NOT_HTTPS)
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
