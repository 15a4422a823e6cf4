"""Single-contact upserts coalesced into batch upsert requests, over real HTTP.

Each test asserts the requests the HubSpot simulator saw as well as what each caller got.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.hubspot.upserts import BATCH_UPSERT_CAP
from engine.errors import AdapterRejected, AdapterUnavailable

Sim = tuple[HubSpotSimulator, str]


@pytest.fixture
def one_at_a_time(session: aiohttp.ClientSession, hubspot: Sim) -> HubSpotClient:
    """A client with one batch upsert request out at a time: the rest queue for the next."""
    hubspot[0].latency = 0.02  # a request is still out when the next callers arrive
    return HubSpotClient(session, hubspot[1], "test-token", upsert_batches=1)


def props(n: int) -> dict[str, str]:
    return {"firstname": f"P{n}", "email": f"p{n}@example.com"}


async def test_a_lone_upsert_is_sent_at_once_as_a_batch_of_one(
    crm: HubSpotClient, hubspot: Sim
) -> None:
    contact_id, created = await crm.upsert_contact("p1@example.com", props(1))
    again_id, again_created = await crm.upsert_contact("p1@example.com", {"lastname": "L"})

    assert hubspot[0].state.batch_upserts == [["p1@example.com"], ["p1@example.com"]]
    assert (created, again_created) == (True, False) and again_id == contact_id
    assert hubspot[0].state.contacts[contact_id]["lastname"] == "L"
    assert hubspot[0].stats()["create_requests"] == 0  # no search, no create


async def test_concurrent_upserts_share_batch_requests(crm: HubSpotClient, hubspot: Sim) -> None:
    hubspot[0].latency = 0.02  # the first requests are still out when the rest arrive
    answers = await asyncio.gather(
        *(crm.upsert_contact(f"p{n}@example.com", props(n)) for n in range(250))
    )

    requests = hubspot[0].state.batch_upserts
    assert len(requests) < 20 and max(len(r) for r in requests) == BATCH_UPSERT_CAP
    assert sorted(e for r in requests for e in r) == sorted(f"p{n}@example.com" for n in range(250))
    by_email = hubspot[0].state.by_email
    assert [a for a in answers] == [(by_email[f"p{n}@example.com"], True) for n in range(250)]
    assert hubspot[0].stats()["duplicate_emails"] == 0


async def test_one_email_twice_at_once_goes_in_two_requests(
    one_at_a_time: HubSpotClient, hubspot: Sim
) -> None:
    """HubSpot refuses a batch that names an id twice, so the second waits for a later one."""
    answers = await asyncio.gather(
        one_at_a_time.upsert_contact("p0@example.com", props(0)),
        one_at_a_time.upsert_contact("p1@example.com", props(1)),
        one_at_a_time.upsert_contact("p1@example.com", {"lastname": "Second"}),
    )

    assert hubspot[0].state.batch_upserts == [
        ["p0@example.com"],
        ["p1@example.com"],
        ["p1@example.com"],
    ]
    assert answers[1][0] == answers[2][0] and [a[1] for a in answers] == [True, True, False]
    assert hubspot[0].stats()["contacts"] == 2


async def test_a_refused_input_fails_only_its_own_caller(
    one_at_a_time: HubSpotClient, hubspot: Sim
) -> None:
    hubspot[0].reject_email("bad@example.com")
    results = await asyncio.gather(
        one_at_a_time.upsert_contact("p0@example.com", props(0)),
        one_at_a_time.upsert_contact("p1@example.com", props(1)),
        one_at_a_time.upsert_contact("bad@example.com", {}),
        one_at_a_time.upsert_contact("p2@example.com", props(2)),
        return_exceptions=True,
    )

    assert hubspot[0].state.batch_upserts[1] == [
        "p1@example.com",
        "bad@example.com",
        "p2@example.com",
    ]
    refused = results[2]
    assert isinstance(refused, AdapterRejected) and not refused.retryable
    assert "refused this contact: VALIDATION_ERROR" in str(refused)
    assert all(isinstance(r, tuple) and r[1] for n, r in enumerate(results) if n != 2)


async def test_a_failed_request_fails_each_of_its_callers_retryably(
    one_at_a_time: HubSpotClient, hubspot: Sim
) -> None:
    hubspot[0].fail_next(503, path_prefix="/crm/v3/objects/contacts/batch/upsert", times=2)
    results = await asyncio.gather(
        *(one_at_a_time.upsert_contact(f"p{n}@example.com", props(n)) for n in range(4)),
        return_exceptions=True,
    )

    assert hubspot[0].stats()["requests"] == 2  # p0 alone, then the three that waited for it
    assert hubspot[0].stats()["contacts"] == 0
    assert all(isinstance(r, AdapterUnavailable) and r.retryable for r in results)
    assert all("HTTP 503" in str(r) for r in results)
    assert (await one_at_a_time.upsert_contact("p0@example.com", props(0)))[1] is True


async def test_a_caller_that_gave_up_is_left_out_of_the_next_request(
    one_at_a_time: HubSpotClient, hubspot: Sim
) -> None:
    first = asyncio.create_task(one_at_a_time.upsert_contact("p0@example.com", props(0)))
    await asyncio.sleep(0)  # the first request is out; the next two have to wait
    gave_up = asyncio.create_task(one_at_a_time.upsert_contact("p1@example.com", props(1)))
    stays = asyncio.create_task(one_at_a_time.upsert_contact("p2@example.com", props(2)))
    await asyncio.sleep(0)
    gave_up.cancel()
    await first
    assert (await stays)[1] is True
    with pytest.raises(asyncio.CancelledError):
        await gave_up

    assert hubspot[0].state.batch_upserts == [["p0@example.com"], ["p2@example.com"]]


async def test_callers_are_not_left_waiting_when_the_request_itself_is_cancelled(
    one_at_a_time: HubSpotClient, hubspot: Sim
) -> None:
    """At loop shutdown the request task is cancelled before its callers: they end too."""
    callers = [
        asyncio.create_task(one_at_a_time.upsert_contact(f"p{n}@example.com", props(n)))
        for n in range(3)
    ]
    await asyncio.sleep(0)  # the first request is out, the other two wait for the next
    (request,) = one_at_a_time._upserts._requests
    request.cancel()
    _, pending = await asyncio.wait(callers, timeout=5)

    assert not pending
    assert callers[0].cancelled()
    assert all(c.result()[1] for c in callers[1:])  # the next request still takes the rest


async def test_a_batch_refused_as_a_whole_is_sent_again_one_by_one(
    one_at_a_time: HubSpotClient, hubspot: Sim
) -> None:
    """HubSpot may refuse a whole batch with a 400 for one bad input: the others must not be
    dead-lettered with it, so each input goes alone and only what is refused alone fails."""
    hubspot[0].fail_next(400, path_prefix="/crm/v3/objects/contacts/batch/upsert", times=2)
    results = await asyncio.gather(
        *(one_at_a_time.upsert_contact(f"p{n}@example.com", props(n)) for n in range(4)),
        return_exceptions=True,
    )

    # p0 went alone and was refused; p1-p3 went together, were refused, then went one by one
    assert hubspot[0].stats()["requests"] == 5
    assert hubspot[0].state.batch_upserts == [
        ["p1@example.com"],
        ["p2@example.com"],
        ["p3@example.com"],
    ]
    assert isinstance(results[0], AdapterRejected) and "HTTP 400" in str(results[0])
    assert [r[1] for r in results[1:] if isinstance(r, tuple)] == [True, True, True]
