"""AssumeRoleWithWebIdentity through the in-process API listener (spec/security.md section A).

Each test registers a loopback test issuer (``tests.support.oidc_issuer``) as an IAM OIDC
provider of a fresh in-memory broker started with ``allow_http_issuers``, creates roles whose
trust policies name it, and sends the action unsigned, as botocore does. Replies are parsed
with botocore's own parser where the shape matters.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.service.federation import MAX_TOKEN_CHARS
from tests.api.conftest import STS_VERSION, Api, ApiFactory, Reply, allow, boto_parse, list_params
from tests.support.oidc_issuer import (
    OidcIssuer,
    SigningKey,
    attack_tokens,
    sign_raw,
    trust_policy,
)

AUD = "sts.amazonaws.com"


@dataclass
class Session:
    """Temporary credentials minted by the broker."""

    access_key_id: str
    secret_access_key: str
    session_token: str


class Fed:
    """An API with federation switched on, plus helpers for providers, roles and calls."""

    def __init__(self, api: Api) -> None:
        self.api = api

    @property
    def account(self) -> str:
        return self.api.account_id

    async def provider(
        self,
        issuer: OidcIssuer,
        client_ids: tuple[str, ...] = (AUD,),
        thumbprints: tuple[str, ...] = (),
        api: Api | None = None,
    ) -> str:
        params = {"Url": issuer.url, **list_params("ClientIDList", list(client_ids))}
        params.update(list_params("ThumbprintList", list(thumbprints)))
        reply = await (api or self.api).ok("CreateOpenIDConnectProvider", params=params)
        arn = reply.text("OpenIDConnectProviderArn")
        assert arn == issuer.provider_arn((api or self.api).account_id)
        return arn

    async def role(self, name: str, trust: str, policy: str | None = None, **kw: Any) -> str:
        reply = await self.api.ok("CreateRole", RoleName=name, AssumeRolePolicyDocument=trust, **kw)
        if policy is not None:
            await self.api.ok("PutRolePolicy", RoleName=name, PolicyName="p", PolicyDocument=policy)
        arn = reply.text("Role/Arn")
        assert arn is not None
        return arn

    async def assume(
        self,
        role_arn: str,
        token: str,
        session: str = "web",
        headers: Mapping[str, str] | None = None,
        **params: str | int,
    ) -> Reply:
        form = {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": STS_VERSION,
            "RoleArn": role_arn,
            "RoleSessionName": session,
            "WebIdentityToken": token,
            **{k: str(v) for k, v in params.items()},
        }
        body = urllib.parse.urlencode(form).encode()
        return await self.api.send(
            "AssumeRoleWithWebIdentity", body=body, service="sts", sign=False, headers=headers
        )

    async def creds(self, role_arn: str, token: str, **kw: Any) -> Session:
        reply = await self.assume(role_arn, token, **kw)
        parsed = boto_parse(reply, "sts")
        assert reply.ok, (reply.status, reply.code, reply.message)
        c = parsed["Credentials"]
        return Session(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])

    async def call(self, session: Session, service: str, action: str, **kw: str) -> Reply:
        version = STS_VERSION if service == "sts" else "2010-05-08"
        form = {"Action": action, "Version": version, **kw}
        body = urllib.parse.urlencode(form).encode()
        creds = _SignCreds(session.access_key_id, session.secret_access_key)
        return await self.api.send(
            action, body=body, service=service, creds=creds,  # type: ignore[arg-type]
            headers={"X-Amz-Security-Token": session.session_token},
        )  # fmt: skip


@dataclass(frozen=True)
class _SignCreds:
    access_key_id: str
    secret_access_key: str


@pytest.fixture
async def fed(api_factory: ApiFactory) -> Fed:
    return Fed(await api_factory(BROKER_FEDERATION_ALLOW_HTTP_ISSUERS="true"))


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer(algorithms=("RS256", "ES256", "EdDSA", "PS256", "ES384")) as server:
        yield server


@pytest.fixture
def other_issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as server:
        yield server


def sub_is(issuer: OidcIssuer, *subjects: str) -> dict[str, Any]:
    value: str | list[str] = subjects[0] if len(subjects) == 1 else list(subjects)
    return {"StringEquals": {f"{issuer.provider_id}:sub": value}}


async def trusting(fed: Fed, issuer: OidcIssuer, conditions: Any = None, **kw: Any) -> str:
    arn = await fed.provider(issuer)
    return await fed.role(f"web-{uuid.uuid4().hex[:8]}", trust_policy(arn, conditions), **kw)


# -- success ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA", "PS256", "ES384"])
async def test_valid_token_gets_credentials_and_the_documented_shape(
    fed: Fed, issuer: OidcIssuer, alg: str
) -> None:
    role = await trusting(fed, issuer, sub_is(issuer, "alice"))
    reply = await fed.assume(role, issuer.token("alice", alg=alg), session="sess-1")
    parsed = boto_parse(reply, "sts")
    assert reply.ok, reply.message
    assert parsed["SubjectFromWebIdentityToken"] == "alice"
    assert parsed["Audience"] == AUD
    assert parsed["Provider"] == issuer.url
    assert parsed["AssumedRoleUser"]["Arn"] == (
        f"arn:aws:sts::{fed.account}:assumed-role/{role.rsplit('/', 1)[1]}/sess-1"
    )
    assert parsed["AssumedRoleUser"]["AssumedRoleId"].endswith(":sess-1")
    creds = parsed["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert reply.request_id and reply.headers["x-amzn-RequestId"] == reply.request_id
    session = Session(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    ident = await fed.call(session, "sts", "GetCallerIdentity")
    assert ident.text("Arn") == parsed["AssumedRoleUser"]["Arn"]


async def test_the_session_lasts_duration_seconds_not_the_token_lifetime(
    fed: Fed, issuer: OidcIssuer
) -> None:
    role = await trusting(fed, issuer, MaxSessionDuration=7200)
    before = time.time()
    reply = await fed.assume(role, issuer.token(lifetime=120), DurationSeconds=7200)
    parsed = boto_parse(reply, "sts")
    expires = parsed["Credentials"]["Expiration"].timestamp()
    assert before + 7200 - 5 <= expires <= time.time() + 7200 + 5
    default = boto_parse(await fed.assume(role, issuer.token(lifetime=120)), "sts")
    assert default["Credentials"]["Expiration"].timestamp() <= time.time() + 3600 + 5


async def test_duration_beyond_the_roles_maximum_is_a_validation_error(
    fed: Fed, issuer: OidcIssuer
) -> None:
    role = await trusting(fed, issuer)
    reply = await fed.assume(role, issuer.token(), DurationSeconds=43200)
    reply.expect(
        400,
        "ValidationError",
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    )


async def test_a_signature_sent_anyway_is_ignored(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    bogus = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAXXXXXXXXXXXXXXXX/20240101/us-east-1/"
        "sts/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
        "X-Amz-Date": "20240101T000000Z",
    }
    assert (await fed.assume(role, issuer.token(), headers=bogus)).ok


async def test_session_policy_narrows_the_role(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer, policy=allow(["iam:ListUsers", "iam:ListRoles"]))
    narrow = allow("iam:ListRoles")
    session = await fed.creds(role, issuer.token(), Policy=narrow)
    assert (await fed.call(session, "iam", "ListRoles")).ok
    (await fed.call(session, "iam", "ListUsers")).expect(403, "AccessDenied")
    wide = await fed.creds(role, issuer.token())
    assert (await fed.call(wide, "iam", "ListUsers")).ok


# -- trust policy and context keys ------------------------------------------------------------


async def test_wrong_subject_is_access_denied_without_echoing_the_claim(
    fed: Fed, issuer: OidcIssuer
) -> None:
    role = await trusting(fed, issuer, sub_is(issuer, "alice"))
    token = issuer.token("mallory-the-intruder")
    reply = await fed.assume(role, token)
    reply.expect(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    assert "mallory" not in reply.body.decode() and token not in reply.body.decode()


async def test_trust_policy_of_another_provider_does_not_admit_the_token(
    fed: Fed, issuer: OidcIssuer, other_issuer: OidcIssuer
) -> None:
    await fed.provider(issuer)
    other_arn = await fed.provider(other_issuer)
    role = await fed.role("other-only", trust_policy(other_arn))
    (await fed.assume(role, issuer.token())).expect(403, "AccessDenied")
    assert (await fed.assume(role, other_issuer.token())).ok


async def test_missing_role_is_access_denied(fed: Fed, issuer: OidcIssuer) -> None:
    await fed.provider(issuer)
    role = f"arn:aws:iam::{fed.account}:role/absent"
    (await fed.assume(role, issuer.token())).expect(403, "AccessDenied")


async def test_provider_registered_in_another_account_is_not_enough(
    fed: Fed, issuer: OidcIssuer
) -> None:
    other_account, other_root = await fed.api.new_account()
    # The provider lives in the other account; the role (and its trust) in ours.
    params = {"Url": issuer.url, **list_params("ClientIDList", [AUD])}
    await fed.api.ok("CreateOpenIDConnectProvider", other_root, params=params)
    role = await fed.role("cross", trust_policy(issuer.provider_arn(other_account)))
    (await fed.assume(role, issuer.token())).expect(400, "InvalidIdentityToken")
    assert issuer.jwks_hits == 0


@pytest.mark.parametrize(
    ("conditions", "claims", "allowed"),
    [
        ({"StringEquals": {"P:aud": AUD}}, {}, True),
        ({"StringEquals": {"P:aud": "other"}}, {}, False),
        ({"StringLike": {"P:sub": "team-*"}}, {"sub": "team-blue"}, True),
        ({"StringLike": {"P:sub": "team-*"}}, {"sub": "ops-blue"}, False),
        ({"ForAnyValue:StringEquals": {"P:amr": "mfa"}}, {"amr": ["pwd", "mfa"]}, True),
        ({"ForAnyValue:StringEquals": {"P:amr": "mfa"}}, {"amr": ["pwd"]}, False),
        ({"StringEquals": {"P:email": "a@example.com"}}, {"email": "a@example.com"}, True),
        ({"StringEquals": {"P:email": "a@example.com"}}, {}, False),
        ({"StringEquals": {"P:azp": "web-app"}}, {"azp": "web-app"}, True),
        ({"StringEquals": {"P:oaud": AUD}}, {}, True),
        ({"StringEquals": {"aws:FederatedProvider": "ARN"}}, {}, True),
        ({"StringEquals": {"sts:RoleSessionName": "${P:sub}"}}, {"sub": "web"}, True),
        ({"StringEquals": {"sts:RoleSessionName": "${P:sub}"}}, {"sub": "other"}, False),
        ({"Null": {"P:email": "true"}}, {}, True),
    ],
)
async def test_claims_are_trust_policy_condition_keys(
    fed: Fed,
    issuer: OidcIssuer,
    conditions: dict[str, Any],
    claims: dict[str, Any],
    allowed: bool,
) -> None:
    arn = await fed.provider(issuer)

    def fill(text: str) -> str:
        return text.replace("P:", issuer.provider_id + ":").replace("ARN", arn)

    filled = {
        op: {fill(key): fill(value) for key, value in block.items()}
        for op, block in conditions.items()
    }
    role = await fed.role("conditions", trust_policy(arn, filled))
    claims = dict(claims)
    sub = claims.pop("sub", "alice")
    reply = await fed.assume(role, issuer.token(sub, **claims), session="web")
    if allowed:
        assert reply.ok, (reply.code, reply.message)
    else:
        reply.expect(403, "AccessDenied")


async def test_several_audiences_need_a_registered_authorized_party(
    fed: Fed, issuer: OidcIssuer
) -> None:
    role = await trusting(fed, issuer)
    assert (await fed.assume(role, issuer.token(aud=["elsewhere", AUD]))).ok
    ok = await fed.assume(role, issuer.token(aud=["elsewhere", AUD], azp=AUD))
    assert boto_parse(ok, "sts")["Audience"] == AUD
    bad = await fed.assume(role, issuer.token(aud=["elsewhere", AUD], azp="elsewhere"))
    bad.expect(400, "InvalidIdentityToken")
    # A single audience with any azp: only the audience is checked.
    assert (await fed.assume(role, issuer.token(aud=AUD, azp="web-app"))).ok


# -- session tags and source identity from the token ---------------------------------------------


TAGS = {
    "https://aws.amazon.com/tags": {
        "principal_tags": {"team": ["blue"], "project": ["apollo"]},
        "transitive_tag_keys": ["team"],
    }
}


async def test_session_tags_need_tag_session_and_become_principal_tags(
    fed: Fed, issuer: OidcIssuer
) -> None:
    arn = await fed.provider(issuer)
    tag_policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iam:ListUsers",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}},
                }
            ],
        }
    )
    plain = await fed.role("no-tags", trust_policy(arn), tag_policy)
    (await fed.assume(plain, issuer.token(more=TAGS))).expect(
        403, "AccessDenied", "Not authorized to perform sts:TagSession"
    )
    tagged = await fed.role(
        "tags",
        trust_policy(arn, actions=["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]),
        tag_policy,
    )
    session = await fed.creds(tagged, issuer.token(more=TAGS))
    assert (await fed.call(session, "iam", "ListUsers")).ok
    untagged = await fed.creds(tagged, issuer.token())
    (await fed.call(untagged, "iam", "ListUsers")).expect(403, "AccessDenied")


async def test_request_tags_are_trust_condition_keys(fed: Fed, issuer: OidcIssuer) -> None:
    arn = await fed.provider(issuer)
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": arn},
                    "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
                    "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"}},
                }
            ],
        }
    )
    role = await fed.role("tag-cond", trust)
    assert (await fed.assume(role, issuer.token(more=TAGS))).ok
    red = {"https://aws.amazon.com/tags": {"principal_tags": {"team": ["red"]}}}
    (await fed.assume(role, issuer.token(more=red))).expect(403, "AccessDenied")


@pytest.mark.parametrize(
    "claim",
    [
        "not an object",
        {"principal_tags": {"team": ["a", "b"]}},
        {"principal_tags": {"team": 7}},
        {"principal_tags": {"": "x"}},
        {"principal_tags": {"k" * 129: "x"}},
        {"principal_tags": {"team": "x"}, "transitive_tag_keys": ["absent"]},
        {"principal_tags": {"Team": "x", "team": "y"}},
        {"principal_tags": {f"k{i}": "v" for i in range(51)}},
    ],
)
async def test_malformed_tag_claims_are_rejected_claims(
    fed: Fed, issuer: OidcIssuer, claim: Any
) -> None:
    arn = await fed.provider(issuer)
    role = await fed.role(
        "tags", trust_policy(arn, actions=["sts:AssumeRoleWithWebIdentity", "sts:TagSession"])
    )
    reply = await fed.assume(role, issuer.token(more={"https://aws.amazon.com/tags": claim}))
    reply.expect(403, "IDPRejectedClaim")


async def test_source_identity_claim_needs_set_source_identity(
    fed: Fed, issuer: OidcIssuer
) -> None:
    arn = await fed.provider(issuer)
    claim = {"https://aws.amazon.com/source_identity": "alice@example.com"}
    plain = await fed.role("plain", trust_policy(arn))
    (await fed.assume(plain, issuer.token(more=claim))).expect(403, "AccessDenied")
    role = await fed.role(
        "source",
        trust_policy(arn, actions=["sts:AssumeRoleWithWebIdentity", "sts:SetSourceIdentity"]),
    )
    reply = await fed.assume(role, issuer.token(more=claim))
    assert boto_parse(reply, "sts")["SourceIdentity"] == "alice@example.com"
    bad = {"https://aws.amazon.com/source_identity": "no spaces allowed"}
    (await fed.assume(role, issuer.token(more=bad))).expect(403, "IDPRejectedClaim")


async def test_oversized_subject_is_a_rejected_claim(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    (await fed.assume(role, issuer.token("s" * 256))).expect(403, "IDPRejectedClaim")


# -- parameters -------------------------------------------------------------------------------


async def test_token_length_is_checked_first_and_never_echoed(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    long_token = "x" * (MAX_TOKEN_CHARS + 1)
    reply = await fed.assume(role, long_token)
    reply.expect(400, "ValidationError")
    assert "xxxx" not in reply.body.decode() and "webIdentityToken" in (reply.message or "")
    (await fed.assume(role, "abc")).expect(400, "ValidationError")
    assert sum(issuer.hits.values()) == 0


async def test_missing_parameters_are_validation_errors(fed: Fed, issuer: OidcIssuer) -> None:
    body = urllib.parse.urlencode(
        {"Action": "AssumeRoleWithWebIdentity", "Version": STS_VERSION, "RoleSessionName": "s1"}
    ).encode()
    reply = await fed.api.send("AssumeRoleWithWebIdentity", body=body, service="sts", sign=False)
    reply.expect(400, "ValidationError")
    role = await trusting(fed, issuer)
    (await fed.assume(role, issuer.token(), session="bad name")).expect(400, "ValidationError")
    (await fed.assume("arn:aws:iam::123456789012:user/nope", issuer.token())).expect(
        400, "ValidationError"
    )


async def test_provider_id_is_refused_for_oidc_tokens(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    reply = await fed.assume(role, issuer.token(), ProviderId="www.amazon.com")
    reply.expect(400, "InvalidParameterValue")


# -- token validation -------------------------------------------------------------------------


async def test_forged_and_malformed_tokens_are_refused_with_their_codes(
    fed: Fed, issuer: OidcIssuer, other_issuer: OidcIssuer
) -> None:
    with OidcIssuer() as attacker:
        role = await trusting(fed, issuer)
        await fed.provider(other_issuer)
        attacks = attack_tokens(issuer, other_issuer, attacker.url)
        assert len(attacks) > 60
        for attack in attacks:
            reply = await fed.assume(role, attack.token)
            assert (reply.status, reply.code) == (attack.status, attack.code), (
                attack.name,
                reply.status,
                reply.code,
                reply.message,
            )
            assert attack.token not in reply.body.decode(), attack.name
        assert sum(attacker.hits.values()) == 0
    assert (await fed.assume(role, issuer.token())).ok


async def test_leeway_applies_to_exp_nbf_and_iat(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    now = int(time.time())
    assert (await fed.assume(role, issuer.token(iat=now - 600, exp=now - 20))).ok
    assert (await fed.assume(role, issuer.token(nbf=now + 20))).ok
    assert (await fed.assume(role, issuer.token(iat=now + 20))).ok
    (await fed.assume(role, issuer.token(iat=now - 600, exp=now - 90))).expect(
        400, "ExpiredTokenException"
    )
    (await fed.assume(role, issuer.token(nbf=now + 90))).expect(400, "InvalidIdentityToken")


async def test_short_rsa_keys_and_keys_for_encryption_are_ignored(
    fed: Fed, issuer: OidcIssuer
) -> None:
    role = await trusting(fed, issuer)
    good = issuer.key("RS256")
    small = SigningKey(
        "small",
        "RS256",
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
    )
    enc = issuer.add_key("RS256")
    with issuer._lock:
        issuer.keys.append(small)
    original = issuer.jwks

    def patched() -> dict[str, Any]:
        doc = original()
        for jwk in doc["keys"]:
            if jwk["kid"] == enc.kid:
                jwk["use"] = "enc"
        return doc

    issuer.jwks = patched  # type: ignore[method-assign]
    for key in (small, enc):
        head = {"alg": "RS256", "kid": key.kid}
        token = sign_raw(head, issuer.claims("alice", AUD), key.private, "RS256")
        (await fed.assume(role, token)).expect(400, "InvalidIdentityToken")
    assert (await fed.assume(role, issuer.token(key=good))).ok


async def test_token_without_kid_needs_a_single_key(fed: Fed) -> None:
    with (
        OidcIssuer(algorithms=("ES256",)) as single,
        OidcIssuer(algorithms=("ES256", "ES256")) as two,
    ):
        for server, ok in ((single, True), (two, False)):
            role = await trusting(fed, server)
            key = server.key()
            token = sign_raw({"alg": "ES256"}, server.claims("alice", AUD), key.private, "ES256")
            reply = await fed.assume(role, token)
            if ok:
                assert reply.ok, reply.message
            else:
                reply.expect(400, "InvalidIdentityToken")


# -- the provider's keys ------------------------------------------------------------------------


async def test_unknown_kid_flood_refetches_at_most_once(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    assert (await fed.assume(role, issuer.token())).ok
    assert issuer.jwks_hits == 1
    stranger = issuer.add_key("RS256", published=False)
    tokens = [
        sign_raw(
            {"alg": "RS256", "kid": uuid.uuid4().hex}, issuer.claims("alice", AUD),
            stranger.private, "RS256",
        )
        for _ in range(100)
    ]  # fmt: skip
    replies = await asyncio.gather(*(fed.assume(role, t) for t in tokens))
    assert {(r.status, r.code) for r in replies} == {(400, "InvalidIdentityToken")}
    assert issuer.jwks_hits <= 2
    assert (await fed.assume(role, issuer.token())).ok


async def test_rotated_key_is_picked_up_on_first_use(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    old = issuer.key("RS256")
    assert (await fed.assume(role, issuer.token(key=old))).ok
    fresh = issuer.rotate("RS256")
    assert (await fed.assume(role, issuer.token(key=fresh))).ok
    assert issuer.jwks_hits == 2
    (await fed.assume(role, issuer.token(key=old))).expect(400, "InvalidIdentityToken")


async def test_unreachable_provider_without_cached_keys(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    issuer.stop()
    reply = await fed.assume(role, issuer.token())
    reply.expect(400, "IDPCommunicationError")


async def test_discovery_naming_another_issuer_is_idp_communication_error(
    fed: Fed, issuer: OidcIssuer
) -> None:
    role = await trusting(fed, issuer)
    issuer.discovery_issuer = "http://127.0.0.1:1/evil"
    (await fed.assume(role, issuer.token())).expect(400, "IDPCommunicationError")
    assert issuer.jwks_hits == 0


async def test_provider_answering_errors_is_idp_communication_error(
    fed: Fed, issuer: OidcIssuer
) -> None:
    role = await trusting(fed, issuer)
    issuer.status = 500
    (await fed.assume(role, issuer.token())).expect(400, "IDPCommunicationError")


async def test_tls_provider_trusted_by_thumbprint(fed: Fed) -> None:
    with OidcIssuer(tls=True) as tls:
        arn = await fed.provider(tls, thumbprints=(tls.thumbprint,))
        role = await fed.role("tls", trust_policy(arn))
        assert (await fed.assume(role, tls.token())).ok
    with OidcIssuer(tls=True) as untrusted:
        arn = await fed.provider(untrusted, thumbprints=("ab" * 20,))
        role = await fed.role("tls-bad", trust_policy(arn))
        (await fed.assume(role, untrusted.token())).expect(400, "IDPCommunicationError")
        assert untrusted.jwks_hits == 0


async def test_deleted_provider_no_longer_admits_tokens(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    assert (await fed.assume(role, issuer.token())).ok
    await fed.api.ok(
        "DeleteOpenIDConnectProvider", OpenIDConnectProviderArn=issuer.provider_arn(fed.account)
    )
    (await fed.assume(role, issuer.token())).expect(400, "InvalidIdentityToken")


async def test_removed_client_id_no_longer_admits_its_tokens(fed: Fed, issuer: OidcIssuer) -> None:
    role = await trusting(fed, issuer)
    assert (await fed.assume(role, issuer.token())).ok
    await fed.api.ok(
        "RemoveClientIDFromOpenIDConnectProvider",
        OpenIDConnectProviderArn=issuer.provider_arn(fed.account),
        ClientID=AUD,
    )
    (await fed.assume(role, issuer.token())).expect(400, "InvalidIdentityToken")


async def test_http_issuers_are_refused_unless_allowed(api_factory: ApiFactory) -> None:
    with OidcIssuer() as server:
        strict = Fed(await api_factory())
        params = {"Url": server.url, **list_params("ClientIDList", [AUD])}
        reply = await strict.api.call("CreateOpenIDConnectProvider", params=params)
        assert reply.status == 400
        role = await strict.role("strict", trust_policy(server.provider_arn(strict.account)))
        (await strict.assume(role, server.token())).expect(400, "InvalidIdentityToken")
        assert sum(server.hits.values()) == 0
