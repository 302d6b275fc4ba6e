"""Unit tests: broker.core.keyring (master key parsing and AES-GCM sealing)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.core.keyring import (
    MASTER_KEY_BYTES,
    Keyring,
    SealError,
    generate_master_key,
    parse_master_key,
)

KEY = bytes(range(MASTER_KEY_BYTES))
OTHER_KEY = bytes(range(1, MASTER_KEY_BYTES + 1))
SECRET = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AAD = b"123456789012/user/alice/access-key/AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(KEY)


def test_round_trip(keyring: Keyring) -> None:
    sealed = keyring.seal(SECRET, aad=AAD)
    assert keyring.unseal(sealed, aad=AAD) == SECRET
    assert Keyring(KEY).unseal(sealed, aad=AAD) == SECRET  # a fresh instance, same key


@given(plaintext=st.binary(max_size=300), aad=st.binary(max_size=50))
def test_round_trip_any_bytes(plaintext: bytes, aad: bytes) -> None:
    keyring = Keyring(KEY)
    assert keyring.unseal(keyring.seal(plaintext, aad=aad), aad=aad) == plaintext


def test_sealed_text_shape(keyring: Keyring) -> None:
    sealed = keyring.seal(SECRET)
    version, kid, body = sealed.split(".")
    assert version == "v1"
    assert kid == keyring.kid
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert len(raw) == 12 + len(SECRET) + 16  # nonce + ciphertext + tag


def test_each_seal_uses_a_fresh_nonce(keyring: Keyring) -> None:
    assert keyring.seal(SECRET) != keyring.seal(SECRET)


def test_nonce_comes_from_rng() -> None:
    keyring = Keyring(KEY, rng=lambda n: b"\x07" * n)
    _, _, body = keyring.seal(SECRET).split(".")
    assert base64.urlsafe_b64decode(body + "==")[:12] == b"\x07" * 12


def test_sealed_text_does_not_contain_the_plaintext(keyring: Keyring) -> None:
    sealed = keyring.seal(SECRET)
    assert SECRET.decode() not in sealed
    _, _, body = sealed.split(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert SECRET not in raw
    assert base64.b64encode(SECRET).decode() not in sealed


@pytest.mark.parametrize("aad", [b"", b"other", AAD + b"x", AAD[:-1]])
def test_wrong_aad_fails(keyring: Keyring, aad: bytes) -> None:
    sealed = keyring.seal(SECRET, aad=AAD)
    with pytest.raises(SealError):
        keyring.unseal(sealed, aad=aad)


def test_any_changed_character_fails(keyring: Keyring) -> None:
    sealed = keyring.seal(SECRET, aad=AAD)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=."
    for index, old in enumerate(sealed):
        for new in alphabet:
            if new == old:
                continue
            tampered = sealed[:index] + new + sealed[index + 1 :]
            with pytest.raises(SealError):
                keyring.unseal(tampered, aad=AAD)


def test_any_flipped_bit_of_the_payload_fails(keyring: Keyring) -> None:
    sealed = keyring.seal(SECRET, aad=AAD)
    prefix, _, body = sealed.rpartition(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            text = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
            with pytest.raises(SealError):
                keyring.unseal(f"{prefix}.{text}", aad=AAD)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s: s[:-1], id="truncated"),
        pytest.param(lambda s: s + "A", id="extended"),
        pytest.param(lambda s: s.rpartition(".")[0] + ".", id="empty-body"),
        pytest.param(lambda s: s.rpartition(".")[0] + ".AAAA", id="too-short"),
        pytest.param(lambda s: "v2" + s[2:], id="other-version"),
        pytest.param(lambda s: s.replace(".", "", 1), id="no-separator"),
        pytest.param(lambda s: s + "==", id="padding"),
        pytest.param(lambda s: s[:-3] + "\u00e9" + s[-2:], id="non-ascii"),
        pytest.param(lambda s: "", id="empty"),
    ],
)
def test_garbled_text_fails(keyring: Keyring, change: Callable[[str], str]) -> None:
    sealed = keyring.seal(SECRET)
    with pytest.raises(SealError):
        keyring.unseal(change(sealed))


def test_other_master_key_fails(keyring: Keyring) -> None:
    sealed = keyring.seal(SECRET, aad=AAD)
    other = Keyring(OTHER_KEY)
    assert other.kid != keyring.kid
    with pytest.raises(SealError, match="unknown key id"):
        other.unseal(sealed, aad=AAD)
    # Even with the kid swapped in, the other key cannot open it.
    _, _, body = sealed.split(".")
    with pytest.raises(SealError):
        other.unseal(f"v1.{other.kid}.{body}", aad=AAD)


def test_kid_is_stable_short_and_not_the_key(keyring: Keyring) -> None:
    assert keyring.kid == Keyring(KEY).kid
    assert len(keyring.kid) == 8
    assert all(c in "0123456789abcdef" for c in keyring.kid)
    assert keyring.kid not in KEY.hex()


def test_repr_shows_no_key_material(keyring: Keyring) -> None:
    text = repr(keyring)
    assert keyring.kid in text
    for shown in (KEY.hex(), base64.b64encode(KEY).decode(), repr(KEY), KEY.hex()[:16]):
        assert shown not in text
    assert not hasattr(keyring, "__dict__")


def test_keyring_needs_a_32_byte_key() -> None:
    with pytest.raises(ValueError):
        Keyring(KEY[:16])


def test_generate_and_parse_master_key() -> None:
    text = generate_master_key()
    key = parse_master_key(text)
    assert len(key) == MASTER_KEY_BYTES
    assert base64.b64encode(key).decode() == text
    assert generate_master_key() != text
    assert parse_master_key(f"  {text}\n") == key  # as read from a key file


def test_generate_master_key_uses_rng() -> None:
    assert parse_master_key(generate_master_key(rng=lambda n: b"\x01" * n)) == b"\x01" * 32


@pytest.mark.parametrize(
    "text",
    [
        "",
        base64.b64encode(b"\x00" * 31).decode(),
        base64.b64encode(b"\x00" * 33).decode(),
        "not base64 at all!",
        "\u00e9" * 44,
        base64.b64encode(KEY).decode()[:-2],
    ],
)
def test_parse_master_key_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="master key") as caught:
        parse_master_key(text)
    if text:
        assert text not in str(caught.value)
