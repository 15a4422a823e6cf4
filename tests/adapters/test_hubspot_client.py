"""HubSpot client over real HTTP against the simulator: batch upsert and subscription status.

Each test asserts what the simulator saw (requests, their sizes) as well as what the client
returned. The contract's own example payloads (shared/contracts/examples/hubspot) pin the
shapes both sides use.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.hubspot.client import HubSpotClient, _upsert_outcomes
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.hubspot.upserts import BATCH_UPSERT_CAP
from adapters.ratelimit import WindowLimiter
from engine.errors import AdapterRejected, AdapterUnavailable

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "contracts" / "examples"
Sim = tuple[HubSpotSimulator, str]


def example(name: str) -> Any:
    path = EXAMPLES / "hubspot" / name
    if not path.is_file():
        pytest.fail(f"contract example not found at {path}", pytrace=False)
    return json.loads(path.read_bytes())


def people(count: int, start: int = 0) -> dict[str, dict[str, str]]:
    return {
        f"person{i}@example.com": {"firstname": f"P{i}", "ats_stage": "Applied"}
        for i in range(start, start + count)
    }


# -- batch upsert --------------------------------------------------------------------------


async def post_batch_upsert(
    session: aiohttp.ClientSession, hubspot: Sim, emails: list[str]
) -> tuple[int, Any]:
    """A raw batch upsert by email (no properties) to the simulator: status and JSON answer."""
    inputs = [{"id": email, "idProperty": "email", "properties": {}} for email in emails]
    async with session.post(
        hubspot[1] + "/crm/v3/objects/contacts/batch/upsert",
        json={"inputs": inputs},
        headers={"Authorization": "Bearer test-token"},
    ) as answer:
        return answer.status, await answer.json()


async def test_batch_upsert_splits_at_the_cap_of_100(crm: HubSpotClient, hubspot: Sim) -> None:
    outcomes = await crm.batch_upsert_contacts(people(250))

    assert [len(ids) for ids in hubspot[0].state.batch_upserts] == [100, 100, 50]
    assert BATCH_UPSERT_CAP == 100
    assert [o.email for o in outcomes] == list(people(250))  # input order
    assert all(o.new and o.contact_id and o.error is None for o in outcomes)
    assert hubspot[0].stats()["contacts"] == 250


async def test_batch_upsert_reports_new_only_for_created_contacts(
    crm: HubSpotClient, hubspot: Sim
) -> None:
    existing = hubspot[0].add_contact("maya@example.com", firstname="M")

    first, second = await crm.batch_upsert_contacts(
        {
            " Maya@Example.com": {"firstname": "Maya", "ats_stage": "Interview"},
            "jonas@example.org": {"firstname": "Jonas"},
        }
    )

    assert (first.email, first.contact_id, first.new) == ("maya@example.com", existing, False)
    assert second.new is True and second.contact_id not in (None, existing)
    contact = hubspot[0].state.contacts[existing]
    assert (contact["firstname"], contact["ats_stage"]) == ("Maya", "Interview")
    assert hubspot[0].stats()["contacts"] == 2


async def test_batch_upsert_207_gives_each_failed_input_its_error(
    crm: HubSpotClient, hubspot: Sim
) -> None:
    outcomes = await crm.batch_upsert_contacts(
        {"maya@example.com": {"firstname": "Maya"}, "not-an-email": {"firstname": "X"}}
    )

    ok, failed = outcomes
    assert ok.new is True and ok.error is None
    assert failed.email == "not-an-email" and failed.contact_id is None
    assert failed.error is not None
    assert (failed.error.status, failed.error.category) == ("error", "VALIDATION_ERROR")
    assert "INVALID_EMAIL" in failed.error.message
    assert failed.error.context == {"ids": ["not-an-email"]}
    assert hubspot[0].stats()["contacts"] == 1


async def test_the_simulators_207_has_the_contract_examples_shape(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    status, got = await post_batch_upsert(session, hubspot, ["maya@example.com", "not-an-email"])
    assert status == 207
    wanted = example("contacts_batch_upsert_response_207.json")
    assert set(got) == set(wanted)
    assert set(got["errors"][0]) == set(wanted["errors"][0])
    assert set(got["results"][0]) == set(wanted["results"][0])
    assert got["numErrors"] == 1


def test_the_contract_207_example_maps_to_outcomes() -> None:
    answer = example("contacts_batch_upsert_response_207.json")
    ok, failed = _upsert_outcomes(["maya.okafor@example.com", "not-an-email"], answer)
    assert (ok.contact_id, ok.new) == ("51234", False)
    assert failed.error is not None and failed.error.context == {"ids": ["not-an-email"]}


def test_an_input_the_answer_does_not_mention_is_reported_missing() -> None:
    [outcome] = _upsert_outcomes(["ghost@example.com"], {"status": "COMPLETE", "results": []})
    assert outcome.error is not None and outcome.error.category == "MISSING"


async def test_the_simulator_answers_400_above_the_cap(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    status, error = await post_batch_upsert(session, hubspot, list(people(101)))
    assert status == 400
    assert error["category"] == "VALIDATION_ERROR" and "100" in error["message"]
    assert hubspot[0].stats()["contacts"] == 0


async def test_one_person_twice_in_a_batch_is_refused_before_sending(
    crm: HubSpotClient, hubspot: Sim
) -> None:
    with pytest.raises(ValueError, match="same contact"):
        await crm.batch_upsert_contacts({"maya@example.com": {}, "MAYA@example.com ": {}})
    assert hubspot[0].stats()["requests"] == 0


async def test_a_failed_request_raises_and_earlier_chunks_stay_applied(
    crm: HubSpotClient, hubspot: Sim
) -> None:
    await crm.batch_upsert_contacts(people(100))  # the first chunk of a larger backfill
    hubspot[0].fail_next(503, path_prefix="/crm/v3/objects/contacts/batch")
    with pytest.raises(AdapterUnavailable) as raised:
        await crm.batch_upsert_contacts(people(150, start=100))
    assert raised.value.status == 503 and raised.value.retryable
    assert hubspot[0].stats()["contacts"] == 100


async def test_batch_upsert_waits_for_the_rate_limiter(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    limiter = WindowLimiter(2, 10.0, now=lambda: now[0], sleep=sleep)
    client = HubSpotClient(session, hubspot[1], "test-token", limiter=limiter)
    await client.batch_upsert_contacts(people(250))

    assert len(hubspot[0].state.batch_upserts) == 3
    assert now[0] == pytest.approx(10.0)  # the third request waited for the window


# -- subscription status -------------------------------------------------------------------


async def test_status_lists_every_subscription_subscribed_by_default(
    crm: HubSpotClient, hubspot: Sim
) -> None:
    statuses = await crm.subscription_statuses("maya+jobs@example.com")
    assert {s["status"] for s in statuses} == {"SUBSCRIBED"}
    assert set(statuses[0]) >= set(
        example("communication_preferences_status_response.json")["subscriptionStatuses"][0]
    ) - {"legalBasis", "legalBasisExplanation"}
    assert hubspot[0].state.status_requests == ["maya+jobs@example.com"]  # '+' survived
    assert await crm.opted_out("maya+jobs@example.com") is None


async def test_unsubscribe_through_the_api_is_seen_by_status_and_timeline(
    session: aiohttp.ClientSession, crm: HubSpotClient, hubspot: Sim
) -> None:
    body = {**example("communication_preferences_unsubscribe_request.json"), "subscriptionId": "7"}
    url = hubspot[1] + "/communication-preferences/v3/unsubscribe"
    headers = {"Authorization": "Bearer test-token"}
    async with session.post(url, json=body, headers=headers) as answer:
        assert answer.status == 200
        status = await answer.json()
    assert status["status"] == "NOT_SUBSCRIBED" and status["legalBasis"] == body["legalBasis"]

    reason = await crm.opted_out(body["emailAddress"])
    assert reason is not None and "Marketing Information" in reason
    [entry] = hubspot[0].state.timeline
    assert entry["recipient"] == body["emailAddress"]
    assert entry["changes"][0]["change"] == "UNSUBSCRIBED"

    async with session.post(url, json=body, headers=headers) as again:
        assert again.status == 400  # already unsubscribed


async def test_only_the_configured_subscription_or_a_global_opt_out_counts(
    session: aiohttp.ClientSession, hubspot: Sim
) -> None:
    nurture = HubSpotClient(session, hubspot[1], "test-token", subscription_id="7")
    hubspot[0].unsubscribe("maya@example.com", "8")  # one-to-one mail only
    assert await nurture.opted_out("maya@example.com") is None
    any_subscription = HubSpotClient(session, hubspot[1], "test-token")
    assert await any_subscription.opted_out("maya@example.com") is not None

    hubspot[0].unsubscribe("jonas@example.org", "*")  # all email
    reason = await nurture.opted_out("jonas@example.org")
    assert reason is not None and "PORTAL_WIDE_STATUS" in reason


async def test_a_refused_status_request_is_permanent(crm: HubSpotClient, hubspot: Sim) -> None:
    with pytest.raises(AdapterRejected):
        await crm.subscription_statuses("not-an-email")
