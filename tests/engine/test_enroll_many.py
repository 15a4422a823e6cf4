"""Bulk enrolment (backfill): the same policies as one-by-one enrolment, in two INSERTs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.sequences import Sequencer
from engine.store.store import Store
from engine.store.tables import enrollment_steps, enrollments

CONFIG = """\
version: 1
rules:
  - id: enrol
    description: enrol
    trigger: ats.application.created
    actions:
      - {action: sequence.enroll, params: {sequence: drip}}
      - {action: sequence.enroll, params: {sequence: other}}
sequences:
  - id: drip
    description: two nurture notes
    steps:
      - {id: one, at: 1d, do: {action: ats.add_note, params: {body: a},
                              fields: {candidate_id: candidate.id}}}
      - {id: two, at: 3d, do: {action: ats.add_note, params: {body: b},
                              fields: {candidate_id: candidate.id}}}
  - id: other
    description: another nurture sequence
    steps:
      - {id: only, at: 1d, do: {action: ats.add_note, params: {body: c},
                               fields: {candidate_id: candidate.id}}}
"""


def item(n: int) -> tuple[str, str | None, dict[str, Any]]:
    return (
        f"c{n}",
        f"p{n}@example.com",
        {"candidate": {"id": f"c{n}", "email": f"p{n}@example.com"}},
    )


async def test_enroll_many_writes_enrolments_and_due_steps_and_respects_policies(
    store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> None:
    sequencer = Sequencer(make_config(CONFIG), clock)
    now = clock.now()
    async with store.transaction() as conn:
        # c0 is already in another nurture sequence: one at a time, so it is left out
        await sequencer.enroll(conn, "other", None, item(0)[2], "c0", "p0@example.com", now)
        enrolled = await sequencer.enroll_many(
            conn, "drip", [item(n) for n in range(50)] + [item(7)], now
        )  # c7 twice: once
        again = await sequencer.enroll_many(conn, "drip", [item(n) for n in range(50)], now)
    assert (enrolled, again) == (49, 0)
    async with store.read() as conn:
        rows = (
            (
                await conn.execute(
                    select(enrollments.c.candidate_id).where(enrollments.c.sequence_id == "drip")
                )
            )
            .scalars()
            .all()
        )
        dues = (
            await conn.execute(
                select(enrollment_steps.c.step_id, enrollment_steps.c.due_at)
                .join(enrollments, enrollments.c.id == enrollment_steps.c.enrollment_id)
                .where(enrollments.c.candidate_id == "c9")
            )
        ).all()
    assert sorted(rows) == sorted(f"c{n}" for n in range(1, 50))
    assert sorted(dues) == [("one", now + timedelta(days=1)), ("two", now + timedelta(days=3))]


async def test_with_no_sequence_configured_an_event_reads_no_enrolments(
    store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> None:
    """Every row it would read belongs to a sequence the config does not run, and is skipped:
    the read is left out (4% of the daemon's time in the reference-shape benchmark). The
    table is renamed, so a read would be an error."""
    rules_only = CONFIG[: CONFIG.index("sequences:")].replace(
        "      - {action: sequence.enroll, params: {sequence: drip}}\n"
        "      - {action: sequence.enroll, params: {sequence: other}}\n",
        "      - {action: ats.add_note, params: {body: hi},\n"
        "         fields: {candidate_id: candidate.id}}\n",
    )
    sequencer = Sequencer(make_config(rules_only), clock)
    async with store.transaction() as conn:
        await conn.execute(text("ALTER TABLE enrollments RENAME TO enrollments_away"))
    candidate, _, data = item(1)
    async with store.transaction() as conn:
        ended = await sequencer.observe(
            conn, "ats.application.created", data, candidate, clock.now()
        )
    assert ended == []
    with_sequences = Sequencer(make_config(CONFIG), clock)
    with pytest.raises((sqlite3.OperationalError, DBAPIError), match="enrollments"):
        async with store.transaction() as conn:
            await with_sequences.observe(
                conn, "ats.application.created", data, candidate, clock.now()
            )
