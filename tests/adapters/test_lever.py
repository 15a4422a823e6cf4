"""Lever: webhooks read back through the API, the AtsPort client, the poller and the shipped
rules unchanged on Lever. Real HTTP against the loopback simulators on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.lever.client import LeverClient
from adapters.lever.poller import OpportunityPoller
from adapters.lever.simulator import LeverSimulator, resign, sign, signed_webhook
from adapters.lever.webhooks import (
    SOURCE,
    delivery_id,
    hire_id,
    parse_webhook,
    verify_and_parse,
)
from adapters.normalise import Accepted, Ignored
from adapters.ratelimit import WindowLimiter
from adapters.signatures import InboundRequest, LeverVerifier, SignatureError
from engine import AdapterRejected, AdapterUnavailable, Event
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.cursors import StoreCursors
from engine.runtime import Runtime
from engine.store.store import Store
from engine.testing import Recorder
from tests.adapters.intake_sink import IntakeSink
from tests.adapters.shipped import shipped_config
from tests.adapters.ticker import Ticker
from tests.engine.conftest import _serve

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO.parent / "shared" / "contracts" / "examples" / "lever"

API_KEY = "lever-key-9d1e"
SECRET = "lever-signature-token"
OLD_SECRET = "lever-signature-token-before-rotation"
TEST_VECTOR_SECRET = "lever_sig_token_test"  # the contract's test-connection example

OPP = "5f0b2d3c-8e4a-4f1b-9a77-0c1d2e3f4a5b"
CONTACT = "c7a1e2d3-4b5c-4d6e-8f90-a1b2c3d4e5f6"
APPLICATION = "a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d"
OWNER = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PHONE_SCREEN = "e3f9a1c2-6b7d-4e8f-9a0b-1c2d3e4f5a6b"
NOT_SELECTED = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
HIRED = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
POSTING = "d4c3b2a1-0f9e-4d8c-8b7a-6f5e4d3c2b1a"
CREATED_MS = 1767225600000


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def seed(simulator: LeverSimulator) -> None:
    """The records the contract's example webhooks point at (ids from examples/lever/)."""
    simulator.add_user(OWNER, "Sam Okafor", "Sam.Okafor@Example.com")
    simulator.add_stage("lead-new", "New lead")
    simulator.add_stage("applicant-new", "New applicant")
    simulator.add_stage(PHONE_SCREEN, "Phone Screen")
    simulator.add_stage("final-round", "Final Round")
    simulator.add_stage("offer", "Offer")
    simulator.add_archive_reason(NOT_SELECTED, "Not Selected")
    simulator.add_archive_reason(HIRED, "Hired", hired=True)
    simulator.add_posting(
        POSTING,
        "Platform Engineer",
        team="Engineering",
        department="Platform",
        location="London",
    )
    simulator.add_opportunity(
        OPP,
        contact=CONTACT,
        name="Priya Raman",
        emails=["  Priya.Raman@Example.NET ", "priya@work.example.com"],
        phones=[{"type": "mobile", "value": "+44 7700 900123"}],
        stage="applicant-new",
        created_at=CREATED_MS,
        owner=OWNER,
        origin="applied",
        sources=["LinkedIn"],
        tags=["Kubernetes"],
        posting=POSTING,
        application_id=APPLICATION,
    )


@pytest.fixture
async def lever(ticker: Ticker) -> AsyncIterator[tuple[LeverSimulator, str]]:
    simulator = LeverSimulator(API_KEY, rate_limit=1000, monotonic=ticker, wall_ms=lambda: 0)
    seed(simulator)
    runner, url = await _serve(simulator.app())
    yield simulator, url + "/v1"
    await runner.cleanup()


@pytest.fixture
def client(session: aiohttp.ClientSession, lever: tuple[LeverSimulator, str]) -> LeverClient:
    return LeverClient(session, API_KEY, OWNER, base_url=lever[1], limiter=WindowLimiter(1000, 1.0))


def examples() -> dict[str, dict[str, Any]]:
    if not EXAMPLES.is_dir():
        pytest.fail(f"the contract examples are missing: expected the folder {EXAMPLES}")
    found = {p.name: json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("webhook_*.json"))}
    if not found:
        pytest.fail(f"no webhook_*.json examples in {EXAMPLES}")
    return found


def verifier_at(triggered_at: int) -> LeverVerifier:
    return LeverVerifier([OLD_SECRET, SECRET], now=lambda: at_ms(triggered_at))


# -- webhooks: every contract example ------------------------------------------------------


def _prepare_stage_change(simulator: LeverSimulator) -> None:
    simulator.move_stage(OPP, PHONE_SCREEN, 1767312000000)


def _prepare_archive(simulator: LeverSimulator) -> None:
    simulator.move_stage(OPP, "final-round", 1767312000000)
    simulator.archive(OPP, NOT_SELECTED, 1767398400000)


def _prepare_hired(simulator: LeverSimulator) -> None:
    simulator.move_stage(OPP, "offer", 1767312000000)
    simulator.archive(OPP, HIRED, 1767484800000)


def _check_created(event: Event) -> None:
    assert event.type == "ats.application.created"
    app = event.data["application"]
    assert app["status"] == "active" and app["prospect"] is False
    assert app["stage"] == {"id": "applicant-new", "name": "New applicant"}
    assert app["job"] == {
        "id": POSTING,
        "title": "Platform Engineer",
        "department": "Platform",
        "location": "London",
        "status": "open",
        "url": f"https://jobs.lever.co/example/{POSTING}",
    }
    assert app["recruiter"] == {
        "id": OWNER,
        "name": "Sam Okafor",
        "email": "sam.okafor@example.com",
    }
    assert app["source"] == "LinkedIn"
    assert app["applied_at"] == "2026-01-01T00:00:00Z"


def _check_stage_change(event: Event) -> None:
    assert event.type == "ats.application.stage_changed"
    app = event.data["application"]
    assert app["stage"] == {"id": PHONE_SCREEN, "name": "Phone Screen"}
    assert app["previous_stage"] == {"id": "lead-new", "name": "New lead"}


def _check_rejected(event: Event) -> None:
    assert event.type == "ats.application.rejected"
    app = event.data["application"]
    assert app["status"] == "rejected"
    assert app["stage"]["name"] == "Final Round"
    assert app["rejection_reason"] == {"name": "Not Selected", "type": None}
    assert app["rejected_at"] == "2026-01-03T00:00:00Z"


def _check_hired(event: Event) -> None:
    assert event.type == "ats.application.hired"
    app = event.data["application"]
    assert app["status"] == "hired" and app["rejection_reason"] is None
    assert app["hired_at"] == "2026-01-04T00:00:00Z"
    assert event.id == hire_id(OPP, 1767484800000)


def _check_deleted(event: Event) -> None:
    assert event.type == "ats.candidate.deleted"
    assert event.data["candidate"]["id"] == CONTACT


EXPECTED: dict[str, tuple[Callable[[LeverSimulator], None] | None, Callable[[Event], None]]] = {
    "webhook_applicationCreated.json": (None, _check_created),
    "webhook_candidateStageChange.json": (_prepare_stage_change, _check_stage_change),
    "webhook_candidateArchiveChange.json": (_prepare_archive, _check_rejected),
    "webhook_candidateHired.json": (_prepare_hired, _check_hired),
    "webhook_candidateDeleted.json": (None, _check_deleted),
}


def test_every_example_has_an_expectation() -> None:
    assert set(examples()) == {*EXPECTED, "webhook_test_connection.json"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_example_webhook_becomes_the_canonical_event(
    name: str, lever: tuple[LeverSimulator, str], client: LeverClient
) -> None:
    simulator, _ = lever
    payload = examples()[name]
    prepare, check = EXPECTED[name]
    if prepare is not None:
        prepare(simulator)
    body = resign(payload, SECRET)  # the examples carry a placeholder signature
    request = InboundRequest(headers={"Content-Type": "application/json"}, body=body)
    verified = verifier_at(payload["triggeredAt"]).verify(request)
    assert verified.key_index == 1  # the second secret: rotation without downtime

    outcome = await verify_and_parse(
        request, verifier=verifier_at(payload["triggeredAt"]), reader=client
    )

    assert isinstance(outcome, Accepted) and len(outcome.events) == 1
    event = outcome.events[0]
    assert event.source == SOURCE == "ats/lever"
    assert event.subject == CONTACT
    if name != "webhook_candidateHired.json":
        expected_id = delivery_id(payload["token"], str(payload["triggeredAt"]), payload["event"])
        assert event.id == expected_id
    if event.type != "ats.candidate.deleted":
        candidate = event.data["candidate"]
        assert candidate["id"] == CONTACT
        assert candidate["email"] == "priya.raman@example.net"  # trimmed, lower-cased, first
        assert candidate["emails"] == ["priya.raman@example.net", "priya@work.example.com"]
        assert (candidate["first_name"], candidate["last_name"]) == ("Priya", "Raman")
        assert candidate["phone"] == "+44 7700 900123"
        assert candidate["do_not_contact"] is False and candidate["can_email"] is True
        assert event.data["application"]["id"] == OPP
        assert event.data["raw"]["opportunity"]["id"] == OPP
        assert event.data["raw"]["data"] == payload["data"]
    check(event)


async def test_test_connection_example_verifies_with_its_vector_and_is_ignored(
    client: LeverClient, lever: tuple[LeverSimulator, str]
) -> None:
    payload = examples()["webhook_test_connection.json"]
    body = json.dumps(payload).encode()  # signed as published: proves the signature scheme
    verifier = LeverVerifier([SECRET, TEST_VECTOR_SECRET], now=lambda: at_ms(CREATED_MS))
    requests_before = len(lever[0].state.requests)

    outcome = await verify_and_parse(InboundRequest({}, body), verifier=verifier, reader=client)

    assert isinstance(outcome, Ignored) and "test connection" in outcome.reason
    assert len(lever[0].state.requests) == requests_before  # nothing read for a ping


async def test_bad_signature_and_stale_delivery_are_refused(client: LeverClient) -> None:
    body = signed_webhook(
        "applicationCreated",
        {"opportunityId": OPP, "contactId": CONTACT},
        secret="somebody-else",
        triggered_at=CREATED_MS,
    )
    with pytest.raises(SignatureError) as raised:
        await verify_and_parse(
            InboundRequest({}, body), verifier=verifier_at(CREATED_MS), reader=client
        )
    assert raised.value.reason == "mismatch"

    good = signed_webhook(
        "applicationCreated", {"opportunityId": OPP}, secret=SECRET, triggered_at=CREATED_MS
    )
    later = LeverVerifier([SECRET], now=lambda: at_ms(CREATED_MS) + timedelta(hours=1))
    with pytest.raises(SignatureError) as raised:
        later.verify(InboundRequest({}, good))
    assert raised.value.reason == "stale"
    assert sign("t", 1, "k") != sign("t", 2, "k")


async def test_unarchive_unknown_events_and_deleted_opportunities_are_ignored(
    client: LeverClient, lever: tuple[LeverSimulator, str]
) -> None:
    def body(event: str, data: dict[str, Any]) -> bytes:
        return signed_webhook(event, data, secret=SECRET, triggered_at=CREATED_MS)

    unarchived = body(
        "candidateArchiveChange",
        {"opportunityId": OPP, "fromArchived": {"reason": NOT_SELECTED}, "toArchived": None},
    )
    assert isinstance(await parse_webhook({}, unarchived, reader=client), Ignored)
    interview = body("interviewCreated", {"opportunityId": OPP})
    assert isinstance(await parse_webhook({}, interview, reader=client), Ignored)
    gone = body("applicationCreated", {"opportunityId": "no-such-opportunity"})
    outcome = await parse_webhook({}, gone, reader=client)
    assert isinstance(outcome, Ignored) and "no longer exists" in outcome.reason
    # archive change with a hired reason is a hire, with the same id as candidateHired's
    lever[0].archive(OPP, HIRED, 1767484800000)
    archived = body("candidateArchiveChange", {"opportunityId": OPP, "toArchived": {}})
    hired = body("candidateHired", {"opportunityId": OPP})
    first = await parse_webhook({}, archived, reader=client)
    second = await parse_webhook({}, hired, reader=client)
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.events[0].type == second.events[0].type == "ats.application.hired"
    assert first.events[0].id == second.events[0].id


async def test_do_not_contact_tag_and_sourced_origin(
    client: LeverClient, lever: tuple[LeverSimulator, str]
) -> None:
    lever[0].touch(OPP, CREATED_MS, tags=["do not contact"], origin="sourced")
    body = signed_webhook(
        "applicationCreated", {"opportunityId": OPP}, secret=SECRET, triggered_at=CREATED_MS
    )
    outcome = await parse_webhook({}, body, reader=client)
    assert isinstance(outcome, Accepted)
    data = outcome.events[0].data
    assert data["candidate"]["do_not_contact"] is True
    assert data["application"]["prospect"] is True


# -- client: write-backs, pagination, errors ----------------------------------------------


def _add_older_opportunity(simulator: LeverSimulator, *, tags: list[str]) -> None:
    simulator.add_opportunity(
        "opp-older",
        contact=CONTACT,
        name="Priya Raman",
        emails=["priya.raman@example.net"],
        stage="lead-new",
        created_at=CREATED_MS - 10**9,
        tags=tags,
    )


async def test_add_tag_writes_to_the_latest_opportunity_with_perform_as(
    client: LeverClient, lever: tuple[LeverSimulator, str]
) -> None:
    simulator, _ = lever
    _add_older_opportunity(simulator, tags=[])

    await client.add_tag(CONTACT, "Silver Medalist")
    await client.add_tag(CONTACT, "silver medalist")  # already there: no second write

    writes = simulator.requests_to("POST", "/v1/opportunities/")
    assert [(w.path, w.query, w.body) for w in writes] == [
        (f"/v1/opportunities/{OPP}/addTags", {"perform_as": [OWNER]}, {"tags": ["Silver Medalist"]})
    ]
    example = json.loads((EXAMPLES / "api_add_tags_request.json").read_text())
    assert set(writes[0].body) == set(example)
    auth = writes[0].headers["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"{API_KEY}:"
    lookups = simulator.requests_to("GET", "/v1/opportunities")
    assert lookups[0].query["contact_id"] == [CONTACT]
    assert simulator.tags_of(OPP) == ["Kubernetes", "Silver Medalist"]
    assert simulator.tags_of("opp-older") == []


async def test_remove_tag_and_add_note(
    client: LeverClient, lever: tuple[LeverSimulator, str]
) -> None:
    simulator, _ = lever
    _add_older_opportunity(simulator, tags=["Nurture"])
    simulator.touch(OPP, CREATED_MS, tags=["Kubernetes", "Nurture"])

    await client.remove_tag(CONTACT, "Nurture")
    await client.remove_tag(CONTACT, "Not There")  # no opportunity carries it: no write
    await client.add_note(CONTACT, "Clicked the nurture email.", "admin_only")

    removes = simulator.requests_to("POST", "/v1/opportunities/")
    assert sorted((w.path, w.query["perform_as"][0], json.dumps(w.body)) for w in removes) == [
        (f"/v1/opportunities/{OPP}/notes", OWNER, '{"value": "Clicked the nurture email."}'),
        (f"/v1/opportunities/{OPP}/removeTags", OWNER, '{"tags": ["Nurture"]}'),
        ("/v1/opportunities/opp-older/removeTags", OWNER, '{"tags": ["Nurture"]}'),
    ]
    example = json.loads((EXAMPLES / "api_create_note_request.json").read_text())
    note = next(w for w in removes if w.path.endswith("/notes"))
    assert set(note.body) == set(example)
    assert simulator.tags_of(OPP) == ["Kubernetes"] and simulator.tags_of("opp-older") == []
    assert simulator.state.notes[OPP][0]["user"] == OWNER
    note_id = await client.add_opportunity_note(OPP, "second")
    assert note_id == simulator.state.notes[OPP][1]["id"]


async def test_write_back_to_unknown_contact_is_permanent(client: LeverClient) -> None:
    with pytest.raises(AdapterRejected) as raised:
        await client.add_tag("no-such-contact", "Re-engaged")
    assert raised.value.status == 404
    with pytest.raises(AdapterRejected) as missing:
        await client.get_opportunity("no-such-opportunity")
    assert missing.value.status == 404 and "Opportunity not found" in str(missing.value)


async def test_list_pagination_follows_has_next(
    client: LeverClient, lever: tuple[LeverSimulator, str]
) -> None:
    simulator, _ = lever
    for n in range(249):
        simulator.add_opportunity(
            f"opp-{n:03d}",
            contact=CONTACT,
            name="Priya Raman",
            emails=["priya.raman@example.net"],
            stage="lead-new",
            created_at=CREATED_MS + (n % 7) * 1000,  # ties in updatedAt, broken by id
        )

    found = await client.opportunities_of_contact(CONTACT)

    assert len(found) == 250 and len({o["id"] for o in found}) == 250
    pages = simulator.requests_to("GET", "/v1/opportunities")
    assert [p.query["limit"] for p in pages] == [["100"]] * 3
    assert "offset" not in pages[0].query
    assert all(len(p.query["offset"]) == 1 for p in pages[1:])
    assert await client.stage_name("final-round") == "Final Round"


async def test_429_is_unavailable_with_retry_after(
    session: aiohttp.ClientSession, ticker: Ticker
) -> None:
    simulator = LeverSimulator(API_KEY, rate_limit=2, monotonic=ticker)
    seed(simulator)
    runner, url = await _serve(simulator.app())
    try:
        client = LeverClient(
            session, API_KEY, OWNER, base_url=url + "/v1", limiter=WindowLimiter(100, 1.0)
        )
        await client.get_opportunity(OPP)
        await client.get_opportunity(OPP)
        with pytest.raises(AdapterUnavailable) as raised:
            await client.get_opportunity(OPP)
        assert raised.value.status == 429 and raised.value.retry_after == 1.0
        assert simulator.stats()["rate_limited"] == 1

        ticker.value += 1.0  # the window slid: answered again
        simulator.send_retry_after = False  # Lever's Retry-After is disputed [U]
        simulator.fail_next(429, path_prefix="/v1/stages")
        with pytest.raises(AdapterUnavailable) as raised:
            await client.stages()
        assert raised.value.retry_after == 1.0  # our default when the header is missing

        simulator.fail_next(503, retry_after=7)
        with pytest.raises(AdapterUnavailable) as unavailable:
            await client.add_tag(CONTACT, "Re-engaged")
        assert unavailable.value.status == 503 and unavailable.value.retry_after == 7
    finally:
        await runner.cleanup()


async def test_default_limiter_and_auth_failures(
    session: aiohttp.ClientSession, lever: tuple[LeverSimulator, str]
) -> None:
    default = LeverClient(session, API_KEY, OWNER)
    assert (default.limiter.capacity, default.limiter.period) == (10, 1.0)
    assert API_KEY not in repr(default)
    with pytest.raises(ValueError, match="perform_as"):
        LeverClient(session, API_KEY, "")
    wrong = LeverClient(session, "wrong-key", OWNER, base_url=lever[1])
    with pytest.raises(AdapterRejected) as raised:
        await wrong.get_opportunity(OPP)
    assert raised.value.status == 401


# -- poller --------------------------------------------------------------------------------

POLL_CONFIG = """\
version: 1
rules:
  - id: new
    description: record new applications
    trigger: ats.application.created
    actions:
      - action: suppress
        params: {reason: manual}
        fields: {email: candidate.email}
"""


async def test_poller_resumes_from_its_cursor_without_duplicates_or_gaps(
    store: Store,
    session: aiohttp.ClientSession,
    lever: tuple[LeverSimulator, str],
    make_config: Callable[[str], ConfigSet],
) -> None:
    simulator, url = lever
    clock = ManualClock(at_ms(CREATED_MS))
    recorder = Recorder(clock)
    runtime = Runtime.build(store, make_config(POLL_CONFIG), clock, recorder)
    base = CREATED_MS + 86_400_000
    for n in range(230):
        simulator.add_opportunity(
            f"p-{n:03d}",
            contact=f"contact-{n:03d}",
            name=f"Person {n}",
            emails=[f"p{n}@example.com"],
            stage="applicant-new",
            created_at=base + n * 10_000,
            posting=POSTING,
        )
    start = at_ms(base) - timedelta(hours=1)  # after the seeded example opportunity

    def poller(sink: IntakeSink) -> OpportunityPoller:
        fresh = LeverClient(session, API_KEY, OWNER, base_url=url, limiter=WindowLimiter(999, 1))
        return OpportunityPoller(fresh, StoreCursors(store, clock), sink, start=start)

    async with asyncio.timeout(30):
        crashed = IntakeSink(runtime, fail_at=150)
        with pytest.raises(RuntimeError):
            await poller(crashed).poll_once()
        assert await StoreCursors(store, clock).get("lever:opportunities") is None

        first = IntakeSink(runtime)  # "restart" after the crash: nothing skipped
        await poller(first).poll_once()
        expected_first = {f"lever:poll:created:p-{n:03d}" for n in range(230)}
        assert set(crashed.new) | set(first.new) == expected_first
        assert not set(crashed.new) & set(first.new)
        cursor = await StoreCursors(store, clock).get("lever:opportunities")
        assert cursor == str(base + 229 * 10_000)

        later = base + 3_600_000
        simulator.move_stage("p-005", "final-round", later)
        simulator.archive("p-007", NOT_SELECTED, later + 1)
        simulator.archive("p-009", HIRED, later + 2)
        simulator.touch("p-011", later + 3, tags=["Do Not Contact"])
        for n in range(230, 233):
            simulator.add_opportunity(
                f"p-{n:03d}",
                contact=f"contact-{n:03d}",
                name=f"Person {n}",
                emails=[f"p{n}@example.com"],
                stage="applicant-new",
                created_at=later + n,
            )

        second = IntakeSink(runtime)  # a restarted process: a new poller, the stored cursor
        restarted = poller(second)
        await restarted.poll_once()
        pages = simulator.requests_to("GET", "/v1/opportunities")
        assert pages[-1].query["updated_at_start"] == [str(int(cursor) - 300_000)]
        assert sorted(second.new) == sorted(
            [
                f"lever:poll:stage:p-005:final-round:{later}",
                f"lever:poll:archived:p-007:{later + 1}",
                hire_id("p-009", later + 2),
                f"lever:poll:updated:p-011:{later + 3}",
                *(f"lever:poll:created:p-{n:03d}" for n in range(230, 233)),
            ]
        )
        assert set(second.duplicates) <= expected_first  # only the overlap, re-read

        third = IntakeSink(runtime)
        await poller(third).poll_once()
        assert third.new == []


async def test_poller_events_have_the_canonical_shapes(
    client: LeverClient, lever: tuple[LeverSimulator, str]
) -> None:
    simulator, _ = lever
    simulator.move_stage(OPP, "final-round", CREATED_MS + 5000)
    simulator.archive(OPP, NOT_SELECTED, CREATED_MS + 6000)
    events: list[Event] = []

    class Memory:
        def __init__(self) -> None:
            self.values: dict[str, str] = {}

        async def get(self, name: str) -> str | None:
            return self.values.get(name)

        async def set(self, name: str, value: str) -> None:
            self.values[name] = value

    async def sink(event: Event) -> None:
        events.append(event)

    memory = Memory()
    poller = OpportunityPoller(client, memory, sink, start=at_ms(CREATED_MS - 1000))
    assert await poller.poll_once() == 3
    assert [e.type for e in events] == [
        "ats.application.created",
        "ats.application.stage_changed",
        "ats.application.rejected",
    ]
    rejected = events[2].data["application"]
    assert rejected["rejection_reason"]["name"] == "Not Selected"
    assert rejected["stage"]["name"] == "Final Round"
    assert all(e.subject == CONTACT and e.source == "ats/lever" for e in events)
    assert memory.values == {"lever:opportunities": str(CREATED_MS + 6000)}


# -- the shipped rules, unchanged, on Lever --------------------------------------------------


async def test_shipped_rules_run_unchanged_on_lever(
    store: Store,
    clock: ManualClock,
    crm: HubSpotClient,
    hubspot: tuple[HubSpotSimulator, str],
    client: LeverClient,
    lever: tuple[LeverSimulator, str],
) -> None:
    config = shipped_config()
    recorder = Recorder(clock)
    runtime = Runtime.build(store, config, clock, crm, ats=client, notifier=recorder)
    hub, _ = hubspot
    simulator, _ = lever
    verifier = LeverVerifier([SECRET], now=clock.now)

    async def deliver(event: str, data: dict[str, Any]) -> list[str]:
        body = signed_webhook(event, data, secret=SECRET, triggered_at=ms(clock.now()))
        outcome = await verify_and_parse(
            InboundRequest({"Content-Type": "application/json"}, body),
            verifier=verifier,
            reader=client,
            clock=clock,
        )
        assert isinstance(outcome, Accepted)
        for converted in outcome.events:
            accepted = await runtime.intake.accept(converted)
            assert not accepted.duplicate
        outcomes = await runtime.dispatcher.run_until_idle()
        return [o.status for o in outcomes]

    ids = {"opportunityId": OPP, "candidateId": CONTACT, "contactId": CONTACT}
    async with asyncio.timeout(30):
        statuses = await deliver("applicationCreated", {**ids, "applicationId": APPLICATION})
        assert statuses and set(statuses) == {"done"}
        contact_id = hub.state.by_email["priya.raman@example.net"]
        contact = hub.state.contacts[contact_id]
        assert contact["ats_candidate_id"] == CONTACT
        assert contact["applied_role"] == "Platform Engineer"
        assert contact["recruiter_owner"] == "sam.okafor@example.com"

        clock.advance(timedelta(days=10))
        simulator.move_stage(OPP, "final-round", ms(clock.now()) - 60_000)
        simulator.archive(OPP, NOT_SELECTED, ms(clock.now()))
        clock.advance(timedelta(seconds=5))
        statuses = await deliver(
            "candidateArchiveChange",
            {**ids, "fromArchived": None, "toArchived": {"archivedAt": 0, "reason": NOT_SELECTED}},
        )
        assert statuses and set(statuses) == {"done"}

    tag_writes = simulator.requests_to("POST", f"/v1/opportunities/{OPP}/addTags")
    assert [(w.body, w.query["perform_as"]) for w in tag_writes] == [
        ({"tags": ["Silver Medalist"]}, [OWNER])
    ]
    assert "Silver Medalist" in simulator.tags_of(OPP)
    assert hub.state.contacts[contact_id]["nurture_segment"] == "silver_medalist"
    assert hub.state.contacts[contact_id]["silver_medalist_role"] == "Platform Engineer"
