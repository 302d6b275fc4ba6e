"""Outbound identity federation in-process: the IAM switch, GetWebIdentityToken, discovery.

Every JWT is verified the way a relying party would: discovery document and JWKS fetched over
HTTP from the listener, the key picked by ``kid``, the signature and claims checked by pyjwt.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker.core.model import Principal, PrincipalKind
from broker.core.tokens import SessionClaims
from broker.errors import (
    BrokerError,
    FeatureDisabledError,
    FeatureEnabledError,
    JwtPayloadSizeExceededError,
    OutboundFederationDisabledError,
    SessionDurationEscalationError,
)
from broker.service.identity_tokens import (
    CLAIMS_NAMESPACE,
    MAX_JWT_PAYLOAD_BYTES,
    WebIdentityTokenInput,
)
from tests.api.conftest import (
    FORM_TYPE,
    REGION,
    STS_VERSION,
    Api,
    ApiFactory,
    Creds,
    Reply,
    allow,
    boto_parse,
    list_params,
    tag_params,
)
from tests.unit.test_error_codes import code_problems

AUDIENCE = "https://relying.example"
GWIT = "GetWebIdentityToken"
OUTBOUND_ERRORS = (
    OutboundFederationDisabledError,
    SessionDurationEscalationError,
    JwtPayloadSizeExceededError,
    FeatureEnabledError,
    FeatureDisabledError,
)


async def web_identity_token(
    api: Api,
    creds: Creds | None = None,
    *,
    audiences: list[str] | None = None,
    algorithm: str | None = "RS256",
    extra: Mapping[str, str] | None = None,
) -> Reply:
    """Call GetWebIdentityToken (signed with ``creds``, root by default)."""
    form: dict[str, str] = {"Action": GWIT, "Version": STS_VERSION}
    form.update(list_params("Audience", [AUDIENCE] if audiences is None else audiences))
    if algorithm is not None:
        form["SigningAlgorithm"] = algorithm
    form.update(extra or {})
    body = urllib.parse.urlencode(form).encode("utf-8")
    return await api.send(GWIT, body=body, creds=creds, service="sts")


async def enable(api: Api, creds: Creds | None = None) -> Reply:
    return await api.call("EnableOutboundWebIdentityFederation", creds)


async def get_json(api: Api, path: str, headers: Mapping[str, str] | None = None) -> Any:
    resp = await api.client.get(path, headers=dict(headers or {}))
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    assert "max-age=" in resp.headers["Cache-Control"]
    return await resp.json()


async def verify(api: Api, token: str, audience: str = AUDIENCE) -> dict[str, Any]:
    """Verify ``token`` against the listener's published discovery and JWKS documents."""
    config = await get_json(api, "/.well-known/openid-configuration")
    jwks_path = urllib.parse.urlsplit(config["jwks_uri"]).path
    keys = await get_json(api, jwks_path)
    header = jwt.get_unverified_header(token)
    assert header["alg"] in config["id_token_signing_alg_values_supported"]
    matching = [k for k in keys["keys"] if k["kid"] == header["kid"]]
    if not matching:
        raise jwt.InvalidTokenError(f"kid {header['kid']} is not published")
    claims: dict[str, Any] = jwt.decode(
        token,
        key=jwt.PyJWK.from_dict(matching[0]),
        algorithms=[header["alg"]],
        audience=audience,
        issuer=config["issuer"],
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
    )
    return claims


@pytest.mark.parametrize("cls", OUTBOUND_ERRORS, ids=lambda cls: cls.__name__)
def test_error_codes_are_the_models(cls: type[BrokerError]) -> None:
    assert code_problems(cls) == []
    assert cls.fault == "Sender"


# -- the per-account switch ---------------------------------------------------------------------


async def test_outbound_federation_is_off_until_enabled(api: Api) -> None:
    reply = (await web_identity_token(api)).expect(
        403, "OutboundWebIdentityFederationDisabledException"
    )
    assert reply.fault == "Sender"
    assert reply.request_id == reply.headers["x-amzn-RequestId"]
    (await api.call("GetOutboundWebIdentityFederationInfo")).expect(404, "FeatureDisabled")
    (await api.call("DisableOutboundWebIdentityFederation")).expect(404, "FeatureDisabled")

    enabled = await enable(api)
    assert enabled.text("IssuerIdentifier") == api.url
    assert boto_parse(enabled)["IssuerIdentifier"] == api.url
    (await enable(api)).expect(409, "FeatureEnabled")
    info = boto_parse(await api.ok("GetOutboundWebIdentityFederationInfo"))
    assert info["IssuerIdentifier"] == api.url
    assert info["JwtVendingEnabled"] is True
    assert (await web_identity_token(api)).ok

    disabled = await api.ok("DisableOutboundWebIdentityFederation")
    assert disabled.root is not None
    assert (
        disabled.root.find(f"{{{disabled.ns}}}DisableOutboundWebIdentityFederationResult") is None
    )
    (await web_identity_token(api)).expect(403, "OutboundWebIdentityFederationDisabledException")
    (await api.call("GetOutboundWebIdentityFederationInfo")).expect(404, "FeatureDisabled")


async def test_the_switch_is_per_account(api: Api) -> None:
    await enable(api)
    _, other = await api.new_account()
    (await web_identity_token(api, other)).expect(
        403, "OutboundWebIdentityFederationDisabledException"
    )
    assert (await web_identity_token(api)).ok


async def test_switch_actions_need_their_iam_permissions(api: Api) -> None:
    nobody, _ = await api.new_user("nobody", policy=allow("iam:GetUser"))
    for name in (
        "EnableOutboundWebIdentityFederation",
        "GetOutboundWebIdentityFederationInfo",
        "DisableOutboundWebIdentityFederation",
    ):
        (await api.call(name, nobody)).expect(403, "AccessDenied")
    admin, _ = await api.new_user("admin", policy=allow("iam:*OutboundWebIdentityFederation*"))
    assert (await enable(api, admin)).ok
    assert (await api.call("GetOutboundWebIdentityFederationInfo", admin)).ok
    assert (await api.call("DisableOutboundWebIdentityFederation", admin)).ok


# -- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES384"])
async def test_token_verifies_against_the_published_jwks(api: Api, algorithm: str) -> None:
    await enable(api)
    reply = await web_identity_token(api, algorithm=algorithm)
    parsed = boto_parse(reply, "sts")
    token = parsed["WebIdentityToken"]
    assert reply.text("WebIdentityToken") == token
    claims = await verify(api, token)
    root_arn = f"arn:aws:iam::{api.account_id}:root"
    assert claims["sub"] == root_arn
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == api.url
    assert claims["exp"] - claims["iat"] == 300
    assert parsed["Expiration"] == dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
    aws = claims[CLAIMS_NAMESPACE]
    assert aws["aws_account"] == api.account_id
    assert aws["principal_id"] == root_arn
    assert aws["source_region"] == REGION
    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm and header["typ"] == "JWT"
    assert header["kid"] == (await api.rt.keys.signer(algorithm)).key.kid
    with pytest.raises(jwt.InvalidAudienceError):
        await verify(api, token, audience="https://someone.else")


async def test_several_audiences_duration_and_unique_ids(api: Api) -> None:
    await enable(api)
    audiences = ["https://a.example", "b-client", "urn:c"]
    reply = await web_identity_token(
        api, audiences=audiences, algorithm="ES384", extra={"DurationSeconds": "3600"}
    )
    token = reply.text("WebIdentityToken") or ""
    for audience in audiences:
        claims = await verify(api, token, audience=audience)
        assert claims["aud"] == audiences
        assert claims["exp"] - claims["iat"] == 3600
    again = await web_identity_token(api, audiences=audiences, algorithm="ES384")
    first = jwt.decode(token, options={"verify_signature": False})
    second = jwt.decode(again.text("WebIdentityToken") or "", options={"verify_signature": False})
    assert first["jti"] != second["jti"]


async def test_user_token_names_the_user_and_carries_tags(api: Api) -> None:
    await enable(api)
    creds, arn = await api.new_user("worker", policy=allow("sts:GetWebIdentityToken"))
    await api.ok("TagUser", UserName="worker", params=tag_params({"team": "data"}))
    reply = await web_identity_token(
        api, creds, extra=tag_params({"job": "nightly", "tier": "gold"})
    )
    claims = await verify(api, reply.text("WebIdentityToken") or "")
    assert claims["sub"] == arn
    aws = claims[CLAIMS_NAMESPACE]
    assert aws["principal_id"] == arn
    assert aws["principal_tags"] == {"team": "data"}
    assert aws["request_tags"] == {"job": "nightly", "tier": "gold"}


async def test_policy_conditions_on_audience_duration_algorithm_and_tags(api: Api) -> None:
    await enable(api)
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:GetWebIdentityToken",
                    "Resource": "*",
                    "Condition": {
                        "ForAllValues:StringEquals": {"sts:IdentityTokenAudience": AUDIENCE},
                        "NumericLessThanEquals": {"sts:DurationSeconds": "300"},
                        "StringEquals": {"sts:SigningAlgorithm": "ES384"},
                        "StringNotEqualsIfExists": {"aws:RequestTag/tier": "gold"},
                    },
                }
            ],
        }
    )
    creds, _ = await api.new_user("limited", policy=policy)
    assert (await web_identity_token(api, creds, algorithm="ES384")).ok
    denied = [
        await web_identity_token(api, creds, algorithm="RS256"),
        await web_identity_token(api, creds, audiences=[AUDIENCE, "other"], algorithm="ES384"),
        await web_identity_token(api, creds, algorithm="ES384", extra={"DurationSeconds": "301"}),
        await web_identity_token(api, creds, algorithm="ES384", extra=tag_params({"tier": "gold"})),
    ]
    for reply in denied:
        reply.expect(403, "AccessDenied")
        assert "sts:GetWebIdentityToken" in (reply.message or "")
    ok = await web_identity_token(api, creds, algorithm="ES384", extra=tag_params({"tier": "x"}))
    assert ok.ok


async def test_no_permission_is_access_denied_before_the_switch_is_consulted(api: Api) -> None:
    creds, _ = await api.new_user("plain", policy=allow("iam:GetUser"))
    (await web_identity_token(api, creds)).expect(403, "AccessDenied")


@pytest.mark.parametrize(
    ("audiences", "algorithm", "extra", "fragment"),
    [
        ([AUDIENCE], None, {}, "'signingAlgorithm' failed to satisfy constraint: Member must not"),
        ([AUDIENCE], "HS256", {}, "enum value set: [RS256, ES384]"),
        ([AUDIENCE], "RS2566", {}, "length less than or equal to 5"),
        ([], "RS256", {"Audience": ""}, "Member must have length greater than or equal to 1"),
        ([f"a{i}" for i in range(11)], "RS256", {}, "length less than or equal to 10"),
        (["x" * 1001], "RS256", {}, "'audience.member.1' failed"),
        ([AUDIENCE], "RS256", {"DurationSeconds": "59"}, "greater than or equal to 60"),
        ([AUDIENCE], "RS256", {"DurationSeconds": "3601"}, "less than or equal to 3600"),
        ([AUDIENCE], "RS256", {"SubjectMode": "Someone"}, "AWSIdentity, OriginIdentity"),
        ([AUDIENCE], "RS256", {"SubjectMode": "OriginIdentity"}, "OriginIdentity"),
        ([AUDIENCE], "RS256", {"Scope": "read write"}, "Scope"),
        ([AUDIENCE], "RS256", {"Scope": " read"}, "'scope' failed"),
        ([AUDIENCE], "RS256", tag_params([("k", "1"), ("K", "2")]), "Duplicate tag keys"),
        ([AUDIENCE], "RS256", tag_params({"bad*key": "v"}), "'tags.member.1.key' failed"),
        (
            [AUDIENCE],
            "RS256",
            tag_params({f"k{i}": "v" for i in range(51)}),
            "'tags' failed to satisfy constraint: Member must have length less than or equal",
        ),
    ],
)
async def test_parameter_validation(
    api: Api, audiences: list[str], algorithm: str | None, extra: dict[str, str], fragment: str
) -> None:
    await enable(api)
    reply = await web_identity_token(api, audiences=audiences, algorithm=algorithm, extra=extra)
    reply.expect(400, "ValidationError")
    assert fragment in (reply.message or ""), reply.message


async def test_missing_audience_is_a_validation_error(api: Api) -> None:
    await enable(api)
    body = urllib.parse.urlencode(
        {"Action": GWIT, "Version": STS_VERSION, "SigningAlgorithm": "RS256"}
    ).encode()
    reply = await api.send(GWIT, body=body, service="sts")
    reply.expect(400, "ValidationError")
    assert "'audience' failed to satisfy constraint: Member must not be null" in (
        reply.message or ""
    )


async def test_oversized_payload_is_rejected(api: Api) -> None:
    await enable(api)
    tags = {f"key-{i:02d}": "v" * 250 for i in range(40)}
    reply = await web_identity_token(api, extra=tag_params(tags))
    reply.expect(400, "JWTPayloadSizeExceededException")
    assert str(MAX_JWT_PAYLOAD_BYTES) in (reply.message or "")
    fewer = {k: v for k, v in list(tags.items())[:10]}
    assert (await web_identity_token(api, extra=tag_params(fewer))).ok


async def test_session_token_cannot_outlive_the_session(api: Api) -> None:
    await enable(api)
    session = await api.sts("GetSessionToken", DurationSeconds=900)
    akid = session.text("Credentials/AccessKeyId") or ""
    secret = session.text("Credentials/SecretAccessKey") or ""
    token = session.text("Credentials/SessionToken") or ""
    assert akid.startswith("ASIA")

    async def as_session(duration: int) -> Reply:
        form = {"Action": GWIT, "Version": STS_VERSION, "SigningAlgorithm": "RS256"}
        form.update(list_params("Audience", [AUDIENCE]))
        form["DurationSeconds"] = str(duration)
        body = urllib.parse.urlencode(form).encode()
        request = AWSRequest(
            method="POST", url=api.url + "/", data=body, headers={"Content-Type": FORM_TYPE}
        )
        SigV4Auth(Credentials(akid, secret, token), "sts", REGION).add_auth(request)
        headers = {k: str(v) for k, v in request.headers.items()}
        return await api.send(GWIT, body=body, headers=headers, service="sts", sign=False)

    ok = await as_session(600)
    assert ok.ok, ok.body
    claims = await verify(api, ok.text("WebIdentityToken") or "")
    assert claims["sub"] == f"arn:aws:iam::{api.account_id}:root"
    (await as_session(1800)).expect(403, "SessionDurationEscalationException")


async def test_role_session_names_the_role(api: Api) -> None:
    await enable(api)
    now = int(api.rt.clock.now().timestamp())
    role_arn = f"arn:aws:iam::{api.account_id}:role/app/runner"
    claims = SessionClaims(
        access_key_id="ASIAEXAMPLEEXAMPLE00",
        secret_access_key="secret",
        account_id=api.account_id,
        kind="assumed-role",
        principal_arn=f"arn:aws:sts::{api.account_id}:assumed-role/runner/job-1",
        principal_id="AROAEXAMPLEEXAMPLE0:job-1",
        issuer_arn=role_arn,
        issuer_name="runner",
        session_id="0" * 32,
        issued_at=now,
        expires_at=now + 120,
        tags=(("stage", "prod"),),
    )
    caller = Principal(
        PrincipalKind.ROOT,  # authorization is not under test here
        api.account_id,
        claims.principal_arn,
        claims.principal_id,
        "job-1",
        claims.access_key_id,
        claims,
    )
    service = api.rt.identity_tokens

    def request(duration: int) -> WebIdentityTokenInput:
        return WebIdentityTokenInput(
            audiences=(AUDIENCE,), signing_algorithm="ES384", issuer=api.url,
            duration_seconds=duration,
        )  # fmt: skip

    issued = await service.get_web_identity_token(caller, request(120))
    verified = await verify(api, issued.token)
    assert verified["sub"] == role_arn
    assert verified[CLAIMS_NAMESPACE]["principal_id"] == role_arn
    assert verified[CLAIMS_NAMESPACE]["principal_tags"] == {"stage": "prod"}
    with pytest.raises(SessionDurationEscalationError):
        await service.get_web_identity_token(caller, request(121))


# -- discovery and key changes -----------------------------------------------------------------


async def test_discovery_document(api: Api) -> None:
    config = await get_json(api, "/.well-known/openid-configuration")
    assert config["issuer"] == api.url
    assert config["jwks_uri"] == api.url + "/.well-known/jwks.json"
    assert config["id_token_signing_alg_values_supported"] == ["RS256", "ES384"]
    assert "public" in config["subject_types_supported"]
    named = await get_json(api, "/.well-known/openid-configuration", {"Host": "Broker.Example:80"})
    assert named["issuer"] == "http://broker.example"
    assert named["jwks_uri"] == "http://broker.example/.well-known/jwks.json"


@pytest.mark.parametrize("host", ["evil.example/path", "user@evil.example", "a b", "x:y:z"])
async def test_discovery_refuses_hosts_that_cannot_form_an_issuer(api: Api, host: str) -> None:
    resp = await api.client.get("/.well-known/openid-configuration", headers={"Host": host})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_jwks_publishes_public_keys_of_every_algorithm(api: Api) -> None:
    await api.rt.keys.ensure()  # what bootstrap does on every node
    keys = (await get_json(api, "/.well-known/jwks.json"))["keys"]
    assert sorted(k["alg"] for k in keys) == ["ES384", "RS256"]
    for key in keys:
        assert key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


async def test_rotation_keeps_and_retirement_drops_the_old_key(api: Api) -> None:
    await enable(api)
    token = (await web_identity_token(api)).text("WebIdentityToken") or ""
    old_kid = jwt.get_unverified_header(token)["kid"]
    await api.rt.keys.rotate()
    assert (await verify(api, token))["sub"].endswith(":root")
    fresh = (await web_identity_token(api)).text("WebIdentityToken") or ""
    assert jwt.get_unverified_header(fresh)["kid"] != old_kid
    await api.rt.keys.retire(old_kid)
    with pytest.raises(jwt.InvalidTokenError, match="is not published"):
        await verify(api, token)
    assert (await verify(api, fresh))["sub"].endswith(":root")


async def test_token_issued_before_disable_still_verifies(api_factory: ApiFactory) -> None:
    api = await api_factory()
    await enable(api)
    token = (await web_identity_token(api, algorithm="ES384")).text("WebIdentityToken") or ""
    await api.ok("DisableOutboundWebIdentityFederation")
    assert (await verify(api, token))["aud"] == AUDIENCE
