"""Unit tests: broker.core.keyring signing keys for identity JWTs (RS256, ES384)."""

from __future__ import annotations

import base64
import dataclasses

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.core.keyring import (
    SIGNING_ALGORITHMS,
    Keyring,
    SigningKey,
    generate_signing_key,
    load_private_key,
    public_jwk,
)

NOW = 1_700_000_000
AUDIENCE = "https://relying.example"
CLAIMS: dict[str, object] = {
    "iss": "https://broker.example",
    "sub": "arn:aws:iam::123456789012:role/app",
    "aud": AUDIENCE,
    "iat": NOW,
    "exp": 4_000_000_000,
}


@pytest.fixture(scope="module", params=SIGNING_ALGORITHMS)
def key(request: pytest.FixtureRequest) -> SigningKey:
    alg = request.param
    assert isinstance(alg, str)
    return generate_signing_key(alg, now=NOW)


@pytest.fixture(scope="module")
def keys_by_alg() -> dict[str, SigningKey]:
    return {alg: generate_signing_key(alg, now=NOW) for alg in SIGNING_ALGORITHMS}


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_algorithms_are_what_the_sts_model_allows() -> None:
    assert SIGNING_ALGORITHMS == ("RS256", "ES384")


def test_jwk_verifies_a_jwt_signed_with_the_private_key(key: SigningKey) -> None:
    token = jwt.encode(CLAIMS, load_private_key(key), algorithm=key.alg, headers={"kid": key.kid})
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    verifier = jwt.PyJWK(public_jwk(key)).key
    decoded = jwt.decode(token, verifier, algorithms=[key.alg], audience=AUDIENCE)
    assert decoded == CLAIMS


def test_jwk_rejects_a_tampered_jwt(key: SigningKey) -> None:
    token = jwt.encode(CLAIMS, load_private_key(key), algorithm=key.alg)
    header, payload, signature = token.split(".")
    forged_payload = base64.urlsafe_b64encode(b'{"sub":"root"}').rstrip(b"=").decode()
    verifier = jwt.PyJWK(public_jwk(key)).key
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{forged_payload}.{signature}", verifier, algorithms=[key.alg])


def test_jwk_of_another_key_does_not_verify(key: SigningKey) -> None:
    other = generate_signing_key(key.alg, now=NOW)
    token = jwt.encode(CLAIMS, load_private_key(other), algorithm=key.alg)
    verifier = jwt.PyJWK(public_jwk(key)).key
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, verifier, algorithms=[key.alg], audience=AUDIENCE)


def test_rsa_jwk_members(keys_by_alg: dict[str, SigningKey]) -> None:
    key = keys_by_alg["RS256"]
    jwk = public_jwk(key)
    assert set(jwk) == {"kty", "kid", "alg", "use", "n", "e"}
    assert (jwk["kty"], jwk["kid"], jwk["alg"], jwk["use"]) == ("RSA", key.kid, "RS256", "sig")
    assert jwk["e"] == "AQAB"
    private = load_private_key(key)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    n = _b64(jwk["n"])
    assert len(n) == 256 and n[0] != 0
    assert int.from_bytes(n, "big") == private.public_key().public_numbers().n


def test_ec_jwk_members(keys_by_alg: dict[str, SigningKey]) -> None:
    key = keys_by_alg["ES384"]
    jwk = public_jwk(key)
    assert set(jwk) == {"kty", "kid", "alg", "use", "crv", "x", "y"}
    assert (jwk["kty"], jwk["kid"], jwk["alg"], jwk["use"]) == ("EC", key.kid, "ES384", "sig")
    assert jwk["crv"] == "P-384"
    private = load_private_key(key)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP384R1)
    numbers = private.public_key().public_numbers()
    assert len(_b64(jwk["x"])) == 48 and len(_b64(jwk["y"])) == 48
    assert int.from_bytes(_b64(jwk["x"]), "big") == numbers.x
    assert int.from_bytes(_b64(jwk["y"]), "big") == numbers.y


def test_jwk_has_no_padding_and_no_private_members(key: SigningKey) -> None:
    jwk = public_jwk(key)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    assert all("=" not in value for value in jwk.values())


def test_repr_hides_the_pem(key: SigningKey) -> None:
    text = repr(key)
    assert "PRIVATE" not in text
    assert key.private_pem.decode()[40:80] not in text
    assert key.kid in text and key.alg in text


def test_pem_is_unencrypted_pkcs8(key: SigningKey) -> None:
    assert key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_created_at_and_kid_from_rng() -> None:
    key = generate_signing_key("ES384", now=NOW + 5, rng=lambda n: b"\x3c" * n)
    assert key.created_at == NOW + 5
    assert key.kid == "3c" * 8


def test_kids_are_random(keys_by_alg: dict[str, SigningKey]) -> None:
    again = generate_signing_key("ES384", now=NOW)
    assert again.kid != keys_by_alg["ES384"].kid
    assert len(again.kid) == 16


@pytest.mark.parametrize("alg", ["HS256", "RS384", "ES256", "none", "rs256", ""])
def test_unknown_algorithm_is_refused(alg: str) -> None:
    with pytest.raises(ValueError):
        generate_signing_key(alg, now=NOW)


def test_pem_of_the_wrong_kind_is_refused(keys_by_alg: dict[str, SigningKey]) -> None:
    rsa_key, ec_key = keys_by_alg["RS256"], keys_by_alg["ES384"]
    for wrong in (
        dataclasses.replace(rsa_key, alg="ES384"),
        dataclasses.replace(ec_key, alg="RS256"),
        dataclasses.replace(ec_key, alg="HS256"),
        dataclasses.replace(ec_key, private_pem=b"not a pem"),
    ):
        with pytest.raises(ValueError):
            load_private_key(wrong)
        with pytest.raises(ValueError):
            public_jwk(wrong)


def test_pem_survives_sealing(key: SigningKey) -> None:
    keyring = Keyring(bytes(range(32)))
    sealed = keyring.seal(key.private_pem, aad=key.kid.encode())
    assert b"PRIVATE" not in sealed.encode()
    restored = dataclasses.replace(key, private_pem=keyring.unseal(sealed, aad=key.kid.encode()))
    assert public_jwk(restored) == public_jwk(key)
