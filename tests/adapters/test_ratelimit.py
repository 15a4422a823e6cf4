"""The limiter keeps a burst inside the vendor's rolling window, on a virtual clock."""

from __future__ import annotations

import asyncio

import pytest

from adapters.ratelimit import HUBSPOT_PER_10S, WindowLimiter


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real wait would


async def test_a_burst_of_1000_stays_inside_every_10_second_window() -> None:
    time = VirtualTime()
    limit = HUBSPOT_PER_10S["starter"]
    bucket = WindowLimiter(limit, 10.0, now=time.clock, sleep=time.sleep)
    stamps: list[float] = []

    async def request() -> None:
        await bucket.acquire()
        stamps.append(time.now)

    await asyncio.gather(*(request() for _ in range(1000)))
    assert len(stamps) == 1000
    stamps.sort()
    worst = max(sum(1 for s in stamps if start <= s < start + 10.0) for start in stamps)
    assert worst == limit  # never more than the limit in any rolling 10 s window
    assert stamps[-1] == pytest.approx(90.0)  # and no slower than it: 10 windows of 100


async def test_the_first_requests_go_out_at_once() -> None:
    time = VirtualTime()
    bucket = WindowLimiter(5, 1.0, now=time.clock, sleep=time.sleep)
    for _ in range(5):
        await bucket.acquire()
    assert time.now == 0.0
    await bucket.acquire()
    assert time.now == pytest.approx(1.0)  # the sixth waits for the first to leave the window


def test_a_lower_announced_limit_is_adopted() -> None:
    bucket = WindowLimiter(50, 10.0)
    bucket.shrink_to(20)
    assert bucket.capacity == 20
    bucket.shrink_to(100)  # never raised by an announcement
    assert bucket.capacity == 20


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        WindowLimiter(0, 10.0)


async def test_hubspot_client_goes_through_the_limiter_for_every_request() -> None:
    import aiohttp

    from adapters.hubspot.client import HubSpotClient
    from adapters.hubspot.simulator import HubSpotSimulator
    from tests.engine.conftest import _serve

    simulator = HubSpotSimulator("t")
    runner, url = await _serve(simulator.app())
    time = VirtualTime()
    limiter = WindowLimiter(3, 10.0, now=time.clock, sleep=time.sleep)
    try:
        async with aiohttp.ClientSession() as session:
            client = HubSpotClient(session, url, "t", limiter=limiter)
            for n in range(7):
                await client.search_contact_by_email(f"p{n}@example.com")
    finally:
        await runner.cleanup()
    assert simulator.stats()["requests"] == 7
    assert time.now == 20.0  # 3 at once, 3 after 10 s, the 7th after 20 s
