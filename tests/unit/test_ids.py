"""Unit tests: broker.core.ids (access key ids with the account encoded, secrets, unique ids)."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.core import ids

ACCOUNTS = ["000000000000", "123456789012", "999999999999", "609629065308"]


def fixed_rng(data: bytes) -> ids.Rng:
    """An rng that hands out ``data`` in order (and fails when it runs out)."""
    stream: Iterator[int] = iter(data)

    def rng(n: int) -> bytes:
        return bytes(next(stream) for _ in range(n))

    return rng


@pytest.mark.parametrize("prefix", sorted(ids.ACCESS_KEY_PREFIXES))
@pytest.mark.parametrize("account", ACCOUNTS)
def test_access_key_id_round_trips_the_account(prefix: str, account: str) -> None:
    key = ids.new_access_key_id(prefix, account)
    assert re.fullmatch(rf"{prefix}[A-Z2-7]{{16}}", key)
    assert len(key) == ids.ACCESS_KEY_ID_LENGTH
    assert ids.account_from_access_key_id(key) == account


@given(
    account=st.integers(0, 10**12 - 1).map(lambda n: f"{n:012d}"),
    random=st.binary(min_size=5, max_size=5),
)
def test_access_key_id_round_trips_for_any_account_and_randomness(
    account: str, random: bytes
) -> None:
    key = ids.new_access_key_id("ASIA", account, rng=fixed_rng(random))
    assert ids.account_from_access_key_id(key) == account


def test_known_key_decodes_to_its_published_account() -> None:
    assert ids.account_from_access_key_id("ASIAY34FZKBOKMUTVV7A") == "609629065308"


def test_access_key_id_layout() -> None:
    # 7 low bits and 4 trailing bytes come from rng; the account sits above the 7 bits.
    key = ids.new_access_key_id("AKIA", "123456789012", rng=fixed_rng(b"\xff\x01\x02\x03\x04"))
    raw = base64.b32decode(key[4:])
    z = int.from_bytes(raw[:6], "big")
    assert z == (123456789012 << 7) | 0x7F
    assert raw[6:] == b"\x01\x02\x03\x04"


def test_access_key_ids_differ() -> None:
    keys = {ids.new_access_key_id("AKIA", "123456789012") for _ in range(50)}
    assert len(keys) == 50


@pytest.mark.parametrize(
    ("prefix", "account"),
    [
        ("AIDA", "123456789012"),
        ("akia", "123456789012"),
        ("AKIA", "12345678901"),
        ("AKIA", "12345678901x"),
        ("AKIA", "1234567890123"),
    ],
)
def test_access_key_id_rejects_bad_input(prefix: str, account: str) -> None:
    with pytest.raises(ValueError):
        ids.new_access_key_id(prefix, account)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ASIAY34FZKBOKMUTVV7",  # 19 characters
        "ASIAY34FZKBOKMUTVV7AA",  # 21 characters
        "ASIAY34FZKBOKMUTVV71",  # 1 is not base32
        "asiay34fzkbokmutvv7a",  # lowercase
        "ASIAY34FZKBOKMUTVV7=",
        "AKIA\u00c9Y34FZKBOKMUTVV",
        # top bits of the 40-bit field set: decodes past 999999999999
        "AKIA7777777777777777",
    ],
)
def test_undecodable_access_key_ids(key: str) -> None:
    assert ids.account_from_access_key_id(key) is None


def test_secret_access_key_shape() -> None:
    secret = ids.new_secret_access_key()
    assert re.fullmatch(r"[A-Za-z0-9/+]{40}", secret)
    assert len(base64.b64decode(secret)) * 8 >= 240


def test_secret_access_key_uses_all_the_randomness() -> None:
    data = bytes(range(30))
    secret = ids.new_secret_access_key(rng=fixed_rng(data))
    assert base64.b64decode(secret) == data
    assert len({ids.new_secret_access_key() for _ in range(50)}) == 50


@pytest.mark.parametrize("prefix", sorted(ids.UNIQUE_ID_PREFIXES))
def test_unique_id_shape(prefix: str) -> None:
    unique_id = ids.new_unique_id(prefix)
    assert re.fullmatch(rf"{prefix}[A-Z2-7]{{17}}", unique_id)
    assert len(unique_id) == ids.UNIQUE_ID_LENGTH


def test_unique_ids_differ_and_reject_unknown_prefix() -> None:
    assert len({ids.new_unique_id("AROA") for _ in range(50)}) == 50
    with pytest.raises(ValueError):
        ids.new_unique_id("AKIA")


def test_account_id_shape() -> None:
    for _ in range(200):
        account = ids.new_account_id()
        assert re.fullmatch(r"[1-9][0-9]{11}", account)
        assert ids.is_account_id(account)


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        (b"\x00\x00\x00\x00\x00", "100000000000"),
        ((900_000_000_000 - 1).to_bytes(5, "big"), "999999999999"),
    ],
)
def test_account_id_bounds(draw: bytes, expected: str) -> None:
    assert ids.new_account_id(rng=fixed_rng(draw)) == expected


def test_account_id_rejects_draws_that_would_bias_it() -> None:
    # A draw at or above the largest multiple of the span is discarded; the next one is used.
    too_high = (2**40 - 1).to_bytes(5, "big")
    assert ids.new_account_id(rng=fixed_rng(too_high + b"\x00" * 5)) == "100000000000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123456789012", True),
        ("012345678901", True),
        ("000000000000", True),
        ("12345678901", False),
        ("1234567890123", False),
        ("12345678901a", False),
        ("123456789012\n", False),
        ("\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662", False),
        ("", False),
    ],
)
def test_is_account_id(text: str, expected: bool) -> None:
    assert ids.is_account_id(text) is expected


def test_request_ids_are_version_4_uuids() -> None:
    seen = set()
    for _ in range(2000):
        text = ids.request_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 2000
