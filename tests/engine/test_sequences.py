"""Timed sequences end to end: enrolment, the step runner, exits, keys, edits and guardrails.

Every test runs on SQLite and on PostgreSQL (the ``store`` fixture). Time travels on a
ManualClock; nothing sleeps. The vendors are the in-memory ``Recorder`` of ``engine.testing``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.events import Event
from engine.local_actions import LocalActions
from engine.runtime import Runtime
from engine.steps import StepOutcome, StepRunner
from engine.store import queries
from engine.store.store import Store
from engine.store.tables import alerts, enrollment_steps, enrollments, inbox, jobs, outbox
from engine.testing import Recorder
from engine.webhook_handler import Accepted
from tests.engine.conftest import START

TIMEOUT = 10
MS = timedelta(milliseconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Transactional templates are exempt from quiet hours and the frequency cap, so the tests of
# timing use them; the guardrail tests use the nurture ones.
TEMPLATES = """\
templates:
  - {id: note, subject: "A note", crm_email_id: "200001", category: transactional}
  - {id: note-2, subject: "Another note", crm_email_id: "200002", category: transactional}
  - {id: note-3, subject: "A third note", crm_email_id: "200003", category: transactional}
  - {id: news, subject: "News", crm_email_id: "200010", category: nurture}
  - {id: news-2, subject: "More news", crm_email_id: "200011", category: nurture}
  - id: role
    subject: "A role for you: {role_title}"
    crm_email_id: "200020"
    variables: [role_title]
  - {id: content, subject: "What we are building", crm_email_id: "200021"}
"""


def send(template: str, extra: str = "") -> str:
    """A ``do:`` block sending ``template`` to the candidate."""
    more = f", {extra}" if extra else ""
    return (
        f"{{action: crm.send_email, params: {{template: {template}}}, "
        f"fields: {{to: candidate.email{more}}}}}"
    )


def enrol_rule(rule_id: str, trigger: str, *sequences: str) -> str:
    actions = "".join(
        f"      - {{action: sequence.enroll, params: {{sequence: {s}}}}}\n" for s in sequences
    )
    return (
        f"  - id: {rule_id}\n"
        f"    description: {trigger} enrols into {', '.join(sequences)}\n"
        f"    trigger: {trigger}\n"
        f"    actions:\n{actions}"
    )


def without_start(send_key: str) -> str:
    """A step's send key without the enrolment's start moment (``steps.step_key``)."""
    return send_key.rsplit(":", 1)[0]


def candidate(cid: str, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "first_name": f"Person {cid}", "email": f"{cid}@example.com", **extra}


def application(cid: str, status: str = "active", **job: Any) -> dict[str, Any]:
    return {
        "id": f"app-{cid}",
        "status": status,
        "job": {
            "id": "j1",
            "title": "Data Engineer",
            "department": "Data",
            "status": "open",
            **job,
        },
    }


class Harness:
    """One engine on the test's store, with helpers to accept events, run and look inside."""

    def __init__(self, store: Store, clock: ManualClock, config: ConfigSet, **kwargs: Any) -> None:
        self.store = store
        self.clock = clock
        self.recorder = Recorder(clock)
        self.recorder.templates_by_email_id = {
            t.crm_email_id: t.id for t in config.templates.values()
        }
        self.deliveries = 0
        self.rebuild(config, **kwargs)

    def rebuild(self, config: ConfigSet, **kwargs: Any) -> None:
        """A new engine (a new config version) on the same store; the recorder is kept."""
        recorder = self.recorder
        self.runtime = Runtime.build(
            self.store, config, self.clock, recorder, [], ats=recorder, notifier=recorder, **kwargs
        )

    async def accept(
        self,
        kind: str,
        cid: str | None,
        *,
        source: str = "ats/test",
        **data: Any,
    ) -> Accepted:
        """Accept an event; ``candidate`` (and ``application`` for application and interview
        events) default to the candidate's usual records."""
        if cid is not None:
            data.setdefault("candidate", candidate(cid))
            if kind.startswith(("ats.application.", "ats.interview.")):
                status = kind.rsplit(".", 1)[1]
                data.setdefault(
                    "application",
                    application(cid, status if status in ("rejected", "hired") else "active"),
                )
        self.deliveries += 1
        async with asyncio.timeout(TIMEOUT):
            return await self.runtime.intake.accept(
                Event(
                    id=f"delivery-{self.deliveries}",
                    source=source,
                    type=kind,
                    time=self.clock.now(),
                    subject=cid,
                    data=data,
                )
            )

    async def run(self) -> list[StepOutcome]:
        """Fire every due step and run every due action, until nothing moves (bounded)."""
        outcomes: list[StepOutcome] = []
        async with asyncio.timeout(TIMEOUT):
            for _ in range(50):
                fired = await self.runtime.steps.run_due()
                ran = await self.runtime.dispatcher.run_once()
                outcomes.extend(fired)
                if not fired and not ran:
                    break
        return outcomes

    async def _next_due(self) -> datetime | None:
        async with self.store.read() as conn:
            step = (
                await conn.execute(
                    select(func.min(enrollment_steps.c.due_at)).where(
                        enrollment_steps.c.status == "pending"
                    )
                )
            ).scalar_one_or_none()
            action = await queries.next_due_at(conn)
        moments = [m for m in (step, action) if m is not None]
        return min(moments) if moments else None

    async def travel(self, until: datetime) -> list[StepOutcome]:
        """Jump from one due moment to the next until ``until``, running everything."""
        outcomes = await self.run()
        while True:
            upcoming = await self._next_due()
            if upcoming is None or upcoming > until:
                break
            if upcoming <= self.clock.now():
                raise AssertionError(f"stuck: something due at {upcoming} does not move")
            self.clock.set(upcoming)
            outcomes += await self.run()
        if self.clock.now() < until:
            self.clock.set(until)
            outcomes += await self.run()
        return outcomes

    async def rows(self, table: Any, *where: Any) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            query = select(table).where(*where).order_by(table.c.id)
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def steps(self, *where: Any) -> list[dict[str, Any]]:
        return await self.rows(enrollment_steps, *where)

    async def enrollments(self, *where: Any) -> list[dict[str, Any]]:
        return await self.rows(enrollments, *where)

    async def enrollment(self, sequence: str, cid: str) -> dict[str, Any]:
        (row,) = await self.enrollments(
            enrollments.c.sequence_id == sequence,
            enrollments.c.candidate_id == cid,
            enrollments.c.status == "active",
        )
        return row

    def sends(self, to: str | None = None) -> list[tuple[str, datetime]]:
        return [(s["template"], s["at"]) for s in self.recorder.sends if to in (None, s["to"])]


@pytest.fixture
def harness(
    store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> Callable[..., Harness]:
    def build(text: str, **kwargs: Any) -> Harness:
        return Harness(store, clock, make_config(text + TEMPLATES), **kwargs)

    return build


# -- enrolment and firing ---------------------------------------------------------------------

ANCHORED = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "onboarding", "receipt")}
sequences:
  - id: onboarding
    description: counts from the application date
    anchor: application.applied_at
    steps:
      - {{id: first, at: 1h, do: {send("note")}}}
      - {{id: second, at: 3d, do: {send("note-2")}}}
  - id: receipt
    description: counts from enrolment
    category: transactional
    steps:
      - {{id: only, at: 2h, do: {send("note-3")}}}
"""


@asynccontextmanager
async def refusing(store: Store, change: str, when: str = "") -> AsyncIterator[None]:
    """A database trigger that fails every ``change`` (``"INSERT ON outbox"``) for which
    ``when`` holds, while inside: a real fault on either store, not a patched function."""
    table = change.split(" ON ")[1]
    if store.engine.dialect.name == "postgresql":
        create = [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            f"CREATE TRIGGER refuse BEFORE {change} FOR EACH ROW "
            f"{f'WHEN ({when}) ' if when else ''}EXECUTE FUNCTION refuse()",
        ]
        drop = [f"DROP TRIGGER refuse ON {table}", "DROP FUNCTION refuse()"]
    else:
        create = [
            f"CREATE TRIGGER refuse BEFORE {change} {f'WHEN {when} ' if when else ''}"
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
        drop = ["DROP TRIGGER refuse"]
    await _execute(store, create)
    try:
        yield
    finally:
        await _execute(store, drop)


async def _execute(store: Store, statements: list[str]) -> None:
    async with store.transaction() as conn:
        for statement in statements:
            await conn.exec_driver_sql(statement)


async def test_enrolment_and_its_steps_commit_in_the_same_transaction_as_the_event(
    harness: Callable[..., Harness], store: Store
) -> None:
    engine = harness(ANCHORED)
    applied_at = START - 30 * timedelta(minutes=1)
    app = {**application("c1"), "applied_at": applied_at.isoformat()}

    # a failure later in the intake transaction (the outbox refuses the event's actions, which
    # are written after the enrolment) takes the enrolment with it: no orphan steps
    async with refusing(store, "INSERT ON outbox"):
        # the inline SQLite driver raises sqlite3's own error; PostgreSQL's comes through
        # SQLAlchemy
        with pytest.raises((sqlite3.IntegrityError, DBAPIError), match="refused by the test"):
            await engine.accept("ats.application.created", "c1", application=app)
    assert await engine.rows(inbox) == []
    assert await engine.enrollments() == [] and await engine.steps() == []

    accepted = await engine.accept("ats.application.created", "c1", application=app)
    assert accepted.event_id is not None
    # nothing has run yet: the accept alone left the enrolments and their schedule behind
    onboarding = await engine.enrollment("onboarding", "c1")
    receipt = await engine.enrollment("receipt", "c1")
    due = {
        (r["enrollment_id"], r["step_id"], r["occurrence"], r["status"], r["due_at"])
        for r in await engine.steps()
    }
    assert due == {
        (onboarding["id"], "first", 0, "pending", applied_at + HOUR),
        (onboarding["id"], "second", 0, "pending", applied_at + 3 * DAY),
        (receipt["id"], "only", 0, "pending", START + 2 * HOUR),
    }
    enrol_actions = await engine.rows(outbox, outbox.c.action_type == "sequence.enroll")
    assert [a["result"]["outcome"] for a in enrol_actions] == [
        "enrolled (2 step(s))",
        "enrolled (1 step(s))",
    ]
    assert all(a["event_id"] == accepted.event_id for a in enrol_actions)


SIMPLE = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "simple")}
sequences:
  - id: simple
    description: two notes
    exit_on: [ats.application.rejected]
    steps:
      - {{id: soon, at: 1h, do: {send("note")}}}
      - {{id: later, at: 3d, do: {send("note-2")}}}
"""


async def test_steps_fire_at_their_due_time_and_not_before(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(SIMPLE)
    await engine.accept("ats.application.created", "c1")
    enrollment_id = (await engine.enrollment("simple", "c1"))["id"]

    clock.set(START + HOUR - MS)
    assert await engine.run() == []
    assert await engine.rows(outbox, outbox.c.action_type == "crm.send_email") == []

    clock.set(START + HOUR)
    async with asyncio.timeout(TIMEOUT):
        fired = await engine.runtime.steps.run_due()
    assert [(o.step_id, o.status) for o in fired] == [("soon", "fired")]
    (queued,) = await engine.rows(outbox, outbox.c.action_type == "crm.send_email")
    assert without_start(queued["idempotency_key"]) == f"{enrollment_id}:soon:0"
    assert queued["rule_id"] == "simple/soon" and queued["trigger"] == "sequence:simple"
    assert queued["payload"]["fields"] == {"to": "c1@example.com"}
    step = (await engine.steps(enrollment_steps.c.step_id == "soon"))[0]
    assert (step["status"], step["fired_at"]) == ("fired", START + HOUR)
    await engine.run()
    assert engine.sends() == [("note", START + HOUR)]
    assert without_start(engine.recorder.sends[0]["send_id"]) == f"{enrollment_id}:soon:0"

    clock.set(START + 3 * DAY - MS)
    assert await engine.run() == []
    await engine.travel(START + 10 * DAY)
    assert engine.sends() == [("note", START + HOUR), ("note-2", START + 3 * DAY)]
    assert (await engine.enrollments())[0]["status"] == "completed"


DAY_ZERO = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "welcome")}
sequences:
  - id: welcome
    description: a receipt at once, a note later
    exit_on: [ats.application.rejected]
    steps:
      - {{id: receipt, at: 0d, do: {send("note")}}}
      - {{id: later, at: 3d, do: {send("note-2")}}}
"""


async def test_a_step_due_at_enrolment_is_queued_in_the_enrolling_transaction(
    harness: Callable[..., Harness],
) -> None:
    engine = harness(DAY_ZERO)
    await engine.accept("ats.application.created", "c1")
    # no tick has run: the accept alone fired the Day-0 step and queued its email
    enrollment_id = (await engine.enrollment("welcome", "c1"))["id"]
    assert {s["step_id"]: s["status"] for s in await engine.steps()} == {
        "receipt": "fired",
        "later": "pending",
    }
    (queued,) = await engine.rows(outbox, outbox.c.action_type == "crm.send_email")
    assert without_start(queued["idempotency_key"]) == f"{enrollment_id}:receipt:0"
    assert queued["status"] == "pending" and queued["next_attempt_at"] == START
    steps = engine.runtime.steps.metrics
    assert steps.value("nurture_steps_total", status="fired") == 1
    assert await engine.runtime.steps.run_due() == []
    await engine.run()
    assert engine.sends() == [("note", START)]


async def test_when_firing_at_enrolment_fails_the_event_commits_and_the_tick_fires_the_step(
    harness: Callable[..., Harness], store: Store
) -> None:
    engine = harness(DAY_ZERO)
    async with refusing(store, "UPDATE ON enrollment_steps", "NEW.status = 'fired'"):
        accepted = await engine.accept("ats.application.created", "c1")
    assert accepted.event_id is not None and not accepted.duplicate
    assert [s["status"] for s in await engine.steps()] == ["pending", "pending"]
    assert await engine.rows(outbox, outbox.c.action_type == "crm.send_email") == []

    assert [o.step_id for o in await engine.run()] == ["receipt"]
    assert engine.sends() == [("note", START)]


MISFIRE = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.interview.scheduled", "prep")}
sequences:
  - id: prep
    description: steps before an interview, some already in the past at enrolment
    category: transactional
    anchor: interview.start_at
    steps:
      - id: late-in-grace
        at: -24h
        misfire: {{policy: send_late, grace: 12h}}
        do: {send("note")}
      - id: late-beyond-grace
        at: -48h
        misfire: {{policy: send_late, grace: 12h}}
        do: {send("note-2")}
      - id: skip-a-bit-late
        at: -20h30s
        misfire: {{policy: skip}}
        do: {send("note-3")}
      - id: skip-too-late
        at: -22h
        misfire: {{policy: skip}}
        do: {send("news")}
"""


def interview(iid: str, start: datetime, length: timedelta = HOUR) -> dict[str, Any]:
    return {
        "id": iid,
        "start_at": start.isoformat(),
        "end_at": (start + length).isoformat(),
        "interviewers": [{"name": "Sam Reed", "email": "sam@example.com"}],
    }


async def test_a_step_in_the_past_at_enrolment_follows_its_misfire_policy(
    harness: Callable[..., Harness],
) -> None:
    engine = harness(MISFIRE)
    await engine.accept(
        "ats.interview.scheduled", "c1", interview=interview("i1", START + 20 * HOUR)
    )
    # decided in the enrolling transaction: nothing is left for the tick
    assert await engine.run() == []
    steps = {s["step_id"]: s for s in await engine.steps()}
    assert {k: s["status"] for k, s in steps.items()} == {
        "late-in-grace": "fired",  # 4 h late, grace 12 h
        "late-beyond-grace": "skipped",  # 28 h late
        "skip-a-bit-late": "fired",  # 30 s late: under the one-minute tolerance
        "skip-too-late": "skipped",  # 2 h late
    }
    assert steps["late-beyond-grace"]["status"] == "skipped"
    assert steps["late-beyond-grace"]["reason"] == "missed by 1 day, 4:00:00 (send_late, grace 12h)"
    assert steps["skip-too-late"]["status"] == "skipped"
    assert steps["skip-too-late"]["reason"].startswith("missed by 2:00:00 (skip")
    assert sorted(t for t, _ in engine.sends()) == ["note", "note-3"]
    assert (await engine.enrollments())[0]["status"] == "completed"


DRAIN = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "drain")}
sequences:
  - id: drain
    description: one step that may be late, one that must not be
    steps:
      - {{id: may-be-late, at: 1h, do: {send("note")}}}
      - id: on-time-only
        at: 2h
        misfire: {{policy: skip}}
        do: {send("note-2")}
"""


async def test_after_hours_of_downtime_due_steps_are_spread_and_none_skipped_silently(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRAIN, step_batch=5)
    for n in range(12):
        await engine.accept("ats.application.created", f"c{n}")
    clock.set(START + 6 * HOUR)  # the engine was down for six hours
    sizes: list[int] = []
    outcomes: list[StepOutcome] = []
    async with asyncio.timeout(TIMEOUT):
        while batch := await engine.runtime.steps.run_due():
            sizes.append(len(batch))
            outcomes += batch
    assert sizes == [5, 5, 5, 5, 4]  # at most one batch per tick: the backlog drains spread out
    assert len({(o.enrollment_id, o.step_id) for o in outcomes}) == 24
    steps = await engine.steps()
    assert {(s["step_id"], s["status"]) for s in steps} == {
        ("may-be-late", "fired"),  # 5 h late, inside the default 24 h grace
        ("on-time-only", "skipped"),
    }
    for step in steps:
        if step["status"] == "skipped":
            assert step["reason"] == "missed by 4:00:00 (skip, grace 24h)"
    assert {e["status"] for e in await engine.enrollments()} == {"completed"}


REPEAT = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "monthly", "thrice")}
sequences:
  - id: monthly
    description: every 30 days until the candidate leaves
    exit_on: [ats.application.rejected]
    steps:
      - id: update
        at: 1d
        repeat: {{every: 30d}}
        do: {send("note")}
  - id: thrice
    description: three weekly notes
    category: transactional
    steps:
      - id: weekly
        at: 0d
        repeat: {{every: 7d, times: 3}}
        do: {send("note-2")}
"""


async def test_repeat_fires_every_interval_until_exit_and_times_caps_the_firings(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(REPEAT)
    await engine.accept("ats.application.created", "c1")
    monthly = (await engine.enrollment("monthly", "c1"))["id"]
    thrice = (await engine.enrollment("thrice", "c1"))["id"]
    await engine.travel(START + 100 * DAY)
    assert engine.sends() == [
        ("note-2", START),
        ("note", START + DAY),
        ("note-2", START + 7 * DAY),
        ("note-2", START + 14 * DAY),
        ("note", START + 31 * DAY),
        ("note", START + 61 * DAY),
        ("note", START + 91 * DAY),
    ]
    assert [
        without_start(s["send_id"]) for s in engine.recorder.sends if s["template"] == "note"
    ] == [f"{monthly}:update:{n}" for n in range(4)]
    weekly = await engine.steps(enrollment_steps.c.enrollment_id == thrice)
    assert [(s["occurrence"], s["status"]) for s in weekly] == [
        (0, "fired"),
        (1, "fired"),
        (2, "fired"),
    ]
    statuses = {e["sequence_id"]: e["status"] for e in await engine.enrollments()}
    assert statuses == {"monthly": "active", "thrice": "completed"}

    await engine.accept("ats.application.rejected", "c1")
    pending = await engine.steps(
        enrollment_steps.c.enrollment_id == monthly, enrollment_steps.c.occurrence == 4
    )
    assert [(p["status"], p["due_at"]) for p in pending] == [("cancelled", START + 121 * DAY)]
    await engine.travel(START + 400 * DAY)
    assert len(engine.sends()) == 7


# -- exits -------------------------------------------------------------------------------------

EXITS = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "welcome")}
  - id: unsubscribe
    description: unsubscribe -> suppression
    trigger: crm.contact.unsubscribed
    actions:
      - {{action: suppress, params: {{reason: unsubscribed}}, fields: {{email: contact.email}}}}
sequences:
  - id: welcome
    description: two notes
    exit_on: [ats.application.rejected, crm.contact.unsubscribed]
    steps:
      - {{id: day-1, at: 1d, do: {send("note")}}}
      - {{id: day-3, at: 3d, do: {send("note-2")}}}
"""


async def test_exit_on_an_event_cancels_pending_steps_at_once(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(EXITS)
    await engine.accept("ats.application.created", "c1")
    await engine.accept("ats.application.created", "c2")
    clock.advance(HOUR)
    await engine.accept("ats.application.rejected", "c1")
    # no step run happened: the event itself cancelled c1's schedule
    c1, c2 = await engine.enrollments()
    assert (c1["status"], c1["reason"], c1["ended_at"]) == (
        "exited",
        "exit_on ats.application.rejected",
        START + HOUR,
    )
    assert c2["status"] == "active"
    steps = await engine.steps(enrollment_steps.c.enrollment_id == c1["id"])
    assert {(s["status"], s["reason"]) for s in steps} == {
        ("cancelled", "exit_on ats.application.rejected")
    }
    await engine.travel(START + 5 * DAY)
    assert [s["to"] for s in engine.recorder.sends] == ["c2@example.com", "c2@example.com"]


async def test_an_unsubscribe_accepted_1ms_before_a_due_step_means_it_is_not_sent(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(EXITS)
    await engine.accept("ats.application.created", "c1")
    clock.set(START + DAY - MS)
    await engine.accept(
        "crm.contact.unsubscribed",
        None,
        source="crm/test",
        contact={"email": " C1@Example.com "},
        subscription={"occurred_at": clock.now().isoformat()},
    )
    clock.set(START + DAY + MS)
    outcomes = await engine.run()
    await engine.travel(START + 5 * DAY)
    assert engine.recorder.sends == []
    assert outcomes == []  # nothing was even claimed: the exit removed the steps
    assert {(s["step_id"], s["status"], s["reason"]) for s in await engine.steps()} == {
        ("day-1", "cancelled", "exit_on crm.contact.unsubscribed"),
        ("day-3", "cancelled", "exit_on crm.contact.unsubscribed"),
    }


FRAGILE_EXIT = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "welcome")}
  - id: do-not-contact
    description: Do Not Contact -> suppression
    trigger: ats.candidate.updated
    condition: candidate.do_not_contact
    actions:
      - {{action: suppress, params: {{reason: do_not_contact}}, fields: {{email: candidate.email}}}}
sequences:
  - id: welcome
    description: an exit condition that cannot be evaluated on every event
    exit_on:
      - {{event: ats.candidate.updated, condition: "length(candidate.last_name) > `20`"}}
    steps:
      - {{id: day-1, at: 1d, do: {send("note")}}}
"""


async def test_an_exit_condition_that_fails_to_evaluate_does_not_fail_the_event(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    """Rules record their evaluation errors and go on; an exit_on condition's error escaped
    and failed the whole event, so a Do Not Contact update (its suppression) was refused on
    every redelivery, for as long as the candidate stayed enrolled."""
    engine = harness(FRAGILE_EXIT)
    await engine.accept("ats.application.created", "c1")
    clock.advance(HOUR)
    update = await engine.accept(
        "ats.candidate.updated", "c1", candidate=candidate("c1", do_not_contact=True)
    )  # no last_name: length(null) is a type error
    assert update.event_id is not None
    assert await engine.rows(outbox, outbox.c.action_type == "suppress") != []
    (enrolment,) = await engine.enrollments()
    assert enrolment["status"] == "active"  # the condition is unknown: no exit
    (alert,) = await engine.rows(alerts)
    assert (alert["kind"], alert["rule_id"]) == ("evaluation_error", "welcome/exit_on")
    assert "ats.candidate.updated" in alert["reason"] and "length()" in alert["reason"]
    await engine.travel(START + 2 * DAY)
    assert engine.sends() == []  # suppressed at send time


# -- keyed sequences ---------------------------------------------------------------------------

KEYED = f"""\
version: 1
rules:
{enrol_rule("scheduled", "ats.interview.scheduled", "reminders")}
{enrol_rule("rescheduled", "ats.interview.rescheduled", "reminders")}
sequences:
  - id: reminders
    description: one set of reminders per interview
    category: transactional
    allow_concurrent: true
    anchor: interview.start_at
    key: interview.id
    exit_on: [ats.interview.cancelled]
    steps:
      - {{id: reminder, at: -24h, do: {send("note")}}}
      - id: follow-up
        anchor: interview.end_at
        at: 2h
        do: {send("note-2")}
"""


async def test_a_keyed_sequence_moves_steps_per_key_and_exits_per_key(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(KEYED)
    first = START + 3 * DAY
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", first))
    moved = START + 4 * DAY
    clock.advance(HOUR)
    await engine.accept("ats.interview.rescheduled", "c1", interview=interview("i1", moved))
    (one,) = await engine.enrollments()
    assert one["key"] == "i1"
    steps = await engine.steps()
    assert [(s["step_id"], s["due_at"], s["status"]) for s in steps] == [
        ("reminder", moved - DAY, "pending"),
        ("follow-up", moved + 3 * HOUR, "pending"),
    ]  # moved, not duplicated
    enrol = await engine.rows(outbox, outbox.c.action_type == "sequence.enroll")
    assert enrol[-1]["result"]["outcome"] == "rescheduled 2 pending step(s)"

    second = START + 5 * DAY
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i2", second))
    i1, i2 = await engine.enrollments()
    assert (i1["key"], i2["key"], i2["status"]) == ("i1", "i2", "active")

    await engine.accept("ats.interview.cancelled", "c1", interview=interview("i2", second))
    i1, i2 = await engine.enrollments()
    assert (i1["status"], i2["status"]) == ("active", "exited")
    assert {
        s["status"] for s in await engine.steps(enrollment_steps.c.enrollment_id == i1["id"])
    } == {"pending"}
    await engine.travel(START + 10 * DAY)
    assert engine.sends() == [("note", moved - DAY), ("note-2", moved + 3 * HOUR)]
    assert {s["send_id"].split(":")[0] for s in engine.recorder.sends} == {str(i1["id"])}


async def test_a_reschedule_after_the_reminder_went_out_reminds_again_for_the_new_time(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    """A step that already fired (or was skipped) for the old time is armed again when the
    reschedule puts its new moment in the future; before, only pending steps moved, so an
    interview moved to next week after its reminder went out got no reminder at all."""
    engine = harness(KEYED)
    first = START + 2 * DAY
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", first))
    await engine.travel(START + DAY + HOUR)
    assert engine.sends() == [("note", first - DAY)]  # the reminder for the first time

    moved = START + 5 * DAY
    await engine.accept("ats.interview.rescheduled", "c1", interview=interview("i1", moved))
    enrol = await engine.rows(outbox, outbox.c.action_type == "sequence.enroll")
    assert enrol[-1]["result"]["outcome"] == "rescheduled 2 pending step(s)"
    await engine.travel(START + 10 * DAY)
    assert engine.sends() == [
        ("note", first - DAY),
        ("note", moved - DAY),  # a second reminder, for the new time
        ("note-2", moved + 3 * HOUR),
    ]
    (one,) = await engine.enrollments()
    assert [without_start(s["send_id"]) for s in engine.recorder.sends] == [
        f"{one['id']}:reminder:0",
        f"{one['id']}:reminder:1",
        f"{one['id']}:follow-up:0",
    ]
    assert one["status"] == "completed"

    # the reminder fired but its email is still queued when the interview moves: the old
    # email (naming the old time) is not sent, the new one goes at its moment
    clock.set(START + 11 * DAY)
    await engine.accept(
        "ats.interview.scheduled", "c1", interview=interview("i3", clock.now() + DAY)
    )
    later = START + 14 * DAY
    await engine.accept("ats.interview.rescheduled", "c1", interview=interview("i3", later))
    (stale,) = await engine.rows(
        outbox, outbox.c.idempotency_key.like("%:reminder:0:%"), outbox.c.status == "skipped"
    )
    assert stale["last_error"] == "superseded by a reschedule"
    # and a move whose new reminder moment has already passed arms nothing
    clock.set(START + 12 * DAY)
    await engine.accept(
        "ats.interview.scheduled", "c1", interview=interview("i4", clock.now() + DAY)
    )
    await engine.run()  # its reminder goes out at once
    await engine.accept(
        "ats.interview.rescheduled", "c1", interview=interview("i4", clock.now() + 20 * HOUR)
    )
    await engine.travel(START + 20 * DAY)
    assert [at for t, at in engine.sends() if t == "note" and at > START + 10 * DAY] == [
        START + 12 * DAY,  # i4's, for its first time only
        later - DAY,  # i3's, for its new time only
    ]


async def test_a_reminder_armed_again_by_a_reschedule_moves_with_the_next_one(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    """The reminder armed again for a new time is a later occurrence of a one-off step: a
    second move takes it along (only a repeating step's later occurrences keep their own
    interval), and the email goes out once, for the latest time."""
    engine = harness(KEYED)
    first = START + 2 * DAY
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", first))
    await engine.travel(START + DAY + HOUR)
    moved = START + 5 * DAY
    await engine.accept("ats.interview.rescheduled", "c1", interview=interview("i1", moved))
    clock.advance(HOUR)
    again = START + 8 * DAY
    await engine.accept("ats.interview.rescheduled", "c1", interview=interview("i1", again))
    await engine.travel(START + 10 * DAY)
    assert engine.sends() == [
        ("note", first - DAY),
        ("note", again - DAY),
        ("note-2", again + 3 * HOUR),
    ]


async def test_a_reschedule_after_the_interview_took_place_reminds_again_for_the_new_time(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    """A no-show moved to next week: the reminders of that interview had all gone out and the
    enrolment had completed, so the reschedule met 'enrolled before' and armed nothing."""
    engine = harness(KEYED)
    first = START + DAY + HOUR
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", first))
    await engine.travel(START + 3 * DAY)
    (done,) = await engine.enrollments()
    assert done["status"] == "completed"
    # a second delivery of what is already known changes nothing
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", first))

    moved = START + 6 * DAY
    await engine.accept("ats.interview.rescheduled", "c1", interview=interview("i1", moved))
    enrol = await engine.rows(outbox, outbox.c.action_type == "sequence.enroll")
    assert [e["result"]["outcome"] for e in enrol[1:]] == [
        "not enrolled: enrolled before and reenroll is 'never'",
        "rescheduled 2 pending step(s)",
    ]
    (again,) = await engine.enrollments()
    assert (again["id"], again["status"], again["ended_at"]) == (done["id"], "active", None)
    assert again["context"]["interview"]["start_at"] == moved.isoformat()  # steps render it
    await engine.travel(START + 10 * DAY)
    assert engine.sends() == [
        ("note", first - DAY),
        ("note-2", first + 3 * HOUR),
        ("note", moved - DAY),
        ("note-2", moved + 3 * HOUR),
    ]
    assert (await engine.enrollments())[0]["status"] == "completed"


# -- conditions --------------------------------------------------------------------------------

CONDITION = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.rejected", "silver")}
sequences:
  - id: silver
    description: a matching role if one is open when the step fires, else content
    steps:
      - id: role-or-content
        at: 10d
        condition: "length(matching_roles) > `0`"
        do: {send("role", "role_title: 'matching_roles[0].title'")}
        otherwise: {send("content")}
"""


async def test_condition_and_otherwise_choose_at_fire_time_on_current_data(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(CONDITION)
    await engine.accept("ats.application.rejected", "maya")  # Data department, job j1
    await engine.accept(
        "ats.application.rejected",
        "kai",
        application=application("kai", "rejected", id="j5", title="Designer", department="Design"),
    )
    # at enrolment no other role is open in Data; one opens a day later
    clock.advance(DAY)
    await engine.accept(
        "ats.application.stage_changed",
        "other",
        application=application("other", id="j2", title="Analytics Engineer"),
    )
    await engine.travel(START + 12 * DAY)
    assert sorted((s["to"], s["template"], s["at"]) for s in engine.recorder.sends) == [
        ("kai@example.com", "content", START + 10 * DAY),
        ("maya@example.com", "role", START + 10 * DAY),
    ]
    (role,) = [s for s in engine.recorder.sends if s["template"] == "role"]
    assert role["variables"] == {"role_title": "Analytics Engineer"}


ROLES_OR_NOT = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.rejected", "after")}
sequences:
  - id: after
    description: one step reads the open roles, one does not
    steps:
      - {{id: plain, at: 1d, do: {send("content")}}}
      - id: roles
        at: 1d
        condition: "length(matching_roles) > `0`"
        do: {send("role", "role_title: 'matching_roles[0].title'")}
        otherwise: {send("news")}
"""


async def test_open_roles_are_read_only_for_a_step_whose_expressions_name_them(
    harness: Callable[..., Harness], store: Store
) -> None:
    engine = harness(ROLES_OR_NOT)
    await engine.accept("ats.application.rejected", "maya")  # Data department, job j1
    await engine.accept(
        "ats.application.created", "kai", application=application("kai", id="j2", title="BI")
    )
    async with store.transaction() as conn:  # the other open Data role, unreadable now
        await conn.execute(update(jobs).where(jobs.c.job_id == "j2").values(job={"id": "j2"}))
    await engine.travel(START + 2 * DAY)
    steps = {s["step_id"]: s for s in await engine.steps()}
    assert steps["plain"]["status"] == "fired"
    assert steps["roles"]["status"] == "failed"
    assert "matching_roles" in steps["roles"]["reason"]
    assert [t for t, _ in engine.sends()] == ["content"]


async def test_a_database_error_reading_open_roles_fails_only_that_step(
    harness: Callable[..., Harness], store: Store
) -> None:
    """On PostgreSQL a failed statement aborts its transaction: the whole tick rolled back,
    and came back to the same step every second, so no step of anyone fired any more."""
    engine = harness(ROLES_OR_NOT)
    await engine.accept("ats.application.rejected", "maya")
    await engine.accept("ats.application.rejected", "kai")
    await _execute(store, ["ALTER TABLE jobs RENAME TO jobs_away"])  # a real database error
    try:
        await engine.travel(START + 2 * DAY)
    finally:
        await _execute(store, ["ALTER TABLE jobs_away RENAME TO jobs"])
    steps = sorted((s["enrollment_id"], s["step_id"], s["status"]) for s in await engine.steps())
    assert [(step, status) for _, step, status in steps] == [
        ("plain", "fired"),
        ("roles", "failed"),
    ] * 2
    assert [t for t, _ in engine.sends()] == ["content", "content"]
    assert "step_error" in {a["kind"] for a in await engine.rows(alerts)}


# -- exclusivity and re-enrolment ---------------------------------------------------------------

EXCLUSIVE = f"""\
version: 1
rules:
{enrol_rule("applied", "ats.application.created", "nurture-a")}
{enrol_rule("rejected", "ats.application.rejected", "nurture-b", "nurture-c")}
{enrol_rule("interview", "ats.interview.scheduled", "logistics")}
sequences:
  - id: nurture-a
    description: the first nurture sequence
    steps: [{{id: a, at: 30d, do: {send("news")}}}]
  - id: nurture-b
    description: a second nurture sequence, exclusive
    steps: [{{id: b, at: 30d, do: {send("news")}}}]
  - id: nurture-c
    description: a nurture sequence that may run beside others
    allow_concurrent: true
    steps: [{{id: c, at: 30d, do: {send("news")}}}]
  - id: logistics
    description: transactional, never counts
    category: transactional
    steps: [{{id: t, at: 30d, do: {send("note")}}}]
"""


async def test_one_active_nurture_sequence_per_candidate_unless_allow_concurrent(
    harness: Callable[..., Harness],
) -> None:
    engine = harness(EXCLUSIVE)
    await engine.accept("ats.application.created", "c1")
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", START + DAY))
    await engine.accept("ats.application.rejected", "c1")
    # a transactional enrolment first does not keep a nurture sequence out
    await engine.accept("ats.interview.scheduled", "c2", interview=interview("i2", START + DAY))
    await engine.accept("ats.application.created", "c2")

    outcomes = {
        (a["candidate_id"], a["payload"]["params"]["sequence"]): a["result"]["outcome"]
        for a in await engine.rows(outbox, outbox.c.action_type == "sequence.enroll")
    }
    assert outcomes == {
        ("c1", "nurture-a"): "enrolled (1 step(s))",
        ("c1", "logistics"): "enrolled (1 step(s))",
        ("c1", "nurture-b"): "not enrolled: nurture sequence 'nurture-a' is active",
        ("c1", "nurture-c"): "enrolled (1 step(s))",
        ("c2", "logistics"): "enrolled (1 step(s))",
        ("c2", "nurture-a"): "enrolled (1 step(s))",
    }
    active = {(e["candidate_id"], e["sequence_id"]) for e in await engine.enrollments()}
    assert ("c1", "nurture-b") not in active and len(active) == 5


REENROLL = f"""\
version: 1
rules:
{enrol_rule("applied", "ats.application.created", "never", "after-exit", "restart")}
  - id: hired
    description: hired -> leave everything
    trigger: ats.application.hired
    actions:
      - {{action: sequence.exit, params: {{sequence: "*", reason: hired}}}}
sequences:
  - id: never
    description: reenroll never (the default)
    allow_concurrent: true
    steps: [{{id: s, at: 10d, do: {send("note")}}}]
  - id: after-exit
    description: reenroll once the previous enrolment ended
    reenroll: after_exit
    allow_concurrent: true
    steps: [{{id: s, at: 10d, do: {send("note")}}}]
  - id: restart
    description: a new enrolment replaces the active one
    reenroll: restart
    allow_concurrent: true
    steps: [{{id: s, at: 10d, do: {send("note")}}}]
"""


async def test_reenroll_never_after_exit_and_restart_behave_as_documented(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(REENROLL)

    async def outcomes() -> dict[str, str]:
        rows = await engine.rows(outbox, outbox.c.action_type == "sequence.enroll")
        return {a["payload"]["params"]["sequence"]: a["result"]["outcome"] for a in rows[-3:]}

    await engine.accept("ats.application.created", "c1")
    assert set((await outcomes()).values()) == {"enrolled (1 step(s))"}

    clock.advance(DAY)  # applies again while enrolled everywhere
    await engine.accept("ats.application.created", "c1")
    assert await outcomes() == {
        "never": "already enrolled",
        "after-exit": "already enrolled",
        "restart": "enrolled (1 step(s))",
    }
    restarted = await engine.enrollments(enrollments.c.sequence_id == "restart")
    assert [(e["status"], e["reason"]) for e in restarted] == [
        ("exited", "restarted"),
        ("active", None),
    ]
    old = await engine.steps(enrollment_steps.c.enrollment_id == restarted[0]["id"])
    new = await engine.steps(enrollment_steps.c.enrollment_id == restarted[1]["id"])
    assert [(s["status"], s["reason"]) for s in old] == [("cancelled", "restarted")]
    assert [(s["status"], s["due_at"]) for s in new] == [("pending", START + 11 * DAY)]

    await engine.accept("ats.application.hired", "c1")
    assert {e["status"] for e in await engine.enrollments()} == {"exited"}
    clock.advance(DAY)
    await engine.accept("ats.application.created", "c1")
    assert await outcomes() == {
        "never": "not enrolled: enrolled before and reenroll is 'never'",
        "after-exit": "enrolled (1 step(s))",
        "restart": "enrolled (1 step(s))",
    }
    counts = {
        s: len(await engine.enrollments(enrollments.c.sequence_id == s))
        for s in ("never", "after-exit", "restart")
    }
    assert counts == {"never": 1, "after-exit": 2, "restart": 3}


RESTART_EXCLUSIVE = f"""\
version: 1
rules:
{enrol_rule("applied", "ats.application.created", "solo")}
{enrol_rule("rejected", "ats.application.rejected", "other")}
sequences:
  - id: solo
    description: an exclusive nurture sequence that restarts on a new application
    reenroll: restart
    steps: [{{id: s, at: 10d, do: {send("news")}}}]
  - id: other
    description: another exclusive nurture sequence
    steps: [{{id: o, at: 10d, do: {send("news")}}}]
"""


async def test_a_restarted_nurture_sequence_is_not_kept_out_by_the_enrolment_it_replaces(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(RESTART_EXCLUSIVE)
    await engine.accept("ats.application.created", "c1")
    clock.advance(DAY)
    await engine.accept("ats.application.created", "c1")
    await engine.accept("ats.application.rejected", "c1")

    outcomes = [
        (a["payload"]["params"]["sequence"], a["result"]["outcome"])
        for a in await engine.rows(outbox, outbox.c.action_type == "sequence.enroll")
    ]
    assert outcomes == [
        ("solo", "enrolled (1 step(s))"),
        ("solo", "enrolled (1 step(s))"),
        ("other", "not enrolled: nurture sequence 'solo' is active"),
    ]
    solo = await engine.enrollments(enrollments.c.sequence_id == "solo")
    assert [(e["status"], e["reason"]) for e in solo] == [("exited", "restarted"), ("active", None)]


# -- concurrent firing -------------------------------------------------------------------------

TWIN = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "twin")}
sequences:
  - id: twin
    description: two steps due at the same moment
    steps:
      - {{id: left, at: 1h, do: {send("note")}}}
      - {{id: right, at: 1h, do: {send("note-2")}}}
"""


class _Gate(LocalActions):
    """Holds each firing inside its transaction until both runners have claimed their step."""

    def __init__(self, inner: LocalActions, barrier: asyncio.Barrier, hold: bool) -> None:
        super().__init__(inner.sequencer)
        self.barrier = barrier
        self.hold = hold

    async def apply(self, conn: Any, row: dict[str, Any], *args: Any) -> None:
        if self.hold:  # PostgreSQL only: SQLite's one writer serialises the runners anyway
            # Without a lock on the enrolment both runners meet here inside their
            # transactions; with it, the second waits on the lock and the first goes on alone.
            try:
                async with asyncio.timeout(1):
                    await self.barrier.wait()
            except (TimeoutError, asyncio.BrokenBarrierError):
                pass
        await super().apply(conn, row, *args)


async def test_an_enrolment_completes_when_its_last_steps_fire_concurrently(
    harness: Callable[..., Harness],
    clock: ManualClock,
    store: Store,
    request: pytest.FixtureRequest,
) -> None:
    engine = harness(TWIN)
    await engine.accept("ats.application.created", "c1")
    clock.set(START + HOUR)
    barrier = asyncio.Barrier(2)
    current = engine.runtime.steps
    runners = [
        StepRunner(
            store,
            current.config,
            clock,
            _Gate(current.local, barrier, store.dialect == "postgresql"),
            batch=1,
        )
        for _ in range(2)
    ]
    async with asyncio.timeout(TIMEOUT):
        first, second = await asyncio.gather(*(runner.run_due() for runner in runners))
    assert sorted(o.step_id for o in first + second) == ["left", "right"]
    assert {s["status"] for s in await engine.steps()} == {"fired"}
    assert [e["status"] for e in await engine.enrollments()] == ["completed"]


# -- editing a live sequence -------------------------------------------------------------------

EDITABLE = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "live")}
sequences:
  - id: live
    description: edited while candidates are enrolled
    steps:
      - {{id: one, at: 1d, do: {send("note")}}}
      - {{id: two, at: 2d, do: {send("note-2")}}}
      - {{id: three, at: 3d, do: {send("note-3")}}}
"""
EDITED = EDITABLE.replace(f"      - {{id: two, at: 2d, do: {send('note-2')}}}\n", "").replace(
    "id: three, at: 3d", "id: three, at: 4d"
)


async def test_editing_a_live_sequence_continues_enrolled_candidates(
    harness: Callable[..., Harness],
    make_config: Callable[[str], ConfigSet],
    clock: ManualClock,
) -> None:
    assert EDITED != EDITABLE and "id: two" not in EDITED
    engine = harness(EDITABLE)
    await engine.accept("ats.application.created", "c1")
    await engine.travel(START + DAY + HOUR)
    assert engine.sends() == [("note", START + DAY)]

    engine.rebuild(make_config(EDITED + TEMPLATES))  # a restart with the edited config
    outcomes = await engine.travel(START + 10 * DAY)
    assert [(o.step_id, o.status, o.reason) for o in outcomes] == [
        ("two", "skipped", "step removed from the sequence"),
        ("three", "fired", None),
    ]
    steps = {s["step_id"]: s for s in await engine.steps()}
    assert (steps["two"]["status"], steps["two"]["reason"]) == (
        "skipped",
        "step removed from the sequence",
    )
    assert steps["three"]["status"] == "fired"
    assert [t for t, _ in engine.sends()] == ["note", "note-3"]
    assert (await engine.enrollments())[0]["status"] == "completed"


# -- evaluation failures -----------------------------------------------------------------------

FAILING = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "fragile")}
sequences:
  - id: fragile
    description: one step whose mapping fails at evaluation
    steps:
      - id: broken
        at: 1h
        do: {send("role", "role_title: length(candidate.can_email)")}
      - {{id: fine, at: 1h, do: {send("note")}}}
      - {{id: later, at: 2h, do: {send("note-2")}}}
"""


async def test_a_step_whose_mapping_fails_is_recorded_failed_with_an_alert_and_others_fire(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(FAILING)
    await engine.accept("ats.application.created", "c1")
    await engine.accept("ats.application.created", "c2")
    clock.set(START + HOUR)
    async with asyncio.timeout(TIMEOUT):
        first = await engine.runtime.steps.run_due()  # one batch holds failing and good steps
    assert sorted((o.step_id, o.status) for o in first) == [
        ("broken", "failed"),
        ("broken", "failed"),
        ("fine", "fired"),
        ("fine", "fired"),
    ]
    await engine.travel(START + DAY)
    broken = await engine.steps(enrollment_steps.c.step_id == "broken")
    assert {s["status"] for s in broken} == {"failed"}
    assert all(s["reason"].startswith("evaluation failed: JMESPathTypeError") for s in broken)
    assert all("length()" in s["reason"] for s in broken)
    (alert,) = await engine.rows(alerts)
    assert (alert["kind"], alert["rule_id"], alert["action_type"], alert["count"]) == (
        "step_error",
        "fragile/broken",
        "crm.send_email",
        2,
    )
    assert "step broken of fragile failed" in alert["reason"]
    assert sorted((s["template"], s["to"]) for s in engine.recorder.sends) == [
        ("note", "c1@example.com"),
        ("note", "c2@example.com"),
        ("note-2", "c1@example.com"),
        ("note-2", "c2@example.com"),
    ]
    assert {e["status"] for e in await engine.enrollments()} == {"completed"}


OVERFLOWING = FAILING.replace(
    "length(candidate.can_email)", "to_string(floor(to_number(candidate.phone)))"
)


async def test_an_unexpected_evaluation_error_fails_only_its_step(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(OVERFLOWING)
    await engine.accept("ats.application.created", "c1", candidate=candidate("c1", phone="1e999"))
    await engine.accept("ats.application.created", "c2", candidate=candidate("c2", phone="12"))
    clock.set(START + HOUR)
    async with asyncio.timeout(TIMEOUT):
        outcomes = await engine.runtime.steps.run_due()
    assert sorted((o.enrollment_id, o.step_id, o.status) for o in outcomes) == [
        (1, "broken", "failed"),  # c1: floor() of an infinite number
        (1, "fine", "fired"),
        (2, "broken", "fired"),
        (2, "fine", "fired"),
    ]


# -- guardrails --------------------------------------------------------------------------------

DRIP = f"""\
version: 1
rules:
{enrol_rule("enrol", "ats.application.created", "drip")}
{enrol_rule("interview", "ats.interview.scheduled", "logistics")}
  - id: do-not-contact
    description: Do Not Contact -> suppression
    trigger: ats.candidate.updated
    condition: candidate.do_not_contact
    actions:
      - {{action: suppress, params: {{reason: do_not_contact}}, fields: {{email: candidate.email}}}}
sequences:
  - id: drip
    description: nurture emails, the first two a day apart
    exit_on: [ats.application.rejected]
    steps:
      - {{id: first, at: 0d, do: {send("news")}}}
      - {{id: second, at: 1d, do: {send("news-2")}}}
      - {{id: third, at: 10d, do: {send("news")}}}
  - id: logistics
    description: transactional mail
    category: transactional
    steps:
      - {{id: now, at: 0d, do: {send("note")}}}
"""


async def test_the_frequency_cap_defers_a_second_nurture_email_within_48h(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRIP)
    await engine.accept("ats.application.created", "c1")
    await engine.run()
    assert engine.sends() == [("news", START)]

    clock.set(START + DAY)
    await engine.run()
    assert engine.sends() == [("news", START)]  # deferred, not sent
    (second,) = await engine.rows(outbox, outbox.c.idempotency_key.like("%:second:0:%"))
    assert second["status"] == "deferred"  # not dropped
    assert second["next_attempt_at"] == START + 2 * DAY
    assert second["last_error"].startswith("deferred: frequency cap (1 per 2 days")
    assert second["attempts"] == 0  # a deferral is not a failed attempt

    clock.set(START + 2 * DAY - MS)
    await engine.run()
    assert len(engine.sends()) == 1
    clock.set(START + 2 * DAY + timedelta(seconds=1))
    await engine.run()
    assert engine.sends() == [("news", START), ("news-2", START + 2 * DAY + timedelta(seconds=1))]


async def test_a_capped_email_is_sent_at_the_moment_the_cap_deferred_it_to(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRIP)
    await engine.accept("ats.application.created", "c1")
    await engine.run()
    clock.set(START + DAY)
    await engine.run()
    (second,) = await engine.rows(outbox, outbox.c.idempotency_key.like("%:second:0:%"))
    clock.set(second["next_attempt_at"])
    async with asyncio.timeout(TIMEOUT):
        for _ in range(3):
            await engine.runtime.dispatcher.run_once()
    assert engine.sends() == [("news", START), ("news-2", START + 2 * DAY)]


async def test_quiet_hours_defer_a_nurture_email_to_their_end_in_the_candidates_zone(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRIP)
    clock.set(START - 7 * HOUR)  # Mon 02:00 UTC = Sun 21:00 in New York (UTC-5 until 8 March)
    await engine.accept(
        "ats.application.created", "c1", candidate=candidate("c1", time_zone="America/New_York")
    )
    await engine.run()
    assert engine.sends() == []
    (first,) = await engine.rows(outbox, outbox.c.idempotency_key.like("%:first:0:%"))
    assert first["status"] == "deferred"
    assert first["last_error"] == "deferred: outside the send window or quiet hours"
    morning = START + 4 * HOUR  # Mon 08:00 in New York
    assert first["next_attempt_at"] == morning
    await engine.travel(morning)
    assert engine.sends() == [("news", morning)]


async def test_transactional_mail_is_exempt_from_quiet_hours_and_the_cap(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRIP)
    # the cap: a nurture email went out, transactional mail an hour later is not held back
    await engine.accept("ats.application.created", "c1")
    await engine.run()
    clock.advance(HOUR)
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", START + DAY))
    await engine.run()
    assert engine.sends("c1@example.com") == [("news", START), ("note", START + HOUR)]
    # quiet hours: 23:00 in the candidate's zone
    clock.set(START + 14 * HOUR)
    await engine.accept("ats.interview.scheduled", "c2", interview=interview("i2", START + DAY))
    await engine.run()
    assert engine.sends("c2@example.com") == [("note", START + 14 * HOUR)]


async def test_a_deferred_nurture_email_does_not_hold_back_transactional_mail(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRIP)
    clock.set(START + 13 * HOUR)  # 22:00 UTC: quiet hours
    await engine.accept("ats.application.created", "c1")
    await engine.run()
    assert engine.sends() == []  # the nurture email waits for 08:00
    clock.advance(HOUR)
    await engine.accept("ats.interview.scheduled", "c1", interview=interview("i1", START + DAY))
    await engine.run()
    assert engine.sends() == [("note", START + 14 * HOUR)]


async def test_an_exit_also_stops_a_fired_step_whose_email_a_guardrail_deferred(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRIP)
    await engine.accept("ats.application.created", "c1")
    await engine.run()
    clock.set(START + DAY)
    await engine.run()  # the second email fired, and the cap deferred it to START + 2 d
    clock.advance(HOUR)
    await engine.accept("ats.application.rejected", "c1")
    assert (await engine.enrollments())[0]["status"] == "exited"
    clock.set(START + 2 * DAY + timedelta(seconds=1))  # past the cap (not at its edge)
    await engine.run()
    assert engine.sends() == [("news", START)]


async def test_a_suppressed_address_gets_no_email(
    harness: Callable[..., Harness], clock: ManualClock
) -> None:
    engine = harness(DRIP)
    await engine.accept("ats.application.created", "c1")
    await engine.run()
    clock.advance(HOUR)
    await engine.accept(
        "ats.candidate.updated", "c1", candidate=candidate("c1", do_not_contact=True)
    )
    clock.set(START + DAY)
    await engine.run()
    second_step = await engine.steps(enrollment_steps.c.step_id == "second")
    assert [s["status"] for s in second_step] == ["fired"]  # the sequence ran ...
    (second,) = await engine.rows(outbox, outbox.c.idempotency_key.like("%:second:0:%"))
    assert (second["status"], second["last_error"]) == ("skipped", "suppressed (do_not_contact)")
    assert engine.sends() == [("news", START)]  # ... but the address got nothing after
