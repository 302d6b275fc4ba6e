"""Unit tests: broker.core.tokens (self-contained session tokens, packed policy size)."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import re
import string
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.tokens import (
    MAX_PACKED_BYTES,
    MAX_TOKEN_CHARS,
    TOKEN_VERSION,
    OpenedTokens,
    SessionClaims,
    TokenExpiredError,
    TokenKey,
    TokenMalformedError,
    new_token_key,
    open_session_token,
    packed_policy_percent,
    packed_policy_size,
    seal_session_token,
    token_kid,
)

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/service/deploy-role"
SESSION_NAME = "ci-session-7781"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS_KEY_ID = "ASIAY34FZKBOKMUTVV7A"
NOW = 1_700_000_000

KEY = TokenKey(kid="k1test01", secret=bytes(range(32)))
SAME_KID_OTHER_SECRET = TokenKey(kid="k1test01", secret=bytes(range(1, 33)))
NEW_KEY = TokenKey(kid="k2test02", secret=bytes(range(100, 132)))

CLAIMS = SessionClaims(
    access_key_id=ACCESS_KEY_ID,
    secret_access_key=SECRET,
    account_id=ACCOUNT,
    kind="assumed-role",
    principal_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy-role/{SESSION_NAME}",
    principal_id=f"AROAEXAMPLEROLEID0123:{SESSION_NAME}",
    issuer_arn=ROLE_ARN,
    issuer_name="deploy-role",
    session_id="0123456789abcdef0123456789abcdef",
    issued_at=NOW,
    expires_at=NOW + 3600,
)


def _lookup(*keys: TokenKey) -> dict[str, TokenKey]:
    return {key.kid: key for key in keys}


def _typical_policy(length: int = 2048) -> str:
    """A session policy of ordinary statements, padded with spaces to ``length``."""
    statements: list[dict[str, object]] = []
    index = 0
    while True:
        statements.append(
            {
                "Sid": f"Stmt{index}",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "dynamodb:Query"],
                "Resource": [f"arn:aws:s3:::team-bucket-{index}/prefix/*"],
                "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}},
            }
        )
        text = json.dumps({"Version": "2012-10-17", "Statement": statements})
        if len(text) > length:
            statements.pop()
            break
        index += 1
    text = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return text + " " * (length - len(text))


POLICY_ARNS = tuple(f"arn:aws:iam::{ACCOUNT}:policy/team/data-access-policy-{i}" for i in range(10))
TAGS = tuple((f"project-tag-{i}", f"value-{i:02d}-{(i * 7919) % 10007:05d}") for i in range(50))

FULL_CLAIMS = dataclasses.replace(
    CLAIMS,
    mfa_authenticated=True,
    mfa_auth_time=NOW - 60,
    source_identity="alice@example.com",
    chain_depth=2,
    tags=TAGS,
    transitive_tag_keys=tuple(key for key, _ in TAGS[:10]),
    session_policy=_typical_policy(),
    session_policy_arns=POLICY_ARNS,
    source_ip="203.0.113.7",
)


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# -- round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("claims", [CLAIMS, FULL_CLAIMS], ids=["plain", "full"])
def test_round_trip(claims: SessionClaims) -> None:
    token = seal_session_token(claims, KEY)
    assert open_session_token(token, _lookup(KEY).get, now=NOW) == claims


@pytest.mark.parametrize("kind", ["assumed-role", "federated-user", "session"])
def test_every_kind_round_trips(kind: str) -> None:
    claims = dataclasses.replace(CLAIMS, kind=kind)
    assert open_session_token(seal_session_token(claims, KEY), _lookup(KEY).get, now=NOW) == claims


_text_strategy = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=60)
@given(
    tags=st.lists(st.tuples(_text_strategy, _text_strategy), max_size=5),
    policy=st.none() | st.text(st.characters(min_codepoint=0x09, max_codepoint=0xFF), max_size=300),
    source_identity=st.none() | _text_strategy,
    mfa_time=st.none() | st.integers(min_value=0, max_value=2**40),
    depth=st.integers(min_value=0, max_value=10),
    arns=st.lists(_text_strategy, max_size=3),
)
def test_round_trip_any_optional_claims(
    tags: list[tuple[str, str]],
    policy: str | None,
    source_identity: str | None,
    mfa_time: int | None,
    depth: int,
    arns: list[str],
) -> None:
    claims = dataclasses.replace(
        CLAIMS,
        tags=tuple(tags),
        transitive_tag_keys=tuple(key for key, _ in tags),
        session_policy=policy,
        session_policy_arns=tuple(arns),
        source_identity=source_identity,
        mfa_authenticated=mfa_time is not None,
        mfa_auth_time=mfa_time,
        chain_depth=depth,
    )
    assert open_session_token(seal_session_token(claims, KEY), _lookup(KEY).get, now=NOW) == claims


# -- shape and secrecy -----------------------------------------------------------------------


def test_token_is_header_safe_base64url() -> None:
    token = seal_session_token(FULL_CLAIMS, KEY)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)


def test_token_layout() -> None:
    nonce = bytes(range(200, 212))
    token = seal_session_token(CLAIMS, KEY, rng=lambda n: nonce[:n])
    raw = _raw(token)
    kid = KEY.kid.encode()
    assert raw[0] == TOKEN_VERSION
    assert raw[1] == len(kid)
    assert raw[2 : 2 + len(kid)] == kid
    assert raw[2 + len(kid) : 14 + len(kid)] == nonce


@pytest.mark.parametrize("claims", [CLAIMS, FULL_CLAIMS], ids=["plain", "full"])
def test_nothing_readable_without_the_key(claims: SessionClaims) -> None:
    token = seal_session_token(claims, KEY)
    raw = _raw(token)
    readable = [
        SECRET,
        ROLE_ARN,
        SESSION_NAME,
        "deploy-role",
        ACCESS_KEY_ID,
        ACCOUNT,
        claims.session_id,
        "alice@example.com",
        "203.0.113.7",
    ]
    for text in readable:
        assert text.encode() not in raw, text
        assert text not in token, text
    assert zlib.compress(json.dumps(SECRET).encode())[:8] not in raw


def test_nonce_is_fresh_per_token() -> None:
    assert seal_session_token(CLAIMS, KEY) != seal_session_token(CLAIMS, KEY)

    def fixed(n: int) -> bytes:
        return b"\x01" * n

    assert seal_session_token(CLAIMS, KEY, rng=fixed) == seal_session_token(CLAIMS, KEY, rng=fixed)


def test_short_nonce_is_refused() -> None:
    with pytest.raises(ValueError, match="nonce"):
        seal_session_token(CLAIMS, KEY, rng=lambda n: b"\x00" * (n - 1))


def test_plain_token_is_short() -> None:
    assert len(seal_session_token(CLAIMS, KEY)) < 600


def test_full_token_stays_below_4096_characters() -> None:
    assert len(FULL_CLAIMS.session_policy or "") == 2048
    assert len(FULL_CLAIMS.session_policy_arns) == 10
    assert len(FULL_CLAIMS.tags) == 50
    assert len(seal_session_token(FULL_CLAIMS, KEY)) < 4096


def test_token_at_the_packed_limit_stays_below_4096_characters() -> None:
    # Random printable text barely compresses: the worst policy that still packs <= 100 %.
    rnd = random.Random(7)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    policy = "".join(rnd.choice(alphabet) for _ in range(2048))
    tags: tuple[tuple[str, str], ...] = ()
    for index in range(50):
        candidate = (*tags, (f"k{index}", "".join(rnd.choice(alphabet) for _ in range(8))))
        if packed_policy_percent(policy, POLICY_ARNS, candidate) > 100:
            break
        tags = candidate
    assert 80 < packed_policy_percent(policy, POLICY_ARNS, tags) <= 100
    long_path = "/".join(["division-of-long-names"] * 20)
    claims = dataclasses.replace(
        FULL_CLAIMS,
        session_policy=policy,
        tags=tags,
        transitive_tag_keys=tuple(key for key, _ in tags),
        issuer_arn=f"arn:aws:iam::{ACCOUNT}:role/{long_path}/{'r' * 64}",
        issuer_name="r" * 64,
        principal_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/{'r' * 64}/{'s' * 64}",
        principal_id=f"AROAEXAMPLEROLEID0123:{'s' * 64}",
    )
    assert len(seal_session_token(claims, KEY)) < 4096


def test_reprs_hide_secrets() -> None:
    assert SECRET not in repr(CLAIMS)
    assert ACCESS_KEY_ID in repr(CLAIMS)
    assert repr(KEY.secret) not in repr(KEY)
    assert KEY.kid in repr(KEY)
    assert "_aead" not in repr(KEY)


# -- tampering ------------------------------------------------------------------------------


_ALPHABET = string.ascii_letters + string.digits + "-_"


def test_every_changed_character_is_malformed() -> None:
    token = seal_session_token(CLAIMS, KEY)
    keys = _lookup(KEY).get
    for index, old in enumerate(token):
        for new in _ALPHABET:
            if new == old:
                continue
            tampered = token[:index] + new + token[index + 1 :]
            with pytest.raises(TokenMalformedError):
                open_session_token(tampered, keys, now=NOW)


def test_every_flipped_bit_is_malformed() -> None:
    token = seal_session_token(CLAIMS, KEY)
    raw = _raw(token)
    keys = _lookup(KEY).get
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            with pytest.raises(TokenMalformedError):
                open_session_token(_text(bytes(flipped)), keys, now=NOW)


def test_every_truncation_is_malformed() -> None:
    token = seal_session_token(CLAIMS, KEY)
    keys = _lookup(KEY).get
    for end in range(len(token)):
        with pytest.raises(TokenMalformedError):
            open_session_token(token[:end], keys, now=NOW)
    for start in range(1, len(token)):
        with pytest.raises(TokenMalformedError):
            open_session_token(token[start:], keys, now=NOW)


@pytest.mark.parametrize("extra", ["A", "AA", "AAAA", "=", "==", " ", "\n", ".", "+", "/"])
def test_appended_characters_are_malformed(extra: str) -> None:
    token = seal_session_token(CLAIMS, KEY)
    with pytest.raises(TokenMalformedError):
        open_session_token(token + extra, _lookup(KEY).get, now=NOW)


def test_padded_or_standard_base64_is_malformed() -> None:
    token = seal_session_token(CLAIMS, KEY)
    raw = _raw(token)
    for text in (base64.urlsafe_b64encode(raw).decode(), base64.b64encode(raw).decode()):
        if text == token:
            continue
        with pytest.raises(TokenMalformedError):
            open_session_token(text, _lookup(KEY).get, now=NOW)


@pytest.mark.parametrize(
    "text", ["", "A", "AAAA", "not a token", "é" * 10, "A" * (MAX_TOKEN_CHARS + 4)]
)
def test_garbage_is_malformed(text: str) -> None:
    with pytest.raises(TokenMalformedError):
        open_session_token(text, _lookup(KEY).get, now=NOW)


@settings(max_examples=200)
@given(text=st.text(max_size=600))
def test_arbitrary_text_is_malformed(text: str) -> None:
    with pytest.raises(TokenMalformedError):
        open_session_token(text, _lookup(KEY).get, now=NOW)


def test_same_kid_other_secret_is_malformed() -> None:
    token = seal_session_token(CLAIMS, SAME_KID_OTHER_SECRET)
    with pytest.raises(TokenMalformedError):
        open_session_token(token, _lookup(KEY).get, now=NOW)


def test_unknown_kid_is_malformed() -> None:
    token = seal_session_token(CLAIMS, NEW_KEY)
    with pytest.raises(TokenMalformedError):
        open_session_token(token, _lookup(KEY).get, now=NOW)


def test_lookup_returning_a_key_with_another_kid_is_malformed() -> None:
    token = seal_session_token(CLAIMS, KEY)
    with pytest.raises(TokenMalformedError):
        open_session_token(token, lambda kid: NEW_KEY, now=NOW)


def test_kid_swapped_in_header_is_malformed() -> None:
    # Same-length kid of a known key: the header is associated data, so the tag fails.
    other = TokenKey(kid="k9test09", secret=KEY.secret)
    raw = bytearray(_raw(seal_session_token(CLAIMS, KEY)))
    raw[2 : 2 + len(KEY.kid)] = other.kid.encode()
    with pytest.raises(TokenMalformedError):
        open_session_token(_text(bytes(raw)), _lookup(KEY, other).get, now=NOW)


def _hand_sealed(plaintext: bytes, *, version: int = TOKEN_VERSION) -> str:
    kid = KEY.kid.encode()
    header = bytes((version, len(kid))) + kid
    nonce = b"\x05" * 12
    return _text(header + nonce + AESGCM(KEY.secret).encrypt(nonce, plaintext, header))


def test_hand_sealed_token_opens() -> None:
    # Guards the tests below: the hand-made layout is the real one.
    good = json.loads(zlib.decompress(_decrypt(seal_session_token(CLAIMS, KEY))))
    token = _hand_sealed(zlib.compress(json.dumps(good).encode()))
    assert open_session_token(token, _lookup(KEY).get, now=NOW) == CLAIMS


def _decrypt(token: str) -> bytes:
    raw = _raw(token)
    end = 2 + raw[1]
    return AESGCM(KEY.secret).decrypt(raw[end : end + 12], raw[end + 12 :], raw[:end])


def test_unknown_version_is_malformed_even_with_a_valid_tag() -> None:
    good = _decrypt(seal_session_token(CLAIMS, KEY))
    with pytest.raises(TokenMalformedError):
        open_session_token(_hand_sealed(good, version=2), _lookup(KEY).get, now=NOW)


def _claims_record() -> dict[str, object]:
    record = json.loads(zlib.decompress(_decrypt(seal_session_token(CLAIMS, KEY))))
    assert isinstance(record, dict)
    return record


@pytest.mark.parametrize(
    "change",
    [
        {"k": "robot"},
        {"d": "XYZ"},
        {"t": "soon"},
        {"e": True},
        {"e": NOW - 10},
        {"s": ""},
        {"a": 5},
        {"m": "yes"},
        {"mt": 1.5},
        {"cd": -1},
        {"tg": [["only-key"]]},
        {"tg": {"k": "v"}},
        {"tt": [1]},
        {"sp": 3},
    ],
)
def test_genuine_token_with_bad_claims_is_malformed(change: dict[str, object]) -> None:
    record = {**_claims_record(), **change}
    token = _hand_sealed(zlib.compress(json.dumps(record).encode()))
    with pytest.raises(TokenMalformedError):
        open_session_token(token, _lookup(KEY).get, now=NOW)


@pytest.mark.parametrize("drop", ["a", "s", "c", "k", "p", "u", "i", "n", "d", "t", "e"])
def test_genuine_token_missing_a_claim_is_malformed(drop: str) -> None:
    record = _claims_record()
    del record[drop]
    token = _hand_sealed(zlib.compress(json.dumps(record).encode()))
    with pytest.raises(TokenMalformedError):
        open_session_token(token, _lookup(KEY).get, now=NOW)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"not compressed",
        zlib.compress(b"[1, 2, 3]"),
        zlib.compress(b"{broken json"),
        zlib.compress(b"\xff\xfe"),
        zlib.compress(json.dumps({"x": 1}).encode())[:-2],
        zlib.compress(json.dumps({"x": 1}).encode()) + b"trailing",
    ],
)
def test_genuine_token_with_garbled_plaintext_is_malformed(plaintext: bytes) -> None:
    with pytest.raises(TokenMalformedError):
        open_session_token(_hand_sealed(plaintext), _lookup(KEY).get, now=NOW)


# -- expiry and rotation -------------------------------------------------------------------


def test_expiry_edges() -> None:
    token = seal_session_token(CLAIMS, KEY)
    keys = _lookup(KEY).get
    assert open_session_token(token, keys, now=CLAIMS.expires_at - 1) == CLAIMS
    for now in (CLAIMS.expires_at, CLAIMS.expires_at + 1, CLAIMS.expires_at + 10**6):
        with pytest.raises(TokenExpiredError) as caught:
            open_session_token(token, keys, now=now)
        assert caught.value.claims == CLAIMS


def test_expired_and_tampered_is_malformed_not_expired() -> None:
    token = seal_session_token(CLAIMS, KEY)
    raw = bytearray(_raw(token))
    raw[-1] ^= 0x01
    with pytest.raises(TokenMalformedError):
        open_session_token(_text(bytes(raw)), _lookup(KEY).get, now=CLAIMS.expires_at + 100)


def test_expired_under_unknown_key_is_malformed() -> None:
    token = seal_session_token(CLAIMS, NEW_KEY)
    with pytest.raises(TokenMalformedError):
        open_session_token(token, _lookup(KEY).get, now=CLAIMS.expires_at + 100)


def test_rotation() -> None:
    old_token = seal_session_token(CLAIMS, KEY)
    new_token = seal_session_token(CLAIMS, NEW_KEY)
    both = _lookup(KEY, NEW_KEY).get
    assert open_session_token(old_token, both, now=NOW) == CLAIMS
    assert open_session_token(new_token, both, now=NOW) == CLAIMS
    only_new = _lookup(NEW_KEY).get
    assert open_session_token(new_token, only_new, now=NOW) == CLAIMS
    with pytest.raises(TokenMalformedError):
        open_session_token(old_token, only_new, now=NOW)


def test_lookup_is_asked_for_the_tokens_kid() -> None:
    asked: list[str] = []

    def keys(kid: str) -> TokenKey | None:
        asked.append(kid)
        return _lookup(KEY, NEW_KEY).get(kid)

    open_session_token(seal_session_token(CLAIMS, NEW_KEY), keys, now=NOW)
    assert asked == [NEW_KEY.kid]


# -- sealing rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "robot"},
        {"session_id": "0123"},
        {"session_id": "0123456789ABCDEF0123456789ABCDEF"},
        {"expires_at": NOW - 1},
        {"secret_access_key": ""},
        {"principal_arn": ""},
        {"chain_depth": -1},
    ],
)
def test_seal_refuses_bad_claims(change: dict[str, object]) -> None:
    claims = dataclasses.replace(CLAIMS, **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        seal_session_token(claims, KEY)


# -- keys and kid peek -----------------------------------------------------------------------


def test_new_token_key() -> None:
    key = new_token_key()
    assert re.fullmatch(r"[a-z0-9]{8,12}", key.kid)
    assert len(key.secret) == 32
    assert new_token_key().secret != key.secret
    assert new_token_key().kid != key.kid


def test_new_token_key_uses_rng() -> None:
    key = new_token_key(rng=lambda n: b"\xab" * n)
    assert key.secret == b"\xab" * 32
    assert re.fullmatch(r"[a-z0-9]{8,12}", key.kid)
    assert key == new_token_key(rng=lambda n: b"\xab" * n)


@pytest.mark.parametrize(
    ("kid", "secret"),
    [("ok1234", b"\x00" * 31), ("ok1234", b"\x00" * 33), ("UPPER123", b"\x00" * 32),
     ("abc", b"\x00" * 32), ("a" * 33, b"\x00" * 32), ("with-dash", b"\x00" * 32)],
)  # fmt: skip
def test_token_key_validation(kid: str, secret: bytes) -> None:
    with pytest.raises(ValueError):
        TokenKey(kid=kid, secret=secret)


def test_token_kid() -> None:
    assert token_kid(seal_session_token(CLAIMS, KEY)) == KEY.kid
    assert token_kid(seal_session_token(FULL_CLAIMS, NEW_KEY)) == NEW_KEY.kid
    long_kid = TokenKey(kid="a" * 32, secret=bytes(32))
    assert token_kid(seal_session_token(CLAIMS, long_kid)) == long_kid.kid


@pytest.mark.parametrize("text", ["", "AAAA", "!!!!!!!!", "AQhrMXRlc3Qw", "AghrMXRlc3QwMQ"])
def test_token_kid_of_garbage_is_none(text: str) -> None:
    # "AQhrMXRlc3Qw" is version 1 with a kid cut short; "AghrMXRlc3QwMQ" is version 2.
    assert token_kid(text) is None


# -- packed policy size ------------------------------------------------------------------------


def test_packed_percent_is_zero_without_policy_or_tags() -> None:
    assert packed_policy_percent(None, [], []) == 0
    assert packed_policy_percent("", (), ()) == 0


def test_packed_percent_small_policy_is_small() -> None:
    policy = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
    )
    assert 0 < packed_policy_percent(policy, [], []) < 10


def test_packed_percent_of_aws_limits_with_typical_content_fits() -> None:
    assert packed_policy_percent(_typical_policy(), POLICY_ARNS, TAGS) < 100


def test_packed_percent_of_incompressible_content_overflows() -> None:
    rnd = random.Random(3)
    latin = "".join(chr(rnd.randint(0x20, 0xFF)) for _ in range(2048))
    assert packed_policy_percent(latin, [], []) > 100
    long_tags = [
        ("".join(rnd.choice(string.ascii_letters) for _ in range(128)),
         "".join(rnd.choice(string.ascii_letters) for _ in range(256)))
        for _ in range(50)
    ]  # fmt: skip
    assert packed_policy_percent(None, [], long_tags) > 100


@settings(max_examples=100)
@given(
    policy=st.none()
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=3000),
    tags=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=10),
)
def test_packed_percent_over_100_exactly_when_over_the_byte_limit(
    policy: str | None, tags: list[tuple[str, str]]
) -> None:
    size = packed_policy_size(policy, [], tags)
    percent = packed_policy_percent(policy, [], tags)
    assert (percent > 100) == (size > MAX_PACKED_BYTES)
    assert (percent - 1) * MAX_PACKED_BYTES < size * 100 <= percent * MAX_PACKED_BYTES


def test_packed_percent_counts_every_input() -> None:
    base = packed_policy_percent("{}", [], [])
    assert packed_policy_percent("{}", POLICY_ARNS, []) > base
    assert packed_policy_percent("{}", [], TAGS) > base


# -- the memo of opened tokens --------------------------------------------------------------


def test_opened_tokens_remember_and_still_check_expiry() -> None:
    token = seal_session_token(CLAIMS, KEY)
    calls: list[str] = []
    keys = _lookup(KEY)

    def lookup(kid: str) -> TokenKey | None:
        calls.append(kid)
        return keys.get(kid)

    memo = OpenedTokens(max_entries=4)
    assert memo.open(token, lookup, now=NOW) == CLAIMS
    assert len(memo) == 1
    assert memo.open(token, lookup, now=NOW + 10) == CLAIMS
    with pytest.raises(TokenExpiredError):
        memo.open(token, lookup, now=CLAIMS.expires_at)


def test_opened_tokens_never_trust_a_retired_or_replaced_key() -> None:
    token = seal_session_token(CLAIMS, KEY)
    keys = _lookup(KEY)
    memo = OpenedTokens()
    assert memo.open(token, keys.get, now=NOW) == CLAIMS
    keys.clear()  # `broker keys retire`
    with pytest.raises(TokenMalformedError):
        memo.open(token, keys.get, now=NOW)
    assert len(memo) == 0
    keys[SAME_KID_OTHER_SECRET.kid] = SAME_KID_OTHER_SECRET  # same kid, other secret
    with pytest.raises(TokenMalformedError):
        memo.open(token, keys.get, now=NOW)


def test_opened_tokens_do_not_remember_refused_tokens_and_stay_bounded() -> None:
    keys = _lookup(KEY)
    memo = OpenedTokens(max_entries=3)
    token = seal_session_token(CLAIMS, KEY)
    raw = bytearray(_raw(token))
    raw[-1] ^= 1
    with pytest.raises(TokenMalformedError):
        memo.open(_text(bytes(raw)), keys.get, now=NOW)
    assert len(memo) == 0
    tokens = [
        seal_session_token(dataclasses.replace(CLAIMS, session_id=f"{i:032x}"), KEY)
        for i in range(5)
    ]
    for i, t in enumerate(tokens):
        assert memo.open(t, keys.get, now=NOW).session_id == f"{i:032x}"
    assert len(memo) == 3
    # The oldest went first; opening it again works (from the key, not from memory).
    assert memo.open(tokens[0], keys.get, now=NOW).session_id == f"{0:032x}"
    with pytest.raises(ValueError):
        OpenedTokens(max_entries=0)
