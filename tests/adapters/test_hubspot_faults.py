"""HubSpot under faults, over real HTTP: the client's one quick retry, and the simulator's
random faults (``Chaos``) that the proof suite's vendor-fault scenario drives."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.simulation import Chaos
from engine.errors import AdapterTimeout, AdapterUnavailable

Sim = tuple[HubSpotSimulator, str]


def client(session: aiohttp.ClientSession, hubspot: Sim, timeout: float = 10.0) -> HubSpotClient:
    return HubSpotClient(session, hubspot[1], "test-token", timeout, tries=2, pause=0.01)


async def test_a_5xx_is_tried_once_more_within_the_call(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    hubspot[0].fail_next(503)
    assert await client(session, hubspot).search_contact_by_email("a@example.com") is None
    assert hubspot[0].stats()["requests"] == 2


async def test_a_second_5xx_is_left_to_the_outbox(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    hubspot[0].fail_next(502, times=2)
    with pytest.raises(AdapterUnavailable):
        await client(session, hubspot).search_contact_by_email("a@example.com")
    assert hubspot[0].stats()["requests"] == 2


async def test_a_429_is_not_retried_within_the_call(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    hubspot[0].fail_next(429, retry_after=7)
    with pytest.raises(AdapterUnavailable) as raised:
        await client(session, hubspot).search_contact_by_email("a@example.com")
    assert raised.value.retry_after == 7 and hubspot[0].stats()["requests"] == 1


async def test_a_send_that_timed_out_but_went_through_is_not_sent_twice(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    """The simulator holds the request past the timeout and still processes it, as a server
    whose answer was lost; the next try carries the same sendId and is absorbed."""
    hubspot[0].chaos = Chaos(timeout_rate=1.0, hang=0.3)
    crm = HubSpotClient(session, hubspot[1], "test-token", timeout=0.1)
    with pytest.raises(AdapterTimeout):
        await crm.send_transactional("100001", "a@example.com", "key-1", {})
    hubspot[0].chaos = Chaos()
    async with asyncio.timeout(5):
        while hubspot[0].stats()["sends"] == 0:  # the held request, processed after hang-up
            await asyncio.sleep(0.02)
    answer = await crm.send_transactional("100001", "a@example.com", "key-1", {})
    assert answer["status"] == "DUPLICATE_SEND_ID"
    assert hubspot[0].stats()["sends"] == 1 and hubspot[0].stats()["send_requests"] == 2


async def test_chaos_draws_each_fault_at_its_rate_and_counts_it(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    hubspot[0].chaos = Chaos(error_rate=0.2, rate_limit_rate=0.1, retry_after=3, seed=5)
    statuses: dict[int, int] = {}
    for _ in range(400):
        async with session.get(
            hubspot[1] + "/crm/v3/objects/contacts/1",
            headers={"Authorization": "Bearer test-token"},
        ) as answer:
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if answer.status == 429:
                assert answer.headers["Retry-After"] == "3"
    injected = hubspot[0].chaos.injected
    assert injected["error"] == sum(statuses.get(s, 0) for s in (500, 502, 503))
    assert injected["rate_limit"] == statuses[429]
    assert 50 <= injected["error"] <= 110 and 20 <= injected["rate_limit"] <= 60
    assert statuses[404] == 400 - injected["error"] - injected["rate_limit"]


async def test_an_outage_answers_503_to_everything_until_switched_off(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    crm = HubSpotClient(session, hubspot[1], "test-token")
    hubspot[0].chaos = Chaos(outage=True)
    for _ in range(3):
        with pytest.raises(AdapterUnavailable) as raised:
            await crm.search_contact_by_email("a@example.com")
        assert raised.value.status == 503
    hubspot[0].chaos = Chaos()
    assert await crm.search_contact_by_email("a@example.com") is None


def test_chaos_rates_above_one_are_refused() -> None:
    with pytest.raises(ValueError, match="more than 1"):
        Chaos(error_rate=0.6, timeout_rate=0.5)
