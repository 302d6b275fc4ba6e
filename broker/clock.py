"""Clock: the one place the broker reads the wall clock, so tests can freeze time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Tells UTC wall-clock time and monotonic time."""

    def now(self) -> datetime:
        """Return the current UTC time (tz-aware)."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic reading in seconds, for timeouts and intervals."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current UTC time (tz-aware)."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


def iso8601(moment: datetime) -> str:
    """Render ``moment`` the way AWS does: ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
