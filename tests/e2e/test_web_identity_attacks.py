"""AssumeRoleWithWebIdentity under attack, against a real ``broker serve`` process.

Every forged, malformed or misdirected token of ``tests.support.oidc_issuer.attack_tokens``
(alg ``none``, HS256 keyed with the issuer's public key, keys outside the JWKS, another issuer's
``kid``, wrong ``iss`` including the trailing-slash variant, bad or missing ``aud``, times
outside the leeway, oversized tokens, garbage base64, embedded ``jwk``/``jku``/``x5u`` headers
and more) is sent unsigned over HTTP. Each must get its STS error code and a 4xx, never a 5xx;
the ``jku``/``x5u`` URLs must never be fetched; and neither the error bodies nor the broker's
log may contain any token (spec/security.md A, G1, G2, A21).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest

from tests.support.broker_proc import BrokerProcess, HttpReply
from tests.support.oidc_issuer import Attack, OidcIssuer, attack_tokens, trust_policy

AUD = "sts.amazonaws.com"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("attacks") / "data"
    proc = BrokerProcess(data, env={"BROKER_FEDERATION_ALLOW_HTTP_ISSUERS": "true"}).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def issuers() -> Iterator[tuple[OidcIssuer, OidcIssuer, OidcIssuer]]:
    with (
        OidcIssuer(algorithms=("RS256", "ES256")) as issuer,
        OidcIssuer() as other,
        OidcIssuer() as attacker,
    ):
        yield issuer, other, attacker


@pytest.fixture(scope="module")
def role(broker: BrokerProcess, issuers: tuple[OidcIssuer, OidcIssuer, OidcIssuer]) -> str:
    issuer, other, _ = issuers
    iam = broker.client("iam", broker.root_creds())
    arns = [
        iam.create_open_id_connect_provider(Url=i.url, ClientIDList=[AUD])[
            "OpenIDConnectProviderArn"
        ]
        for i in (issuer, other)
    ]
    trust = trust_policy(arns[0], {"StringEquals": {f"{issuer.provider_id}:sub": "alice"}})
    arn: str = iam.create_role(RoleName="attacked", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    return arn


def send(broker: BrokerProcess, role: str, token: str) -> HttpReply:
    body = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": role,
            "RoleSessionName": "attack",
            "WebIdentityToken": token,
        }
    ).encode()
    return broker.request(
        "POST", "/", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )


@pytest.fixture(scope="module")
def attacks(issuers: tuple[OidcIssuer, OidcIssuer, OidcIssuer]) -> list[Attack]:
    issuer, other, attacker = issuers
    return attack_tokens(issuer, other, attacker.url)


def test_a_genuine_token_is_accepted(
    broker: BrokerProcess, role: str, issuers: tuple[OidcIssuer, OidcIssuer, OidcIssuer]
) -> None:
    reply = send(broker, role, issuers[0].token("alice"))
    assert reply.status == 200, reply.text
    assert "<SubjectFromWebIdentityToken>alice</SubjectFromWebIdentityToken>" in reply.text


def test_every_attack_is_refused_with_its_code_and_never_a_server_error(
    broker: BrokerProcess,
    role: str,
    attacks: list[Attack],
    issuers: tuple[OidcIssuer, OidcIssuer, OidcIssuer],
) -> None:
    wrong: list[str] = []
    for attack in attacks:
        reply = send(broker, role, attack.token)
        assert reply.status < 500, (attack.name, reply.status, reply.text)
        if (reply.status, reply.error_code()) != (attack.status, attack.code):
            wrong.append(
                f"{attack.name}: {reply.status} {reply.error_code()} {reply.error_message()}"
            )
        assert attack.token not in reply.text, attack.name
        assert "x-amzn-requestid" in reply.headers
    assert not wrong, "\n".join(wrong)
    assert sum(issuers[2].hits.values()) == 0, "a jku/x5u/jwk header made the broker fetch"


@pytest.mark.parametrize(
    "name",
    [
        "alg 'none' unsigned",
        "HS256 keyed with the public key (PEM)",
        "valid signature, key not in the JWKS, published kid",
        "kid of another issuer's key",
        "aud missing",
        "aud list without our client id",
        "exp past",
        "nbf an hour ahead",
        "oversized token",
        "garbage base64",
        "embedded jwk header",
        "jku header",
        "x5u header",
    ],
)
def test_named_attacks_from_the_issue(
    broker: BrokerProcess, role: str, attacks: list[Attack], name: str
) -> None:
    attack = next(a for a in attacks if a.name == name)
    reply = send(broker, role, attack.token)
    assert (reply.status, reply.error_code()) == (attack.status, attack.code), reply.text


def test_wrong_issuer_variants_including_a_trailing_slash(
    broker: BrokerProcess, role: str, attacks: list[Attack], issuers: tuple[OidcIssuer, ...]
) -> None:
    variants = [a for a in attacks if a.name.startswith("iss ")]
    assert any(a.name == f"iss {issuers[0].url + '/'!r}" for a in variants)
    for attack in variants:
        reply = send(broker, role, attack.token)
        assert (reply.status, reply.error_code()) == (400, "InvalidIdentityToken"), attack.name


def test_modelled_exception_classes_reach_boto3(
    broker: BrokerProcess, role: str, attacks: list[Attack]
) -> None:
    sts = broker.client("sts", broker.root_creds())
    expected = {
        "exp past": sts.exceptions.ExpiredTokenException,
        "alg 'none' unsigned": sts.exceptions.InvalidIdentityTokenException,
        "jku header": sts.exceptions.InvalidIdentityTokenException,
    }
    for name, exc in expected.items():
        token = next(a for a in attacks if a.name == name).token
        with pytest.raises(exc):
            sts.assume_role_with_web_identity(
                RoleArn=role, RoleSessionName="attack", WebIdentityToken=token
            )


def test_no_token_reaches_the_broker_log(
    broker: BrokerProcess, role: str, attacks: list[Attack]
) -> None:
    for attack in attacks[:10]:
        send(broker, role, attack.token)
    log = broker.log()
    assert log, "the broker wrote no log at all"
    parts = [(a.name, part) for a in attacks for part in a.token.split(".") if len(part) >= 20]
    assert parts
    leaked = [name for name, part in parts if part in log]
    assert leaked == []
