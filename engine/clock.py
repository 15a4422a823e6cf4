"""The single seam for "now": every timestamp the engine takes comes from a Clock.

Production uses ``SystemClock``; tests and ``nurture test`` use ``ManualClock`` and travel in
time instead of sleeping; the proof suite runs the real daemon on a ``ScaledClock`` (``nurture
run --simulated-clock``) so that days of sequence steps come due in minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)


class ScaledClock:
    """Simulated time that runs ``rate`` times faster than the wall clock from a fixed origin.

    ``now = start + (wall - origin) * rate``: a pure function of wall time, so a daemon that is
    killed and restarted with the same three numbers continues the same timeline, which the
    proof suite's crash loop needs. Only timestamps are scaled; timers (the one-second step
    tick, vendor timeouts) stay in real seconds.
    """

    def __init__(
        self,
        start: datetime,
        origin: float,
        rate: float,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        if rate <= 0:
            raise ValueError(f"ScaledClock rate must be positive, not {rate}")
        self.start = start.astimezone(UTC)
        self.origin = origin
        self.rate = rate
        self._wall = wall

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(self._wall() - self.origin) * self.rate)

    @classmethod
    def parse(cls, spec: str) -> ScaledClock:
        """``START,ORIGIN,RATE``: an ISO-8601 start, the Unix time it maps to, the speed-up."""
        parts = spec.split(",")
        if len(parts) != 3:
            raise ValueError(
                f"--simulated-clock wants START,ORIGIN,RATE (e.g. "
                f"2026-03-02T08:00:00Z,1767600000.0,600), not {spec!r}"
            )
        try:
            start = datetime.fromisoformat(parts[0].strip().replace("Z", "+00:00"))
            origin, rate = float(parts[1]), float(parts[2])
        except ValueError as exc:
            raise ValueError(f"--simulated-clock {spec!r}: {exc}") from None
        return cls(start, origin, rate)

    def spec(self) -> str:
        return f"{self.start.isoformat()},{self.origin!r},{self.rate!r}"
