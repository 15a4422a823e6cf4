"""The step runner's prepared statements: firing a new enrolment's due steps (in the intake
transaction) reads only that enrolment's steps, however many other steps are overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.store import queries, step_queries
from engine.store.store import Store
from tests.engine.store.vm_work import vm_work

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


async def _enrol(store: Store, people: range, due_at: datetime) -> list[int]:
    """Enrolments of four pending steps each, all due at ``due_at``."""
    ids = []
    async with store.transaction() as conn:
        for n in people:
            enrolment = {
                "sequence_id": "welcome",
                "candidate_id": f"c{n}",
                "key": "",
                "email": f"p{n}@example.com",
                "category": "nurture",
                "exclusive": False,
                "status": "active",
                "reason": None,
                "context": {},
                "started_at": due_at,
            }
            steps = [
                {"step_id": f"s{k}", "occurrence": 0, "due_at": due_at, "status": "pending"}
                for k in range(4)
            ]
            ids.append(await queries.insert_enrollment(conn, enrolment, steps))
    return ids


async def _work_to_find_due_steps_of(store: Store, enrolment: int) -> int:
    """The work the due-steps-of-enrolments lookup takes."""

    async def lookup(conn: Any) -> None:
        found = await step_queries.due_steps_of(conn, [enrolment], NOW)
        assert {row["enrollment_id"] for row in found} == {enrolment} and len(found) == 4

    return await vm_work(store, lookup)


async def test_firing_a_new_enrolment_costs_the_same_however_many_steps_are_overdue(
    tmp_path: Path,
) -> None:
    # SQLite only: its planner has no statistics and picks the status-and-due index unless
    # told (PostgreSQL runs this lookup in every Day-0 firing test)
    store = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")
    try:
        overdue = NOW - timedelta(hours=3)  # a backlog after downtime
        await _enrol(store, range(50), overdue)
        (first,) = await _enrol(store, range(50, 51), NOW)
        small = await _work_to_find_due_steps_of(store, first)
        await _enrol(store, range(100, 5_100), overdue)  # 20,000 more overdue steps
        (second,) = await _enrol(store, range(6_000, 6_001), NOW)
        large = await _work_to_find_due_steps_of(store, second)
    finally:
        await store.close()
    assert large < small * 1.5 + 2, (small, large)
