"""Greenhouse pollers (applications, scheduled interviews) over real HTTP against the Harvest
simulator, feeding the real intake on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from adapters.greenhouse.harvest import BasicAuth, HarvestClient
from adapters.greenhouse.interviews import MEMORY, InterviewPoller
from adapters.greenhouse.poller import ApplicationPoller
from adapters.greenhouse.reads import HarvestReads
from adapters.greenhouse.simulator import HarvestSimulator
from engine import AdapterUnavailable, Event
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.cursors import StoreCursors
from engine.runtime import Runtime
from engine.store.store import Store
from engine.store.tables import enrollment_steps, enrollments
from engine.testing import Recorder
from tests.adapters.intake_sink import IntakeSink
from tests.adapters.shipped import shipped_config
from tests.adapters.ticker import Ticker
from tests.engine.conftest import START, _serve

API_KEY = "harvest-poll-key"
JOB = (502311, "Senior Data Engineer")
CONFIG = """\
version: 1
rules:
  - id: record
    description: every polled application event is accepted (the rule itself is inert)
    trigger: ats.application.created
    condition: "`false`"
    actions:
      - action: suppress
        params: {reason: manual}
        fields: {email: candidate.email}
"""


async def sweep(poller: ApplicationPoller | InterviewPoller, sink: IntakeSink) -> list[Event]:
    """The new (not duplicate) events of one sweep."""
    before = len(sink.fresh)
    await poller.poll_once()
    return sink.fresh[before:]


@pytest.fixture
async def harvest(ticker: Ticker) -> AsyncIterator[tuple[HarvestSimulator, str]]:
    simulator = HarvestSimulator(API_KEY, rate_limit=1000, monotonic=ticker, wall=lambda: 0.0)
    runner, url = await _serve(simulator.app())
    yield simulator, url
    await runner.cleanup()


@pytest.fixture
def sim(harvest: tuple[HarvestSimulator, str]) -> HarvestSimulator:
    return harvest[0]


@pytest.fixture
def runtime(store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]) -> Runtime:
    return Runtime.build(store, make_config(CONFIG), clock, Recorder(clock))


Reads = Callable[..., HarvestReads]


@pytest.fixture
def reads(
    session: aiohttp.ClientSession, harvest: tuple[HarvestSimulator, str], ticker: Ticker
) -> Reads:
    """A fresh client and reader per call (a restarted process); 429 waits move the ticker."""

    async def sleep(seconds: float) -> None:
        ticker.value += seconds

    def build(**kwargs: Any) -> HarvestReads:
        client = HarvestClient(session, harvest[1], on_behalf_of="40211", auth=BasicAuth(API_KEY))
        return HarvestReads(client, sleep=sleep, **kwargs)

    return build


def z(moment: datetime) -> str:
    """A time as it appears in event data (JSON, UTC, ``Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def person(sim: HarvestSimulator, n: int, at: datetime, stage: str = "Application Review") -> int:
    """Candidate 7000+n with application 9000+n (the same numbering as the daemon tests)."""
    sim.records.add_candidate(
        7000 + n,
        f"P{n}",
        "Q",
        f"Person{n}@Example.com",
        at=at,
        recruiter={"id": 40211, "name": "Rhea Lindqvist"},
    )
    return sim.records.add_application(
        7000 + n, JOB, stage, at=at, source="LinkedIn", application_id=9000 + n
    )


def applications(
    reads: HarvestReads, store: Store, clock: ManualClock, sink: IntakeSink, **kw: Any
) -> ApplicationPoller:
    return ApplicationPoller(
        reads, StoreCursors(store, clock), sink, start=START - timedelta(hours=1), clock=clock, **kw
    )


def interviews(
    reads: HarvestReads, store: Store, clock: ManualClock, sink: IntakeSink
) -> InterviewPoller:
    return InterviewPoller(
        reads, StoreCursors(store, clock), sink, start=START - timedelta(hours=1), clock=clock
    )


# -- applications ------------------------------------------------------------------------------


async def test_polled_applications_give_the_webhook_events_and_activity_alone_gives_none(
    store: Store, clock: ManualClock, runtime: Runtime, sim: HarvestSimulator, reads: Reads
) -> None:
    person(sim, 1, START - timedelta(minutes=10))
    sim.records.state.candidates[7001]["tags"] = ["Do Not Contact"]
    sink = IntakeSink(runtime)
    poller = applications(reads(), store, clock, sink)
    async with asyncio.timeout(30):
        [created] = await sweep(poller, sink)
        assert (created.id, created.type, created.source, created.subject) == (
            "greenhouse:poll:created:9001",
            "ats.application.created",
            "ats/greenhouse",
            "7001",
        )
        candidate, app = created.data["candidate"], created.data["application"]
        assert candidate["email"] == "person1@example.com"
        assert candidate["do_not_contact"] is True
        assert app["job"] == {
            "id": "502311",
            "title": "Senior Data Engineer",
            "department": None,
            "location": None,
            "status": None,
            "url": None,
        }
        assert app["stage"]["name"] == "Application Review"
        assert app["recruiter"] == {"id": "40211", "name": "Rhea Lindqvist", "email": None}
        assert (app["source"], app["status"], app["prospect"]) == ("LinkedIn", "active", False)
        assert created.time == START - timedelta(minutes=10)

        clock.advance(timedelta(days=1))
        sim.records.note_activity(9001, at=clock.now())  # a note: nothing a rule sees
        assert await sweep(poller, sink) == []

        sim.records.move_stage(9001, "Interview Scheduled", at=clock.now())
        [moved] = await sweep(poller, sink)
        assert moved.type == "ats.application.stage_changed"
        assert moved.data["application"]["stage"]["name"] == "Interview Scheduled"
        assert moved.time == clock.now()
        assert await sweep(poller, sink) == []  # re-read in the overlap: the engine saw it

        clock.advance(timedelta(days=2))
        sim.records.reject(9001, "Not Selected", at=clock.now())
        person(sim, 2, clock.now() - timedelta(days=30))
        sim.records.hire(9002, at=clock.now())
        by_type = {e.type: e for e in await sweep(poller, sink)}
        assert len(by_type) == 2
        rejected = by_type["ats.application.rejected"].data["application"]
        assert rejected["status"] == "rejected"
        assert rejected["rejection_reason"] == {"name": "Not Selected", "type": "We rejected them"}
        assert rejected["stage"]["name"] == "Interview Scheduled"
        hired = by_type["ats.application.hired"]
        assert hired.id == "greenhouse:poll:hired:9002"
        assert hired.data["application"]["hired_at"] == z(clock.now())


async def test_applications_resume_from_their_cursor_without_duplicates_or_gaps(
    store: Store, clock: ManualClock, runtime: Runtime, sim: HarvestSimulator, reads: Reads
) -> None:
    base = START - timedelta(minutes=50)
    for n in range(230):
        person(sim, n, base + timedelta(seconds=10 * n))
    cursors = StoreCursors(store, clock)
    expected_first = {f"greenhouse:poll:created:{9000 + n}" for n in range(230)}
    async with asyncio.timeout(60):
        crashed = IntakeSink(runtime, fail_at=120)
        with pytest.raises(RuntimeError):
            await applications(reads(page_size=50), store, clock, crashed).poll_once()
        assert await cursors.get("greenhouse:applications") is None

        first = IntakeSink(runtime)  # the restarted process: a new poller, nothing skipped
        sim.state.requests.clear()
        assert await applications(reads(page_size=50), store, clock, first).poll_once() == 230
        assert set(crashed.new) | set(first.new) == expected_first
        assert not set(crashed.new) & set(first.new)
        assert sorted(first.duplicates) == sorted(crashed.new)
        pages = sim.requests_to("GET", "/v1/applications")
        assert [r.query.get("page") for r in pages] == [None, "2", "3", "4", "5"]
        assert len(sim.requests_to("GET", "/v1/candidates")) == 5  # one per 50 applications
        cursor = await cursors.get("greenhouse:applications")
        assert cursor == (base + timedelta(seconds=2290)).isoformat()

        clock.advance(timedelta(hours=1))
        sim.records.move_stage(9005, "Final Round", at=clock.now())
        sim.records.reject(9007, "Not Selected", at=clock.now())
        sim.records.hire(9009, at=clock.now())
        sim.records.note_activity(9011, at=clock.now())
        for n in range(230, 233):
            person(sim, n, clock.now())
        second = IntakeSink(runtime)
        await applications(reads(page_size=50), store, clock, second).poll_once()
        query = sim.requests_to("GET", "/v1/applications")[-1].query
        assert query["last_activity_after"] == "2026-03-02T08:43:10.000Z"  # cursor - 5 min
        stage_id = sim.records.state.applications[9005]["current_stage"]["id"]
        moved_at = sim.records.state.applications[9005]["last_activity_at"]
        assert sorted(second.new) == sorted(
            [
                f"greenhouse:poll:stage:9005:{stage_id}:{moved_at}",
                f"greenhouse:poll:rejected:9007:{moved_at}",
                "greenhouse:poll:hired:9009",
                *(f"greenhouse:poll:created:{9000 + n}" for n in range(230, 233)),
            ]
        )
        assert set(second.duplicates) <= expected_first  # only the overlap, re-read

        third = IntakeSink(runtime)
        await applications(reads(page_size=50), store, clock, third).poll_once()
        assert third.new == []


async def test_429_answers_are_waited_out_for_their_retry_after(
    store: Store, clock: ManualClock, runtime: Runtime, sim: HarvestSimulator, reads: Reads
) -> None:
    for n in range(3):
        person(sim, n, START - timedelta(minutes=3))
    sim.rate_limit = 4  # per 10-second window: the sweep needs 7 requests
    sim.fail_next(429, retry_after=7, path_prefix="/v1/applications")
    reader = reads(page_size=1)
    sink = IntakeSink(runtime)
    async with asyncio.timeout(30):
        assert await applications(reader, store, clock, sink).poll_once() == 3
    # the injected 429 asked for 7 s; the real window (4 requests / 10 s) for the rest of it
    assert reader.waited[0] == 7.0
    assert len(reader.waited) >= 2 and all(1.0 <= w <= 10.0 for w in list(reader.waited)[1:])
    assert sim.state.rate_limited == len(reader.waited)
    assert len(sink.new) == 3


async def test_a_sweep_gives_up_after_max_waits_and_keeps_its_cursor(
    store: Store, clock: ManualClock, runtime: Runtime, sim: HarvestSimulator, reads: Reads
) -> None:
    person(sim, 1, START - timedelta(minutes=3))
    sim.fail_next(429, retry_after=2, times=10, path_prefix="/v1/applications")
    reader = reads(max_waits=2)
    with pytest.raises(AdapterUnavailable) as raised:
        await applications(reader, store, clock, IntakeSink(runtime)).poll_once()
    assert raised.value.status == 429
    assert list(reader.waited) == [2.0, 2.0]
    assert await StoreCursors(store, clock).get("greenhouse:applications") is None


# -- interviews ----------------------------------------------------------------------------------


async def test_interviews_scheduled_rescheduled_and_cancelled(
    store: Store, clock: ManualClock, runtime: Runtime, sim: HarvestSimulator, reads: Reads
) -> None:
    app = person(sim, 1, START - timedelta(days=3), stage="Interview Scheduled")
    start = START + timedelta(days=3, hours=1)
    interview_id = sim.records.schedule_interview(
        app,
        start,
        start + timedelta(hours=1),
        at=clock.now(),
        name="Systems Design",
        interviewers=[{"id": 4080, "name": "Kate Austen", "email": "Kate.Austen@Example.com"}],
        video_url="https://meet.example.com/abc",
    )
    other = sim.records.schedule_interview(app, start, start + timedelta(hours=1), at=clock.now())
    sink = IntakeSink(runtime)
    poller = interviews(reads(), store, clock, sink)
    cursors = StoreCursors(store, clock)
    async with asyncio.timeout(30):
        assert await poller.poll_once() == 2
        scheduled = sink.events[0]
        assert (scheduled.id, scheduled.type, scheduled.subject) == (
            f"greenhouse:poll:interview:{interview_id}:scheduled",
            "ats.interview.scheduled",
            "7001",
        )
        assert scheduled.data["interview"] == {
            "id": str(interview_id),
            "title": "Systems Design",
            "start_at": z(start),
            "end_at": z(start + timedelta(hours=1)),
            "time_zone": None,
            "location": None,
            "video_url": "https://meet.example.com/abc",
            "interviewers": [
                {"id": "4080", "name": "Kate Austen", "email": "kate.austen@example.com"}
            ],
            "status": "scheduled",
            "previous_start_at": None,
        }
        assert scheduled.data["candidate"]["email"] == "person1@example.com"
        assert scheduled.data["application"]["job"]["title"] == "Senior Data Engineer"
        assert sorted(await cursors.under(MEMORY)) == sorted(
            [f"{MEMORY}{interview_id}", f"{MEMORY}{other}"]
        )

        clock.advance(timedelta(hours=2))
        assert await poller.poll_once() == 0  # nothing changed: no event, no duplicate

        moved = start + timedelta(days=2)
        sim.records.reschedule_interview(
            interview_id, moved, moved + timedelta(hours=1), at=clock.now()
        )
        assert await poller.poll_once() == 1
        rescheduled = sink.events[-1]
        assert rescheduled.type == "ats.interview.rescheduled"
        assert rescheduled.data["interview"]["start_at"] == z(moved)
        assert rescheduled.data["interview"]["previous_start_at"] == z(start)
        assert rescheduled.time == clock.now()

        clock.advance(timedelta(hours=1))
        sim.records.cancel_interview(interview_id, at=clock.now())
        assert await poller.poll_once() == 1
        cancelled = sink.events[-1]
        assert (cancelled.id, cancelled.type) == (
            f"greenhouse:poll:interview:{interview_id}:cancelled",
            "ats.interview.cancelled",
        )
        assert cancelled.data["interview"]["status"] == "cancelled"
        assert cancelled.data["interview"]["start_at"] == z(moved)
        assert sorted(await cursors.under(MEMORY)) == [f"{MEMORY}{other}"]
        assert await poller.poll_once() == 0

        clock.advance(timedelta(days=4))  # the other interview is over: its memory goes
        assert await poller.poll_once() == 0
        assert await cursors.under(MEMORY) == {}
    assert sink.duplicates == []


async def test_interviews_first_seen_after_they_ended_or_edited_without_a_move_give_nothing(
    store: Store, clock: ManualClock, runtime: Runtime, sim: HarvestSimulator, reads: Reads
) -> None:
    app = person(sim, 1, START - timedelta(days=3))
    past = sim.records.schedule_interview(
        app, START - timedelta(hours=3), START - timedelta(hours=2), at=START - timedelta(days=1)
    )
    sim.records.complete_interview(past, at=clock.now())  # scorecards due: updated, but over
    upcoming = sim.records.schedule_interview(
        app, START + timedelta(days=1), START + timedelta(days=1, hours=1), at=clock.now()
    )
    sink = IntakeSink(runtime)
    poller = interviews(reads(), store, clock, sink)
    assert await poller.poll_once() == 1
    assert [e.id for e in sink.events] == [f"greenhouse:poll:interview:{upcoming}:scheduled"]
    clock.advance(timedelta(minutes=30))
    sim.records.state.interviews[upcoming]["location"] = "Room 4"
    sim.records.state.interviews[upcoming]["updated_at"] = "2026-03-02T09:30:00.000Z"
    assert await poller.poll_once() == 0


async def test_interview_poller_resumes_after_a_crash_without_duplicates_or_gaps(
    store: Store, clock: ManualClock, runtime: Runtime, sim: HarvestSimulator, reads: Reads
) -> None:
    app = person(sim, 1, START - timedelta(days=3))
    ids = [
        sim.records.schedule_interview(
            app, START + timedelta(days=d), START + timedelta(days=d, hours=1), at=clock.now()
        )
        for d in (1, 2, 3)
    ]
    crashed = IntakeSink(runtime, fail_at=2)
    with pytest.raises(RuntimeError):
        await interviews(reads(), store, clock, crashed).poll_once()
    assert await StoreCursors(store, clock).get("greenhouse:interviews") is None
    restarted = IntakeSink(runtime)
    await interviews(reads(), store, clock, restarted).poll_once()
    expected = {f"greenhouse:poll:interview:{i}:scheduled" for i in ids}
    assert set(crashed.new) | set(restarted.new) == expected
    assert not set(crashed.new) & set(restarted.new)
    assert restarted.duplicates == []  # the first one is remembered: not even re-sent


async def test_shipped_reminder_sequence_follows_polled_reschedule_and_cancellation(
    store: Store, clock: ManualClock, sim: HarvestSimulator, reads: Reads
) -> None:
    config = shipped_config()
    recorder = Recorder(clock)
    recorder.templates_by_email_id = {t.crm_email_id: t.id for t in config.templates.values()}
    runtime = Runtime.build(store, config, clock, recorder, notifier=recorder)
    app = person(sim, 1, START - timedelta(days=3), stage="Interview Scheduled")
    start = START + timedelta(days=3, hours=1)
    interview_id = sim.records.schedule_interview(
        app, start, start + timedelta(hours=1), at=clock.now()
    )
    poller = interviews(reads(), store, clock, IntakeSink(runtime))

    async def reminder_due() -> list[tuple[str, datetime]]:
        async with store.read() as conn:
            rows = await conn.execute(
                select(enrollments.c.status, enrollment_steps.c.due_at)
                .join(enrollment_steps, enrollment_steps.c.enrollment_id == enrollments.c.id)
                .where(enrollments.c.key == str(interview_id))
                .where(enrollment_steps.c.step_id == "candidate-reminder")
            )
            return [(r.status, r.due_at.astimezone(UTC)) for r in rows]

    async with asyncio.timeout(30):
        await poller.poll_once()
        await runtime.dispatcher.run_until_idle()
        assert [s["template"] for s in recorder.sends] == ["interview-scheduled"]
        assert await reminder_due() == [("active", start - timedelta(hours=24))]

        moved = start + timedelta(days=2)
        clock.advance(timedelta(hours=1))
        sim.records.reschedule_interview(
            interview_id, moved, moved + timedelta(hours=1), at=clock.now()
        )
        await poller.poll_once()
        await runtime.dispatcher.run_until_idle()
        assert [s["template"] for s in recorder.sends][-1] == "interview-rescheduled"
        assert await reminder_due() == [("active", moved - timedelta(hours=24))]

        clock.advance(timedelta(hours=1))
        sim.records.cancel_interview(interview_id, at=clock.now())
        await poller.poll_once()
        assert [status for status, _ in await reminder_due()] == ["exited"]
