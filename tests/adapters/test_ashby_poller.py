"""The Ashby application poller against the loopback simulator over real HTTP, feeding the real
intake on SQLite and PostgreSQL: the webhooks' events, a durable sync token, resumption after a
crash or restart with no duplicates or gaps."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.ashby.client import AshbyClient
from adapters.ashby.poller import CURSOR_NAME, ApplicationPoller
from adapters.ashby.simulator import AshbySimulator, iso
from adapters.ashby.webhooks import parse_webhook
from adapters.normalise import Accepted
from adapters.ratelimit import WindowLimiter
from engine import AdapterUnavailable, Event
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.cursors import StoreCursors
from engine.runtime import Runtime
from engine.store.store import Store
from engine.testing import Recorder
from tests.adapters.intake_sink import IntakeSink
from tests.engine.conftest import _serve

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "contracts" / "examples"
API_KEY = "ashby-key-5c2d"
START = datetime(2026, 3, 1, tzinfo=UTC)
BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

CONFIG = """\
version: 1
rules:
  - id: rejected-at-final-round
    description: a rejection at the final round (the stage the engine last saw)
    trigger: ats.application.rejected
    condition: "application.stage.name == 'Final Round'"
    actions:
      - action: suppress
        params: {reason: manual}
        fields: {email: candidate.email}
"""


def example(name: str) -> dict[str, Any]:
    path = EXAMPLES / "ashby" / name
    if not path.is_file():
        pytest.fail(f"the contract example is missing: expected {path}")
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.fixture
async def ashby() -> AsyncIterator[tuple[AshbySimulator, str]]:
    simulator = AshbySimulator(API_KEY, rate_limit=10_000, wall=lambda: BASE)
    simulator.add_job("job-1", "Product Designer")
    simulator.add_stage("review", "Application Review", order=1)
    simulator.add_stage("final", "Final Round", order=4)
    simulator.add_stage("archived", "Archived", kind="Archived", order=9)
    simulator.add_stage("hired", "Hired", kind="Hired", order=8)
    runner, url = await _serve(simulator.app())
    yield simulator, url
    await runner.cleanup()


@pytest.fixture
def runtime(store: Store, make_config: Callable[[str], ConfigSet], clock: ManualClock) -> Runtime:
    return Runtime.build(store, make_config(CONFIG), clock, Recorder(clock))


@pytest.fixture
def poller_for(
    store: Store, session: aiohttp.ClientSession, ashby: tuple[AshbySimulator, str]
) -> Callable[..., ApplicationPoller]:
    """A poller as a fresh process would build it: a new client, the stored state."""

    def build(sink: IntakeSink, **kwargs: Any) -> ApplicationPoller:
        client = AshbyClient(
            session, API_KEY, base_url=ashby[1], limiter=WindowLimiter(10_000, 1.0)
        )
        clock = ManualClock(BASE)
        return ApplicationPoller(
            client, StoreCursors(store, clock), sink, start=START, clock=clock, **kwargs
        )

    return build


async def saved_token(store: Store) -> str | None:
    """The poller's sync token as the store holds it."""
    return await StoreCursors(store, ManualClock(BASE)).get(CURSOR_NAME)


def seed(simulator: AshbySimulator, numbers: range, at: datetime) -> None:
    for n in numbers:
        simulator.add_candidate(f"cand-{n:03d}", f"Person {n}", [f"p{n}@example.com"])
        simulator.add_application(
            f"app-{n:03d}",
            candidate=f"cand-{n:03d}",
            job="job-1",
            stage="review",
            created_at=at + timedelta(seconds=n),
        )


async def test_polled_events_are_the_webhooks_events(
    runtime: Runtime,
    ashby: tuple[AshbySimulator, str],
    poller_for: Callable[..., ApplicationPoller],
) -> None:
    simulator, _ = ashby
    deliveries = {
        name: example(f"webhook_{name}.json")
        for name in ("applicationSubmit", "candidateStageChange", "candidateHire")
    }

    def webhook_event(name: str, event_type: str) -> Event:
        outcome = parse_webhook({}, json.dumps(deliveries[name]).encode())
        assert isinstance(outcome, Accepted)
        return next(e for e in outcome.events if e.type == event_type)

    async with asyncio.timeout(30):
        sink = IntakeSink(runtime)
        poller = poller_for(sink)
        simulator.load_application(deliveries["applicationSubmit"]["data"]["application"])
        assert await poller.poll_once() == 1
        simulator.load_application(deliveries["candidateStageChange"]["data"]["application"])
        assert await poller.poll_once() == 1
        simulator.load_application(deliveries["candidateHire"]["data"]["application"])
        assert await poller.poll_once() == 2

    created, moved, hired_stage, hired = sink.events
    app_id = "6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a"
    assert created.id == f"ashby:poll:created:{app_id}"
    assert created.data == webhook_event("applicationSubmit", "ats.application.created").data
    assert moved.data == webhook_event("candidateStageChange", moved.type).data
    assert (hired_stage.type, hired.type) == ("ats.application.stage_changed", hired.type)
    assert hired.id == f"ashby:poll:hired:{app_id}"
    assert hired.data == webhook_event("candidateHire", "ats.application.hired").data
    for polled in sink.events:
        assert (polled.source, polled.subject) == ("ats/ashby", created.subject)
    assert hired.time == webhook_event("candidateHire", "ats.application.hired").time


async def test_poller_resumes_from_its_sync_token_without_duplicates_or_gaps(
    runtime: Runtime,
    store: Store,
    ashby: tuple[AshbySimulator, str],
    poller_for: Callable[..., ApplicationPoller],
) -> None:
    simulator, _ = ashby
    seed(simulator, range(5), START - timedelta(days=30))  # before start: never reported
    seed(simulator, range(5, 235), BASE)
    async with asyncio.timeout(60):
        crashed = IntakeSink(runtime, fail_at=150)
        with pytest.raises(RuntimeError):
            await poller_for(crashed).poll_once()
        assert await saved_token(store) is None  # nothing saved before the pass ends

        first = IntakeSink(runtime)  # "restart" after the crash: nothing skipped, nothing twice
        await poller_for(first, page_size=100).poll_once()
        expected_first = {f"ashby:poll:created:app-{n:03d}" for n in range(5, 235)}
        assert set(crashed.new) | set(first.new) == expected_first
        assert not set(crashed.new) & set(first.new)
        token = await saved_token(store)
        assert token is not None
        # the crashed pass read two of its pages; the pass after it all three
        assert len(simulator.requests_to("application.list")) == 5

        later = BASE + timedelta(days=3)
        simulator.move_stage("app-007", "final", later)
        simulator.move_stage("app-008", "final", later)
        simulator.hire("app-009", "hired", later)
        simulator.touch("app-011", later, source={"id": "s1", "title": "Referral"})
        simulator.move_stage("app-001", "final", later)  # created before start, moved after
        seed(simulator, range(235, 238), later)

        second = IntakeSink(runtime)  # a restarted process: a new poller, the stored token
        await poller_for(second).poll_once()
        [incremental] = simulator.requests_to("application.list")[5:]
        assert incremental.body == {"limit": 100, "syncToken": token}
        assert sorted(second.new) == sorted(
            [
                f"ashby:poll:stage:app-007:final:{iso(later)}",
                f"ashby:poll:stage:app-008:final:{iso(later)}",
                f"ashby:poll:stage:app-009:hired:{iso(later)}",
                "ashby:poll:hired:app-009",
                f"ashby:poll:stage:app-001:final:{iso(later)}",
                *(f"ashby:poll:created:app-{n:03d}" for n in range(235, 238)),
            ]
        )
        assert second.duplicates == []

        archived_at = later + timedelta(days=1)
        simulator.archive("app-008", "archived", "Not Selected", archived_at)
        third = IntakeSink(runtime)
        await poller_for(third).poll_once()
        assert third.new == [  # the rejection first, while the engine remembers Final Round
            f"ashby:poll:rejected:app-008:{iso(archived_at)}",
            f"ashby:poll:stage:app-008:archived:{iso(archived_at)}",
        ]
        rejection = third.events[0]
        assert rejection.data["application"]["stage"] is None  # the engine fills it in
        assert third.matched[rejection.id] == ["rejected-at-final-round"]

        simulator.touch("app-009", archived_at, source={"id": "s2", "title": "Agency"})
        fourth = IntakeSink(runtime)  # a hired application changed again: its hire is re-sent
        assert await poller_for(fourth).poll_once() == 1
        assert (fourth.new, fourth.duplicates) == ([], ["ashby:poll:hired:app-009"])

        fifth = IntakeSink(runtime)
        assert await poller_for(fifth).poll_once() == 0
        assert fifth.new == fifth.duplicates == []
        assert await saved_token(store) != token


async def test_an_expired_sync_token_falls_back_to_a_full_sync_without_duplicates(
    runtime: Runtime,
    store: Store,
    ashby: tuple[AshbySimulator, str],
    poller_for: Callable[..., ApplicationPoller],
) -> None:
    simulator, _ = ashby
    seed(simulator, range(20), BASE)
    async with asyncio.timeout(30):
        await poller_for(IntakeSink(runtime)).poll_once()
        token = await saved_token(store)
        simulator.expire_sync_tokens()
        simulator.move_stage("app-003", "final", BASE + timedelta(days=1))

        sink = IntakeSink(runtime)
        await poller_for(sink).poll_once()

    bodies = [r.body for r in simulator.requests_to("application.list")[1:]]
    assert bodies == [{"limit": 100, "syncToken": token}, {"limit": 100}]  # refused, then full
    assert sink.new == ["ashby:poll:stage:app-003:final:2026-03-03T09:00:00.000Z"]
    assert sink.duplicates == []  # the engine knows those applications: nothing re-sent
    assert await saved_token(store) not in (None, token)


async def test_a_429_on_a_page_is_waited_out(
    runtime: Runtime,
    store: Store,
    ashby: tuple[AshbySimulator, str],
    poller_for: Callable[..., ApplicationPoller],
) -> None:
    simulator, _ = ashby
    seed(simulator, range(30), BASE)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # time is injected: nothing really waits
        waits.append(seconds)

    async with asyncio.timeout(30):
        simulator.fail_next(429, retry_after=7, times=2, path_prefix="/application.list")
        sink = IntakeSink(runtime)
        assert await poller_for(sink, sleep=sleep, page_size=10).poll_once() == 30
        assert waits == [7.0, 7.0]

        simulator.fail_next(429, retry_after=600, path_prefix="/application.list")
        simulator.touch("app-001", BASE + timedelta(days=1))
        token = await saved_token(store)
        with pytest.raises(AdapterUnavailable) as raised:  # too long to wait inside a sweep
            await poller_for(IntakeSink(runtime), sleep=sleep).poll_once()
    assert raised.value.status == 429 and raised.value.retry_after == 600
    assert waits == [7.0, 7.0]
    assert await saved_token(store) == token


async def test_a_malformed_application_is_logged_and_skipped(
    runtime: Runtime,
    store: Store,
    ashby: tuple[AshbySimulator, str],
    poller_for: Callable[..., ApplicationPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    simulator, _ = ashby
    seed(simulator, range(3), BASE)
    simulator.records.applications["app-001"]["createdAt"] = "yesterday"
    with caplog.at_level(logging.WARNING, logger="nurture.ashby.poller"):
        async with asyncio.timeout(30):
            sink = IntakeSink(runtime)
            assert await poller_for(sink).poll_once() == 2

    assert sink.new == ["ashby:poll:created:app-000", "ashby:poll:created:app-002"]
    [record] = [json.loads(r.getMessage()) for r in caplog.records]
    assert record["decision"] == "poll_record_skipped" and record["id"] == "app-001"
    assert "/application/createdAt" in record["error"]
    assert await saved_token(store) is not None
