"""Identity JWTs end to end, and the keyring admin commands against running brokers.

A JWT from ``GetWebIdentityToken`` (boto3 and the ``aws`` CLI) must verify with pyjwt against
the discovery document and JWKS fetched over HTTP from the broker; ``broker keys rotate`` keeps
it verifying, ``broker keys retire <kid>`` stops it, on the node that issued it and on another
node sharing the same Redis. ``broker keys list`` prints metadata, never key material.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import master_key
from tests.support.broker_proc import BrokerProcess, Creds
from tests.support.redis_server import RedisServer

AUDIENCE = "https://relying.example"
KEY_FIELDS = {"kid", "kind", "alg", "created", "rotated_out_at", "retired", "active", "verifies"}
PROPAGATION_WAIT_SECONDS = 10.0
"""Generous bound for a keyring change to reach another node (the design target is 1 s)."""


def fetch_json(node: BrokerProcess, path: str, host: str | None = None) -> Any:
    """GET ``path`` from ``node``; ``host`` is the ``Host`` header (as a load balancer sends)."""
    reply = node.request("GET", path, headers={"Host": host} if host else None)
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    return json.loads(reply.body)


def published_kids(node: BrokerProcess) -> set[str]:
    return {k["kid"] for k in fetch_json(node, "/.well-known/jwks.json")["keys"]}


def verify(
    node: BrokerProcess, token: str, audience: str = AUDIENCE, *, host: str | None = None
) -> dict[str, Any]:
    """Verify ``token`` as a relying party does, with ``node``'s discovery and JWKS.

    ``host`` is the issuer's host as the relying party reaches it (default: ``node``'s own);
    with several nodes behind one address, any node answers for it.
    """
    host = host or node.url.removeprefix("http://")
    config = fetch_json(node, "/.well-known/openid-configuration", host)
    assert config["issuer"] == f"http://{host}"
    assert config["jwks_uri"] == f"http://{host}/.well-known/jwks.json"
    keys = fetch_json(node, "/.well-known/jwks.json", host)["keys"]
    header = jwt.get_unverified_header(token)
    matching = [k for k in keys if k["kid"] == header["kid"]]
    if not matching:
        raise jwt.InvalidTokenError(f"kid {header['kid']} is not in the JWKS")
    claims: dict[str, Any] = jwt.decode(
        token,
        key=jwt.PyJWK.from_dict(matching[0]),
        algorithms=config["id_token_signing_alg_values_supported"],
        audience=audience,
        issuer=config["issuer"],
    )
    return claims


def keys_list(node: BrokerProcess) -> list[dict[str, Any]]:
    out = node.run_cli(["keys", "list"])
    for marker in ("PRIVATE", "sealed", '"d"', "v1."):
        assert marker not in out
    listed: list[dict[str, Any]] = json.loads(out)
    for item in listed:
        assert set(item) == KEY_FIELDS
    return listed


def wait_until(predicate: Any, timeout: float = PROPAGATION_WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_jwt_verifies_then_rotate_keeps_and_retire_drops_it(sqlite_broker: BrokerProcess) -> None:
    node = sqlite_broker
    root = node.root_creds()
    iam = node.client("iam", root)
    iam.create_user(UserName="worker")
    iam.put_user_policy(
        UserName="worker",
        PolicyName="jwt",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:GetWebIdentityToken", "Resource": "*"}
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="worker")["AccessKey"]
    worker = Creds(key["AccessKeyId"], key["SecretAccessKey"])
    user_arn = f"arn:aws:iam::{node.account_id()}:user/worker"
    sts = node.client("sts", worker)

    with pytest.raises(ClientError) as off:
        sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="RS256")
    assert off.value.response["Error"]["Code"] == "OutboundWebIdentityFederationDisabledException"
    assert isinstance(off.value, sts.exceptions.OutboundWebIdentityFederationDisabledException)
    with pytest.raises(iam.exceptions.FeatureDisabledException):
        iam.get_outbound_web_identity_federation_info()
    enabled = iam.enable_outbound_web_identity_federation()
    assert enabled["IssuerIdentifier"] == node.url
    with pytest.raises(iam.exceptions.FeatureEnabledException):
        iam.enable_outbound_web_identity_federation()

    issued = sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="RS256")
    token = issued["WebIdentityToken"]
    claims = verify(node, token)
    assert claims["sub"] == user_arn
    assert claims["aud"] == AUDIENCE
    assert int(issued["Expiration"].timestamp()) == claims["exp"]
    old_kid = jwt.get_unverified_header(token)["kid"]

    before = keys_list(node)
    assert sorted((k["kind"], k["alg"]) for k in before) == [
        ("signing", "ES384"),
        ("signing", "RS256"),
        ("token", "A256GCM"),
    ]
    assert all(k["active"] and k["verifies"] and not k["retired"] for k in before)
    assert old_kid in {k["kid"] for k in before}

    rotated = json.loads(node.run_cli(["keys", "rotate"]))
    assert {(k["kind"], k["alg"]) for k in rotated} == {(k["kind"], k["alg"]) for k in before}
    assert not {k["kid"] for k in rotated} & {k["kid"] for k in before}
    new_kid = next(k["kid"] for k in rotated if k["alg"] == "RS256")
    assert wait_until(lambda: new_kid in published_kids(node))
    assert verify(node, token)["sub"] == user_arn  # the old key still verifies after rotation
    fresh = sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="RS256")
    assert jwt.get_unverified_header(fresh["WebIdentityToken"])["kid"] == new_kid
    listed = {k["kid"]: k for k in keys_list(node)}
    assert listed[old_kid]["rotated_out_at"] is not None
    assert listed[old_kid]["verifies"] and not listed[old_kid]["active"]

    retired = json.loads(node.run_cli(["keys", "retire", old_kid]))
    assert retired["kid"] == old_kid and retired["retired"] and not retired["verifies"]
    assert wait_until(lambda: old_kid not in published_kids(node))
    with pytest.raises(jwt.InvalidTokenError, match="not in the JWKS"):
        verify(node, token)
    assert verify(node, fresh["WebIdentityToken"])["sub"] == user_arn


def test_aws_cli_gets_a_token_that_verifies(sqlite_broker: BrokerProcess) -> None:
    node = sqlite_broker
    root = node.root_creds()
    enabled = node.aws(["iam", "enable-outbound-web-identity-federation"], root, check=True)
    assert json.loads(enabled.stdout)["IssuerIdentifier"] == node.url
    done = node.aws(
        [
            "sts", "get-web-identity-token", "--audience", AUDIENCE, "other-client",
            "--signing-algorithm", "ES384", "--duration-seconds", "600",
        ],
        root,
        check=True,
    )  # fmt: skip
    token = json.loads(done.stdout)["WebIdentityToken"]
    claims = verify(node, token, audience="other-client")
    assert claims["sub"] == f"arn:aws:iam::{node.account_id()}:root"
    assert claims["aud"] == [AUDIENCE, "other-client"]
    assert claims["exp"] - claims["iat"] == 600
    info = node.aws(["iam", "get-outbound-web-identity-federation-info"], root, check=True)
    assert json.loads(info.stdout)["JwtVendingEnabled"] is True


def test_keys_commands_report_errors(sqlite_broker: BrokerProcess) -> None:
    with pytest.raises(RuntimeError, match="NoSuchEntity"):
        sqlite_broker.run_cli(["keys", "retire", "0123456789abcdef"])


def test_retire_on_one_node_reaches_the_other_node(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    env = {
        "BROKER_MASTER_KEY": master_key(),
        "BROKER_ROOT_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "BROKER_ROOT_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "BROKER_BOOTSTRAP_ACCOUNT_ID": "123456789012",
    }
    nodes = [
        BrokerProcess(tmp_path / f"node{i}", store="redis", redis_url=private_redis.url, env=env)
        for i in range(2)
    ]
    for node in nodes:  # both bootstrap at once: one account, one set of keys
        node.launch()
    try:
        for node in nodes:
            node.wait_healthy()
        a, b = nodes
        listed = keys_list(a)
        assert sorted((k["kind"], k["alg"]) for k in listed) == [
            ("signing", "ES384"),
            ("signing", "RS256"),
            ("token", "A256GCM"),
        ]
        assert keys_list(b) == listed

        root = a.root_creds()
        a.client("iam", root).enable_outbound_web_identity_federation()
        token = a.client("sts", root).get_web_identity_token(
            Audience=[AUDIENCE], SigningAlgorithm="RS256"
        )["WebIdentityToken"]
        kid = jwt.get_unverified_header(token)["kid"]
        # Nodes share one issuer behind a load balancer: b answers for a's address.
        a_host, b_host = a.url.removeprefix("http://"), b.url.removeprefix("http://")
        assert verify(b, token, host=a_host)["sub"] == "arn:aws:iam::123456789012:root"

        # The admin command runs in its own process; node b learns of it through Redis.
        a.run_cli(["keys", "retire", kid])
        assert wait_until(lambda: kid not in published_kids(b))
        with pytest.raises(jwt.InvalidTokenError, match="not in the JWKS"):
            verify(b, token, host=a_host)
        with pytest.raises(jwt.InvalidTokenError, match="not in the JWKS"):
            verify(a, token)

        # The next token (from b) is signed by a fresh key that a publishes too.
        again = b.client("sts", root).get_web_identity_token(
            Audience=[AUDIENCE], SigningAlgorithm="RS256"
        )["WebIdentityToken"]
        new_kid = jwt.get_unverified_header(again)["kid"]
        assert new_kid != kid
        assert wait_until(lambda: new_kid in published_kids(a))
        assert verify(a, again, host=b_host)["sub"] == "arn:aws:iam::123456789012:root"
    finally:
        for node in nodes:
            node.stop()
