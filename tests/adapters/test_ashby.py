"""Ashby: the AtsPort client and the reads the poller needs, against the loopback simulator over
real HTTP; the shipped rules unchanged on Ashby. The poller is in ``test_ashby_poller.py``."""

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
from aiohttp import web

from adapters import sources
from adapters.ashby.client import AshbyClient, SyncTokenExpired
from adapters.ashby.simulator import AshbySimulator, signed_webhook
from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.ratelimit import WindowLimiter
from engine import AdapterRejected, AdapterUnavailable
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.runtime import Runtime
from engine.store import queries
from engine.store.store import Store
from engine.testing import Recorder
from tests.adapters.shipped import shipped_config
from tests.adapters.ticker import Ticker
from tests.engine.conftest import _serve

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO.parent / "shared" / "contracts" / "examples" / "ashby"

API_KEY = "ashby-key-3e7a91"
SECRET = "ashby-webhook-secret"
CANDIDATE = "0b6f2a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"  # the contract examples' candidate
NURTURE_TAG = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def example(name: str) -> Any:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.fail(f"the contract example is missing: expected {path}")
    document = json.loads(path.read_text())
    if isinstance(document, dict):
        document.pop("_comment", None)  # a note for readers, not part of the wire format
    return document


def seed(simulator: AshbySimulator) -> None:
    """The candidate of the contract's search example, with its Nurture tag and tag id."""
    found = example("api_candidate_search_response.json")["results"][0]
    for tag in found["tags"]:
        simulator.add_tag(tag["title"], tag_id=tag["id"], archived=tag["isArchived"])
    simulator.add_candidate(
        found["id"],
        found["name"],
        [found["primaryEmailAddress"]["value"]],
        tags=[t["title"] for t in found["tags"]],
        created_at=found["createdAt"],
    )
    simulator.add_candidate("c-2", "Jonas Weber", ["jonas@example.com"])


@pytest.fixture
async def ashby(ticker: Ticker) -> AsyncIterator[tuple[AshbySimulator, str]]:
    simulator = AshbySimulator(API_KEY, rate_limit=1000, monotonic=ticker, wall=lambda: NOON)
    seed(simulator)
    runner, url = await _serve(simulator.app())
    yield simulator, url
    await runner.cleanup()


@pytest.fixture
def client(session: aiohttp.ClientSession, ashby: tuple[AshbySimulator, str]) -> AshbyClient:
    return AshbyClient(session, API_KEY, base_url=ashby[1], limiter=WindowLimiter(1000, 1.0))


def endpoints(simulator: AshbySimulator) -> list[str]:
    return [r.endpoint for r in simulator.traffic.requests]


# -- the documented requests ----------------------------------------------------------------


async def test_candidate_search_sends_and_answers_the_contract_examples(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    found = await client.search_candidates("lena.hoffmann@example.com")

    assert found == example("api_candidate_search_response.json")["results"]
    [sent] = simulator.traffic.requests
    assert (sent.method, sent.endpoint) == ("POST", "candidate.search")
    assert sent.body == example("api_candidate_search_request.json")
    assert sent.headers["Accept"] == "application/json; version=1"
    assert sent.headers["Content-Type"].startswith("application/json")
    auth = sent.headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(auth).decode() == f"{API_KEY}:"  # key as username, empty password


async def test_add_tag_uses_the_catalogue_id_as_in_the_contract_example(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    simulator.add_candidate("c-3", "Ada Lee", ["ada@example.com"])

    await client.add_tag("c-3", "nurture")  # the catalogue is case-insensitive for us

    assert endpoints(simulator) == ["candidateTag.list", "candidate.addTag"]
    added = simulator.requests_to("candidate.addTag")[0].body
    assert added == {**example("api_candidate_add_tag_request.json"), "candidateId": "c-3"}
    assert added["tagId"] == NURTURE_TAG
    assert simulator.tags_of("c-3") == ["Nurture"]


async def test_add_tag_creates_a_missing_tag_then_adds_it_once(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    await client.add_tag(CANDIDATE, "Silver Medalist")
    await client.add_tag(CANDIDATE, "silver medalist")  # a retried action: cached, unchanged

    assert endpoints(simulator) == [
        "candidateTag.list",
        "candidateTag.create",
        "candidate.addTag",
        "candidate.addTag",
    ]
    assert simulator.requests_to("candidateTag.create")[0].body == {"title": "Silver Medalist"}
    tag_ids = {r.body["tagId"] for r in simulator.requests_to("candidate.addTag")}
    assert len(tag_ids) == 1
    assert simulator.tags_of(CANDIDATE) == ["Nurture", "Silver Medalist"]


async def test_a_tag_deleted_since_it_was_cached_is_looked_up_again(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    await client.add_tag(CANDIDATE, "Re-engaged")
    old_id = simulator.requests_to("candidate.addTag")[0].body["tagId"]
    simulator.delete_tag(old_id)  # someone removed it from the catalogue in Ashby

    await client.add_tag("c-2", "Re-engaged")

    assert endpoints(simulator)[3:] == [
        "candidate.addTag",  # refused: tag_not_found
        "candidateTag.list",
        "candidateTag.create",
        "candidate.addTag",
    ]
    assert simulator.tags_of("c-2") == ["Re-engaged"]


async def test_remove_tag_and_a_tag_nobody_has(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    await client.remove_tag(CANDIDATE, "NURTURE")
    await client.remove_tag(CANDIDATE, "Never Created")  # not in the catalogue: nothing to do

    assert simulator.requests_to("candidate.removeTag")[0].body == {
        "candidateId": CANDIDATE,
        "tagId": NURTURE_TAG,
    }
    assert endpoints(simulator).count("candidate.removeTag") == 1
    assert simulator.tags_of(CANDIDATE) == []


async def test_add_note_is_plain_text_and_notifies_nobody(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    await client.add_note(CANDIDATE, "Clicked the nurture email.", "admin_only")
    note_id = await client.create_note(CANDIDATE, "Second note")

    first = simulator.requests_to("candidate.createNote")[0].body
    assert first == {
        "candidateId": CANDIDATE,
        "note": "Clicked the nurture email.",
        "sendNotifications": False,
    }
    notes = simulator.records.notes[CANDIDATE]
    assert [n["content"] for n in notes] == ["Clicked the nurture email.", "Second note"]
    assert note_id == notes[1]["id"]


# -- lists: cursor pagination and sync tokens ------------------------------------------------


def seed_applications(simulator: AshbySimulator, count: int, first: int = 0) -> None:
    simulator.add_job("job-1", "Product Designer")
    simulator.add_stage("stage-review", "Application Review")
    for n in range(first, first + count):
        simulator.add_candidate(f"cand-{n:03d}", f"Person {n}", [f"p{n}@example.com"])
        simulator.add_application(
            f"app-{n:03d}",
            candidate=f"cand-{n:03d}",
            job="job-1",
            stage="stage-review",
            created_at=NOON + timedelta(minutes=n),
        )


async def test_application_list_pages_by_cursor_and_ends_with_a_sync_token(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    seed_applications(simulator, 250)
    pages = [await client.list_applications()]
    while pages[-1].next_cursor is not None:
        pages.append(await client.list_applications(cursor=pages[-1].next_cursor))

    ids = [a["id"] for p in pages for a in p.items]
    assert len(ids) == 250 and len(set(ids)) == 250
    assert [len(p.items) for p in pages] == [100, 100, 50]
    assert [p.sync_token is not None for p in pages] == [False, False, True]
    bodies = [r.body for r in simulator.requests_to("application.list")]
    assert bodies[0] == {"limit": 100}
    assert [b["cursor"] for b in bodies[1:]] == [p.next_cursor for p in pages[:2]]

    simulator.move_stage("app-007", "stage-review", NOON + timedelta(days=1))
    simulator.touch("app-100", NOON + timedelta(days=1), source={"id": "s", "title": "Referral"})
    token = pages[-1].sync_token
    changed = await client.list_applications(sync_token=token)

    assert [a["id"] for a in changed.items] == ["app-007", "app-100"]
    assert simulator.requests_to("application.list")[-1].body == {"limit": 100, "syncToken": token}
    assert changed.next_cursor is None and changed.sync_token not in (None, token)


async def test_an_expired_sync_token_is_its_own_error(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    token = (await client.list_applications()).sync_token
    simulator.expire_sync_tokens()
    with pytest.raises(SyncTokenExpired) as raised:
        await client.list_applications(sync_token=token)
    assert "sync_token_expired" in str(raised.value) and not raised.value.retryable


async def test_the_tag_catalogue_is_read_across_pages(
    client: AshbyClient, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, _ = ashby
    for n in range(230):
        simulator.add_tag(f"Tag {n:03d}")
    tags = await client.tags()
    assert len(tags) == 231
    assert len(simulator.requests_to("candidateTag.list")) == 3
    await client.add_tag(CANDIDATE, "tag 229")  # found on the last page: no create
    assert "candidateTag.create" not in endpoints(simulator)


# -- errors --------------------------------------------------------------------------------


async def test_429_is_retryable_with_its_retry_after(
    session: aiohttp.ClientSession, ticker: Ticker
) -> None:
    simulator = AshbySimulator(API_KEY, rate_limit=2, monotonic=ticker)
    seed(simulator)
    runner, url = await _serve(simulator.app())
    try:
        client = AshbyClient(session, API_KEY, base_url=url, limiter=WindowLimiter(100, 1.0))
        await client.search_candidates("a@example.com")
        await client.search_candidates("b@example.com")
        with pytest.raises(AdapterUnavailable) as raised:
            await client.search_candidates("c@example.com")
        assert raised.value.status == 429 and raised.value.retry_after == 1.0
        assert "candidate.search" in str(raised.value) and "rate_limit_exceeded" in str(
            raised.value
        )

        ticker.value += 1.0  # the window slid
        simulator.fail_next(503, retry_after=7)
        with pytest.raises(AdapterUnavailable) as unavailable:
            await client.add_note(CANDIDATE, "x", "admin_only")
        assert unavailable.value.status == 503 and unavailable.value.retry_after == 7
    finally:
        await runner.cleanup()


async def test_a_429_on_a_write_back_is_waited_out_then_succeeds(
    store: Store,
    clock: ManualClock,
    crm: HubSpotClient,
    client: AshbyClient,
    ashby: tuple[AshbySimulator, str],
    make_config: Callable[[str], ConfigSet],
) -> None:
    simulator, _ = ashby
    config = make_config(
        """\
version: 1
rules:
  - id: tag-new-applicants
    description: tag every new applicant
    trigger: ats.application.created
    actions:
      - action: ats.add_tag
        params: {tag: Applied}
        fields: {candidate_id: candidate.id}
"""
    )
    runtime = Runtime.build(store, config, clock, crm, ats=client, notifier=Recorder(clock))
    outcome = sources.ashby([SECRET])
    simulator.fail_next(429, retry_after=30, path_prefix="/candidate.addTag")
    body, headers = signed_webhook(
        "applicationSubmit",
        example("webhook_applicationSubmit.json")["data"],
        secret=SECRET,
    )
    async with asyncio.timeout(30):
        received = await outcome.receive("POST", "http://nurture/webhooks/ashby", headers, body)
        accepted = await runtime.intake.accept(received.events[0])
        first = await runtime.dispatcher.run_once()
        assert [o.status for o in first] == ["pending"]
        assert accepted.event_id is not None
        async with store.read() as conn:
            action = (await queries.audit(conn, accepted.event_id))["actions"][0]
        assert "HTTP 429" in action["last_error"] and "candidate.addTag" in action["last_error"]
        assert action["next_attempt_at"] >= clock.now() + timedelta(seconds=30)
        clock.advance(timedelta(seconds=29))
        assert await runtime.dispatcher.run_once() == []  # not before Retry-After
        clock.advance(timedelta(minutes=5))
        rest = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in rest] == ["done"]
    assert simulator.tags_of(CANDIDATE) == ["Nurture", "Applied"]


async def test_auth_failures_name_the_endpoint_and_what_to_check(
    session: aiohttp.ClientSession, ashby: tuple[AshbySimulator, str]
) -> None:
    simulator, url = ashby

    def with_key(key: str) -> AshbyClient:
        return AshbyClient(session, key, base_url=url, limiter=WindowLimiter(100, 1.0))

    with pytest.raises(AdapterRejected) as missing:
        await with_key("").search_candidates("a@example.com")
    assert missing.value.status == 401 and "api_key_env" in str(missing.value)
    with pytest.raises(AdapterRejected) as wrong:
        await with_key("not-the-key").search_candidates("a@example.com")
    assert wrong.value.status == 403 and "invalid or deactivated" in str(wrong.value)
    simulator.deactivate(API_KEY)
    with pytest.raises(AdapterRejected) as deactivated:
        await with_key(API_KEY).search_candidates("a@example.com")
    assert deactivated.value.status == 403
    simulator.deactivated.clear()

    simulator.deny("candidate.createNote")
    with pytest.raises(AdapterRejected) as denied:
        await with_key(API_KEY).add_note(CANDIDATE, "hello", "admin_only")
    message = str(denied.value)
    assert denied.value.status == 403 and not denied.value.retryable
    assert "candidate.createNote" in message and "missing_endpoint_permission" in message
    assert "API Keys" in message
    assert json.loads(denied.value.body_excerpt) == example("api_error_response.json")


async def test_success_false_is_permanent_and_keeps_ashbys_error(client: AshbyClient) -> None:
    with pytest.raises(AdapterRejected) as raised:
        await client.add_note("no-such-candidate", "hello", "admin_only")
    assert not raised.value.retryable and raised.value.status == 200
    assert "candidate.createNote refused" in str(raised.value)
    assert "candidate_not_found" in str(raised.value)


async def test_an_answer_without_the_envelope_is_retryable(
    session: aiohttp.ClientSession,
) -> None:
    async def html(_request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/candidate.search", html)
    runner, url = await _serve(app)  # a proxy page, not Ashby
    try:
        client = AshbyClient(session, API_KEY, base_url=url)
        with pytest.raises(AdapterUnavailable) as raised:
            await client.search_candidates("a@example.com")
        assert raised.value.retryable and "no {success, results} envelope" in str(raised.value)
    finally:
        await runner.cleanup()


async def test_default_limiter_is_conservative_and_repr_hides_the_key(
    session: aiohttp.ClientSession,
) -> None:
    default = AshbyClient(session, API_KEY)
    assert (default.limiter.capacity, default.limiter.period) == (5, 1.0)
    assert default.base_url == "https://api.ashbyhq.com"
    assert API_KEY not in repr(default)


# -- the shipped rules, unchanged, on Ashby --------------------------------------------------


async def test_shipped_rules_run_unchanged_on_ashby(
    store: Store,
    clock: ManualClock,
    crm: HubSpotClient,
    hubspot: tuple[HubSpotSimulator, str],
    client: AshbyClient,
    ashby: tuple[AshbySimulator, str],
) -> None:
    config = shipped_config()
    runtime = Runtime.build(store, config, clock, crm, ats=client, notifier=Recorder(clock))
    hub, _ = hubspot
    simulator, _ = ashby
    source = sources.ashby([SECRET])
    application = example("webhook_applicationSubmit.json")["data"]["application"]

    async def deliver(action: str, changes: dict[str, Any], action_id: str) -> list[str]:
        application.update(changes, updatedAt=clock.now().isoformat())
        body, headers = signed_webhook(
            action, {"application": application}, secret=SECRET, action_id=action_id
        )
        received = await source.receive("POST", "http://nurture/webhooks/ashby", headers, body)
        for event in received.events:
            accepted = await runtime.intake.accept(event)
            assert not accepted.duplicate
        return [o.status for o in await runtime.dispatcher.run_until_idle()]

    final = {"id": "stage-final", "title": "Final Round", "type": "Active"}
    archived = {"id": "stage-archived", "title": "Archived", "type": "Archived"}
    async with asyncio.timeout(30):
        assert set(await deliver("applicationSubmit", {}, "a1")) == {"done"}
        contact_id = hub.state.by_email["lena.hoffmann@example.com"]
        assert hub.state.contacts[contact_id]["ats_candidate_id"] == CANDIDATE
        assert hub.state.contacts[contact_id]["applied_role"] == "Product Designer"

        clock.advance(timedelta(days=10))
        await deliver("candidateStageChange", {"currentInterviewStage": final}, "a2")
        clock.advance(timedelta(days=1))
        rejection = {
            "status": "Archived",
            "currentInterviewStage": archived,
            "archivedAt": clock.now().isoformat(),
            "archiveReason": {"id": "r1", "text": "Not Selected", "reasonType": "RejectedByOrg"},
        }
        statuses = await deliver("candidateStageChange", rejection, "a3")
        assert statuses and set(statuses) == {"done"}

    tag_writes = simulator.requests_to("candidate.addTag")
    assert [w.body["candidateId"] for w in tag_writes] == [CANDIDATE]
    assert simulator.tags_of(CANDIDATE) == ["Nurture", "Silver Medalist"]
    assert hub.state.contacts[contact_id]["nurture_segment"] == "silver_medalist"
    assert hub.state.contacts[contact_id]["silver_medalist_role"] == "Product Designer"
