"""The timekeeper registers its jobs with APScheduler and each job does one bounded tick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import func, select

from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.metrics import Metrics
from engine.runtime import Runtime
from engine.scheduler import Timekeeper
from engine.steps import TICK_CHUNK
from engine.store.store import Store
from engine.store.tables import enrollment_steps
from engine.testing import Recorder

CONFIG = """\
version: 1
rules:
  - id: enrol
    description: enrol every applicant
    trigger: ats.application.created
    actions:
      - action: sequence.enroll
        params: {sequence: s}
sequences:
  - id: s
    description: one reminder note
    category: transactional
    steps:
      - id: note
        at: 1h
        do:
          action: ats.add_note
          params: {body: "hello"}
          fields: {candidate_id: candidate.id}
"""


async def test_jobs_are_registered_at_one_second_and_a_tick_fires_due_steps(
    store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> None:
    recorder = Recorder(clock)
    runtime = Runtime.build(
        store, make_config(CONFIG), clock, recorder, ats=recorder, notifier=recorder, step_batch=10
    )
    keeper = Timekeeper(runtime)
    async with asyncio.timeout(10):
        keeper.start()
        try:
            jobs = {job.id: job for job in keeper.scheduler.get_jobs()}
            assert jobs["fire-steps"].trigger.interval.total_seconds() == 1.0
            assert jobs["fire-steps"].max_instances == 1 and jobs["fire-steps"].coalesce
            for n in range(25):
                await runtime.intake.accept(_application(n))
            assert await keeper.fire_steps() == 0  # nothing due yet
            clock.advance(__import__("datetime").timedelta(hours=2))
            assert await keeper.fire_steps() == 10  # one batch per tick: a backlog spreads
            assert await keeper.fire_steps() == 10
            assert await keeper.fire_steps() == 5
        finally:
            keeper.shutdown()


def _application(n: int):
    from engine.events import Event

    return Event(
        id=f"d{n}",
        source="ats/test",
        type="ats.application.created",
        time="2026-03-02T09:00:00Z",
        subject=f"c{n}",
        data={
            "candidate": {"id": f"c{n}", "email": f"p{n}@example.com"},
            "application": {"id": f"a{n}", "status": "active"},
        },
    )


async def test_a_tick_fires_its_steps_in_chunks_and_lets_webhooks_in_between(
    store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> None:
    recorder = Recorder(clock)
    runtime = Runtime.build(
        store, make_config(CONFIG), clock, recorder, ats=recorder, notifier=recorder
    )
    keeper = Timekeeper(runtime)
    due = TICK_CHUNK * 3 + 5
    for n in range(due):
        await runtime.intake.accept(_application(n))
    clock.advance(__import__("datetime").timedelta(hours=2))
    seen: list[int] = []

    async def webhook_waiting_for_the_loop() -> None:  # runs at the tick's first yield
        async with store.read() as conn:
            fired = select(func.count()).where(enrollment_steps.c.status == "fired")
            seen.append(int((await conn.execute(fired)).scalar_one()))

    waiting = asyncio.ensure_future(webhook_waiting_for_the_loop())
    assert await keeper.fire_steps() == due  # still one tick for all of them
    await waiting
    assert seen[0] < due, "the whole tick held the event loop"
    await runtime.dispatcher.run_until_idle()
    assert len(recorder.ats) == due


async def test_fired_steps_and_recorded_actions_are_counted_for_metrics(
    store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> None:
    recorder = Recorder(clock)
    metrics = Metrics()
    runtime = Runtime.build(
        store,
        make_config(CONFIG),
        clock,
        recorder,
        ats=recorder,
        notifier=recorder,
        metrics=metrics,
    )
    for n in range(3):
        await runtime.intake.accept(_application(n))
    clock.advance(__import__("datetime").timedelta(hours=2))  # due an hour ago
    assert len(await runtime.steps.run_tick()) == 3
    assert metrics.value("nurture_steps_total", status="fired") == 3
    lag = metrics.render().splitlines()
    assert "nurture_step_lag_seconds_count 3" in lag
    assert "nurture_step_lag_seconds_sum 10800" in lag  # 3 x 3,600 s late
    await runtime.dispatcher.run_until_idle()
    assert metrics.value("nurture_actions_total", type="ats.add_note", outcome="done") == 3
