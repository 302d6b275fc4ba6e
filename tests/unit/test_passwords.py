"""Unit tests: password hashing and the password-policy rules of ``broker.core.passwords``."""

from __future__ import annotations

import datetime as dt

import pytest

from broker.core.passwords import (
    DEFAULT_MEMORY_KIB,
    DEFAULT_PARALLELISM,
    DEFAULT_POLICY,
    DEFAULT_TIME_COST,
    HISTORY_KEPT,
    SYMBOLS,
    HashParams,
    PasswordPolicy,
    PasswordState,
    character_classes,
    dummy_hash,
    expires_at,
    hash_password,
    is_expired,
    needs_rehash,
    next_history,
    password_state,
    policy_violations,
    reuse_candidates,
    verify_password,
)

CHEAP = HashParams(time_cost=1, memory_kib=64, parallelism=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_defaults_meet_the_security_bar() -> None:
    # spec/security.md E4: argon2id, memory >= 19 MiB, t >= 2, p = 1.
    assert DEFAULT_TIME_COST >= 2
    assert DEFAULT_MEMORY_KIB >= 19 * 1024
    assert DEFAULT_PARALLELISM == 1
    assert HashParams() == HashParams(DEFAULT_TIME_COST, DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM)


def test_hash_is_argon2id_with_its_parameters_and_a_fresh_salt() -> None:
    first = hash_password("Correct-horse-1", CHEAP)
    second = hash_password("Correct-horse-1", CHEAP)
    assert first.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert first != second  # per-entry salt
    assert "Correct-horse-1" not in first


def test_verify_accepts_the_password_and_nothing_else() -> None:
    encoded = hash_password("Correct-horse-1", CHEAP)
    assert verify_password(encoded, "Correct-horse-1")
    assert not verify_password(encoded, "Correct-horse-2")
    assert not verify_password(encoded, "")
    assert not verify_password("not a hash", "Correct-horse-1")
    assert not verify_password(encoded[:-4] + "AAAA", "Correct-horse-1")


def test_hash_made_with_other_parameters_still_verifies_and_needs_rehash() -> None:
    old = hash_password("Correct-horse-1", CHEAP)
    newer = HashParams(time_cost=2, memory_kib=128, parallelism=1)
    assert verify_password(old, "Correct-horse-1")
    assert needs_rehash(old, newer)
    assert not needs_rehash(old, CHEAP)
    assert needs_rehash("garbage", CHEAP)


def test_dummy_hash_matches_no_ordinary_password() -> None:
    assert not verify_password(dummy_hash(CHEAP), "")
    assert not verify_password(dummy_hash(CHEAP), "password")


@pytest.mark.parametrize(
    "params",
    [
        dict(time_cost=0, memory_kib=64, parallelism=1),
        dict(time_cost=1, memory_kib=64, parallelism=0),
        dict(time_cost=1, memory_kib=7, parallelism=1),
        dict(time_cost=1, memory_kib=15, parallelism=2),
    ],
)
def test_hash_params_reject_impossible_costs(params: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        HashParams(**params)


def test_symbols_are_exactly_aws_set() -> None:
    assert SYMBOLS == set("!@#$%^&*()_+-=[]{}|'")
    assert character_classes("~ ") == {
        "uppercase": False,
        "lowercase": False,
        "numbers": False,
        "symbols": False,
    }


STRICT = PasswordPolicy(
    minimum_length=12,
    require_symbols=True,
    require_numbers=True,
    require_uppercase=True,
    require_lowercase=True,
)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Short1!a", "minimum length of 12"),
        ("alllowercase1!", "uppercase"),
        ("ALLUPPERCASE1!", "lowercase"),
        ("NoNumbersHere!", "number"),
        ("NoSymbolsHere1", "symbol"),
        ("Tilde~Space 12", "symbol"),  # ~ and space are not AWS symbols
    ],
)
def test_each_rule_refuses_a_violating_password(password: str, rule: str) -> None:
    problems = policy_violations(STRICT, password)
    assert len(problems) == 1
    assert rule in problems[0]


@pytest.mark.parametrize("symbol", sorted(SYMBOLS))
def test_every_aws_symbol_satisfies_require_symbols(symbol: str) -> None:
    assert policy_violations(STRICT, f"GoodPassword1{symbol}") == []


def test_several_violations_are_all_reported() -> None:
    assert len(policy_violations(STRICT, "abc")) == 4  # length, upper, number, symbol


def test_unset_rules_accept_anything_long_enough() -> None:
    lax = PasswordPolicy(minimum_length=6)
    assert policy_violations(lax, "aaaaaa") == []
    assert policy_violations(lax, "aaaaa") != []


def test_default_policy_needs_eight_characters_of_three_classes() -> None:
    assert DEFAULT_POLICY.default
    assert policy_violations(DEFAULT_POLICY, "Abcdefg1") == []
    assert policy_violations(DEFAULT_POLICY, "abcdefg1!") == []
    assert policy_violations(DEFAULT_POLICY, "Abc1!") != []  # too short
    assert policy_violations(DEFAULT_POLICY, "abcdefgh1") != []  # two classes only
    assert PasswordPolicy.from_record(None) is DEFAULT_POLICY


def test_policy_record_round_trip_uses_aws_member_names() -> None:
    policy = PasswordPolicy(
        minimum_length=10,
        require_symbols=True,
        allow_users_to_change=True,
        max_age_days=90,
        reuse_prevention=3,
        hard_expiry=False,
    )
    record = policy.to_record()
    assert record["MinimumPasswordLength"] == 10
    assert record["MaxPasswordAge"] == 90
    assert record["PasswordReusePrevention"] == 3
    assert record["HardExpiry"] is False
    assert PasswordPolicy.from_record(record) == policy
    assert "MaxPasswordAge" not in PasswordPolicy().to_record()
    assert policy.expire_passwords and not PasswordPolicy().expire_passwords


def test_reuse_prevention_counts_the_current_password_first() -> None:
    policy = PasswordPolicy(reuse_prevention=3)
    assert reuse_candidates(policy, "h0", ["h1", "h2", "h3"]) == ["h0", "h1", "h2"]
    assert reuse_candidates(PasswordPolicy(), "h0", ["h1"]) == []
    assert reuse_candidates(PasswordPolicy(reuse_prevention=1), None, ["h1"]) == ["h1"]


def test_history_keeps_the_newest_hashes_only() -> None:
    history: list[str] = []
    current = "h0"
    for n in range(1, HISTORY_KEPT + 5):
        history = next_history(current, history)
        current = f"h{n}"
    assert len(history) == HISTORY_KEPT
    assert history[0] == f"h{HISTORY_KEPT + 3}"


def test_expiry_follows_max_age() -> None:
    policy = PasswordPolicy(max_age_days=30)
    assert expires_at(policy, T0) == T0 + dt.timedelta(days=30)
    assert not is_expired(policy, T0, T0 + dt.timedelta(days=30, seconds=-1))
    assert is_expired(policy, T0, T0 + dt.timedelta(days=30))
    assert expires_at(PasswordPolicy(), T0) is None
    assert not is_expired(PasswordPolicy(), T0, T0 + dt.timedelta(days=10_000))


@pytest.mark.parametrize(
    ("policy", "reset", "age_days", "state"),
    [
        (PasswordPolicy(), False, 1000, PasswordState.OK),
        (PasswordPolicy(), True, 0, PasswordState.RESET_REQUIRED),
        (PasswordPolicy(max_age_days=10), False, 9, PasswordState.OK),
        (PasswordPolicy(max_age_days=10), False, 10, PasswordState.RESET_REQUIRED),
        (PasswordPolicy(max_age_days=10, hard_expiry=True), False, 9, PasswordState.OK),
        (PasswordPolicy(max_age_days=10, hard_expiry=True), False, 11, PasswordState.HARD_EXPIRED),
        (PasswordPolicy(max_age_days=10, hard_expiry=True), True, 11, PasswordState.HARD_EXPIRED),
        (PasswordPolicy(hard_expiry=True), True, 0, PasswordState.RESET_REQUIRED),
    ],
)
def test_password_state_at_sign_in(
    policy: PasswordPolicy, reset: bool, age_days: int, state: PasswordState
) -> None:
    now = T0 + dt.timedelta(days=age_days)
    assert password_state(policy, changed=T0, reset_required=reset, now=now) is state
