"""A client-side limit per vendor account, so we stay under the vendor's limit instead of
learning it from 429s (HubSpot: 100 or 190 requests per rolling 10 s by tier; Greenhouse: the
``X-RateLimit-Limit`` per 10 s it announces; Lever: about 10 per second).

A sliding window, not a token bucket: a bucket allows a full burst *plus* its refill inside
one window (up to twice the limit in the first 10 s, measured in the tests), which a vendor
counting a rolling window answers with 429s. Time and waiting are injected, so tests run a
thousand-request burst on a virtual clock without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

HUBSPOT_PER_10S = {"starter": 100, "professional": 190, "enterprise": 190}


class WindowLimiter:
    """At most ``capacity`` requests in any ``period`` seconds."""

    def __init__(
        self,
        capacity: int,
        period: float,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if capacity < 1 or period <= 0:
            raise ValueError("a rate limit needs capacity >= 1 and a positive period")
        self.capacity = capacity
        self.period = period
        self._now = now
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a request may go out; callers queue fairly behind the lock."""
        async with self._lock:
            while True:
                current = self._now()
                while self._sent and current - self._sent[0] >= self.period:
                    self._sent.popleft()
                if len(self._sent) < self.capacity:
                    self._sent.append(current)
                    return
                await self._sleep(self._sent[0] + self.period - current)

    def shrink_to(self, capacity: int) -> None:
        """Adopt a lower limit announced by the vendor (e.g. X-RateLimit-Limit)."""
        if 1 <= capacity < self.capacity:
            self.capacity = capacity
