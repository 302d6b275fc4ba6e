"""Unit tests: broker.core.totp (RFC 6238 TOTP for virtual MFA devices)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.core.totp import (
    DEFAULT_WINDOW,
    DIGITS,
    SEED_BYTES,
    STEP_SECONDS,
    new_seed,
    otpauth_uri,
    seed_base32,
    totp_code,
    verify_code,
    verify_consecutive,
)

RFC_SEED = b"12345678901234567890"  # RFC 6238 appendix B, SHA-1

# RFC 6238 appendix B, SHA-1 rows: (time, 8-digit TOTP).
RFC_6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]

# RFC 4226 appendix D: HOTP values for counters 0..9 with the same seed.
RFC_4226_HOTP = [
    "755224", "287082", "359152", "969429", "338314",
    "254676", "287922", "162583", "399871", "520489",
]  # fmt: skip

NOW = 1_700_000_015  # inside a step, 15 s after its start
STEP = NOW // STEP_SECONDS


def _code(step: int, seed: bytes = RFC_SEED) -> str:
    return totp_code(seed, step * STEP_SECONDS)


# -- codes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "expected"), RFC_6238_SHA1)
def test_rfc6238_vectors_8_digits(at: int, expected: str) -> None:
    assert totp_code(RFC_SEED, at, digits=8) == expected


@pytest.mark.parametrize(("at", "expected"), RFC_6238_SHA1)
def test_rfc6238_vectors_6_digits(at: int, expected: str) -> None:
    assert totp_code(RFC_SEED, at) == expected[-6:]
    assert len(totp_code(RFC_SEED, at)) == DIGITS


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC_4226_HOTP)))
def test_rfc4226_vectors_through_steps(counter: int, expected: str) -> None:
    assert totp_code(RFC_SEED, counter * STEP_SECONDS) == expected
    assert totp_code(RFC_SEED, counter * STEP_SECONDS + STEP_SECONDS - 1) == expected
    assert totp_code(RFC_SEED, counter * 60, step=60) == expected


def test_code_changes_at_the_step_boundary() -> None:
    start = STEP * STEP_SECONDS
    assert totp_code(RFC_SEED, start) == totp_code(RFC_SEED, start + STEP_SECONDS - 1)
    assert totp_code(RFC_SEED, start) != totp_code(RFC_SEED, start + STEP_SECONDS)


@pytest.mark.parametrize(
    ("at", "step", "digits"), [(-1, 30, 6), (0, 0, 6), (0, 30, 0), (0, 30, 10)]
)
def test_bad_code_parameters(at: int, step: int, digits: int) -> None:
    with pytest.raises(ValueError):
        totp_code(RFC_SEED, at, step=step, digits=digits)


# -- seeds and provisioning ------------------------------------------------------------------


def test_new_seed() -> None:
    seed = new_seed()
    assert len(seed) == SEED_BYTES == 20
    assert new_seed() != seed
    assert new_seed(rng=lambda n: b"\x11" * n) == b"\x11" * SEED_BYTES


def test_new_seed_refuses_a_short_rng() -> None:
    with pytest.raises(ValueError):
        new_seed(rng=lambda n: b"\x11" * (n - 1))


def test_seed_base32_of_rfc_seed() -> None:
    assert seed_base32(RFC_SEED) == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


@given(seed=st.binary(min_size=1, max_size=64))
def test_seed_base32_round_trips_without_padding(seed: bytes) -> None:
    text = seed_base32(seed)
    assert "=" not in text
    assert text == text.upper()
    assert base64.b32decode(text + "=" * (-len(text) % 8)) == seed


def test_seed_base32_length_of_a_new_seed() -> None:
    assert len(seed_base32(new_seed())) == 32


def test_otpauth_uri() -> None:
    uri = otpauth_uri(RFC_SEED, account="alice@123456789012", issuer="Broker")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/Broker:alice@123456789012"
    query = parse_qs(parts.query)
    assert query == {"secret": [seed_base32(RFC_SEED)], "issuer": ["Broker"]}
    assert uri.startswith("otpauth://totp/Broker:alice%40123456789012?secret=")


def test_otpauth_uri_escapes_label_separators() -> None:
    uri = otpauth_uri(RFC_SEED, account="a:b c", issuer="My Co:x")
    parts = urlsplit(uri)
    issuer, sep, account = parts.path[1:].partition(":")
    assert sep == ":"
    assert unquote(issuer) == "My Co:x"
    assert unquote(account) == "a:b c"
    assert parse_qs(parts.query)["issuer"] == ["My Co:x"]
    assert " " not in uri


# -- verify_code -------------------------------------------------------------------------------


def test_current_code_matches_its_step() -> None:
    assert verify_code(RFC_SEED, _code(STEP), now=NOW) == STEP


@pytest.mark.parametrize("offset", [-DEFAULT_WINDOW, 0, DEFAULT_WINDOW])
def test_codes_inside_the_window_match(offset: int) -> None:
    assert verify_code(RFC_SEED, _code(STEP + offset), now=NOW) == STEP + offset


@pytest.mark.parametrize("offset", [-DEFAULT_WINDOW - 1, DEFAULT_WINDOW + 1, -10, 10])
def test_codes_outside_the_window_fail(offset: int) -> None:
    assert verify_code(RFC_SEED, _code(STEP + offset), now=NOW) is None


def test_window_edges_at_step_boundaries() -> None:
    first_second = STEP * STEP_SECONDS
    last_second = first_second + STEP_SECONDS - 1
    for now in (first_second, last_second):
        assert verify_code(RFC_SEED, _code(STEP - 1), now=now) == STEP - 1
        assert verify_code(RFC_SEED, _code(STEP + 1), now=now) == STEP + 1
        assert verify_code(RFC_SEED, _code(STEP + 2), now=now) is None
    assert verify_code(RFC_SEED, _code(STEP + 2), now=last_second + 1) == STEP + 2


def test_window_zero_only_accepts_the_current_step() -> None:
    assert verify_code(RFC_SEED, _code(STEP), now=NOW, window=0) == STEP
    assert verify_code(RFC_SEED, _code(STEP - 1), now=NOW, window=0) is None
    assert verify_code(RFC_SEED, _code(STEP + 1), now=NOW, window=0) is None


def test_wider_window() -> None:
    assert verify_code(RFC_SEED, _code(STEP - 3), now=NOW, window=3) == STEP - 3
    assert verify_code(RFC_SEED, _code(STEP - 4), now=NOW, window=3) is None


def test_wrong_seed_fails() -> None:
    other = b"\x00" * SEED_BYTES
    assert verify_code(other, _code(STEP), now=NOW) is None


def test_replay_is_refused() -> None:
    code = _code(STEP)
    used = verify_code(RFC_SEED, code, now=NOW)
    assert used == STEP
    assert verify_code(RFC_SEED, code, now=NOW, after_step=used) is None
    assert verify_code(RFC_SEED, code, now=NOW + STEP_SECONDS, after_step=used) is None


def test_older_step_after_a_newer_one_is_refused() -> None:
    assert verify_code(RFC_SEED, _code(STEP + 1), now=NOW) == STEP + 1
    assert verify_code(RFC_SEED, _code(STEP), now=NOW, after_step=STEP + 1) is None
    assert verify_code(RFC_SEED, _code(STEP - 1), now=NOW, after_step=STEP + 1) is None


def test_next_step_after_a_used_one_is_accepted() -> None:
    assert verify_code(RFC_SEED, _code(STEP), now=NOW, after_step=STEP - 1) == STEP
    assert verify_code(RFC_SEED, _code(STEP + 1), now=NOW, after_step=STEP) == STEP + 1


def test_early_steps_do_not_go_negative() -> None:
    assert verify_code(RFC_SEED, RFC_4226_HOTP[0], now=5) == 0
    assert verify_code(RFC_SEED, RFC_4226_HOTP[1], now=5) == 1


@pytest.mark.parametrize(
    "code",
    ["", "12345", "1234567", "abcdef", "12 345", " 12345", "12345\n", "١٢٣٤٥٦", "+12345", "-12345"],
)
def test_malformed_codes_fail(code: str) -> None:
    assert verify_code(RFC_SEED, code, now=NOW) is None


def test_eight_digit_code_is_malformed_for_verification() -> None:
    assert verify_code(RFC_SEED, totp_code(RFC_SEED, NOW, digits=8), now=NOW) is None


def test_negative_window_matches_nothing() -> None:
    assert verify_code(RFC_SEED, _code(STEP), now=NOW, window=-1) is None


@given(seed=st.binary(min_size=10, max_size=64), now=st.integers(min_value=0, max_value=2**34))
def test_own_code_always_verifies(seed: bytes, now: int) -> None:
    step = verify_code(seed, totp_code(seed, now), now=now)
    assert step is not None
    assert abs(step - now // STEP_SECONDS) <= DEFAULT_WINDOW
    assert totp_code(seed, step * STEP_SECONDS) == totp_code(seed, now)


# -- verify_consecutive ------------------------------------------------------------------------


def test_consecutive_codes_ending_now() -> None:
    assert verify_consecutive(RFC_SEED, _code(STEP - 1), _code(STEP), now=NOW) == STEP


@pytest.mark.parametrize("offset", [-8, -3, 0, 1, 8])
def test_consecutive_codes_inside_the_window(offset: int) -> None:
    second = STEP + offset
    assert verify_consecutive(RFC_SEED, _code(second - 1), _code(second), now=NOW) == second


@pytest.mark.parametrize("offset", [-9, 9, -40, 40])
def test_consecutive_codes_outside_the_window(offset: int) -> None:
    second = STEP + offset
    assert verify_consecutive(RFC_SEED, _code(second - 1), _code(second), now=NOW) is None


def test_consecutive_window_is_a_parameter() -> None:
    second = STEP - 3
    pair = (_code(second - 1), _code(second))
    assert verify_consecutive(RFC_SEED, *pair, now=NOW, window=3) == second
    assert verify_consecutive(RFC_SEED, *pair, now=NOW, window=2) is None


def test_consecutive_codes_in_the_wrong_order_fail() -> None:
    assert verify_consecutive(RFC_SEED, _code(STEP), _code(STEP - 1), now=NOW) is None


def test_non_consecutive_codes_fail() -> None:
    assert verify_consecutive(RFC_SEED, _code(STEP - 2), _code(STEP), now=NOW) is None
    assert verify_consecutive(RFC_SEED, _code(STEP), _code(STEP), now=NOW) is None


def test_consecutive_with_a_wrong_code_fails() -> None:
    wrong = f"{(int(_code(STEP)) + 1) % 10**DIGITS:0{DIGITS}d}"
    assert verify_consecutive(RFC_SEED, _code(STEP - 1), wrong, now=NOW) is None


@pytest.mark.parametrize(("code1", "code2"), [("12345", "123456"), ("123456", "abcdef"), ("", "")])
def test_consecutive_malformed_codes_fail(code1: str, code2: str) -> None:
    assert verify_consecutive(RFC_SEED, code1, code2, now=NOW) is None


def test_consecutive_near_the_epoch() -> None:
    assert verify_consecutive(RFC_SEED, RFC_4226_HOTP[0], RFC_4226_HOTP[1], now=40) == 1
