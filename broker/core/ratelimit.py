"""Core rate limiting: token buckets keyed by a name (pure; the caller passes the time)."""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_MAX_KEYS = 100_000


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up.

    Buckets of keys not seen for a while are dropped (least recently used first) once more
    than ``max_keys`` exist; a dropped bucket comes back full, which only errs towards allowing.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._max = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket at monotonic time ``now``; False if empty.

        A rate of 0 or less disables the limit.
        """
        if self.rate <= 0:
            return True
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed

    def has(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Tell whether ``key``'s bucket holds ``cost`` tokens at ``now`` (takes none)."""
        if self.rate <= 0:
            return True
        found = self._buckets.get(key)
        if found is None:
            return self.burst >= cost
        tokens, last = found
        return min(self.burst, tokens + max(0.0, now - last) * self.rate) >= cost
