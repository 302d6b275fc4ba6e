"""Token buckets: burst, refill, independence of keys, disabled limits."""

from __future__ import annotations

from broker.core.ratelimit import TokenBuckets


def test_burst_then_refill() -> None:
    b = TokenBuckets(rate=10, burst=3)
    assert [b.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert b.allow("a", 0.05) is False  # half a token
    assert b.allow("a", 0.1) is True  # one token refilled
    assert b.allow("b", 0.1) is True  # other keys are independent


def test_refill_never_exceeds_burst() -> None:
    b = TokenBuckets(rate=100, burst=2)
    assert b.allow("a", 0.0)
    assert [b.allow("a", 1000.0) for _ in range(3)] == [True, True, False]


def test_zero_rate_disables() -> None:
    b = TokenBuckets(rate=0, burst=1)
    assert all(b.allow("a", 0.0) for _ in range(1000))


def test_old_keys_are_dropped_first() -> None:
    b = TokenBuckets(rate=1, burst=1, max_keys=2)
    assert b.allow("a", 0.0) and b.allow("b", 0.0) and b.allow("c", 0.0)
    assert b.allow("a", 0.0)  # "a" was dropped, so it comes back full
    assert not b.allow("c", 0.0)


def test_has_looks_without_taking() -> None:
    b = TokenBuckets(rate=1, burst=2)
    assert b.has("a", 0.0)  # an unseen key has a full bucket
    assert b.allow("a", 0.0) and b.allow("a", 0.0)
    assert not b.has("a", 0.0) and not b.has("a", 0.5)
    assert b.has("a", 1.0) and b.has("a", 1.0)  # looking twice takes nothing
    assert b.allow("a", 1.0) and not b.has("a", 1.0)
    assert TokenBuckets(rate=0, burst=1).has("a", 0.0)
