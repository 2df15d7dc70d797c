"""One source of time for logic that schedules work (retries, lifetimes, delay notices).

Input: nothing. Output: `now()` in seconds since the epoch, like time.time().
Code that decides "is this due yet?" takes a Clock instead of calling
time.time() itself, so tests move a FakeClock forward instead of sleeping
through a retry ladder of hours.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything with now() -> epoch seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward; never backward, as a real clock would not."""
        self._now += max(0.0, seconds)
