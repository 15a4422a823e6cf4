"""Lookups a long-running daemon makes against a growing history: no dearer as it grows.

The active enrolments of an address (a CRM event about a contact no candidate is linked to)
scanned every enrolment, and the sync error rate, computed after each dead letter, read every
done action: at 200,000 rows, 24 ms and 32 ms on SQLite with the event loop held, growing
with every month the daemon runs (migration 0007).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from engine.store import queries
from engine.store.store import Store
from engine.store.tables import enrollments, outbox
from tests.engine.store.vm_work import vm_work

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
TRIGGER = "ats.application.created"


def _enrolment(n: int, status: str = "active") -> dict[str, Any]:
    return {
        "sequence_id": "silver-medalist-nurture",
        "candidate_id": f"c{n}",
        "key": "",
        "email": f"person{n}@mail.example",
        "category": "nurture",
        "exclusive": False,
        "status": status,
        "context": {},
        "started_at": NOW,
    }


def _finished(n: int, trigger: str, status: str, finished_at: datetime) -> dict[str, Any]:
    return {
        "event_id": None,
        "rule_id": "welcome",
        "action_index": 0,
        "action_type": "crm.upsert_contact",
        "ordering_key": f"p{n}",
        "candidate_id": f"c{n}",
        "trigger": trigger,
        "payload": {},
        "idempotency_key": f"{trigger}-{n}",
        "status": status,
        "attempts": 1,
        "next_attempt_at": NOW,
        "created_at": finished_at,
        "finished_at": finished_at,
    }


async def _add(store: Store, table: Any, rows: list[dict[str, Any]]) -> None:
    async with store.transaction() as conn:
        for start in range(0, len(rows), 2000):
            await conn.execute(insert(table), rows[start : start + 2000])


async def test_the_active_enrolments_of_an_address_are_found_by_it(store: Store) -> None:
    await _add(store, enrollments, [_enrolment(1), _enrolment(2), _enrolment(3, "exited")])
    async with store.transaction() as conn:
        found = await queries.active_enrollments(conn, None, "person1@mail.example")
        ended = await queries.active_enrollments(conn, None, "person3@mail.example")
    assert [row["candidate_id"] for row in found] == ["c1"]
    assert ended == []


async def test_the_sync_error_rate_counts_one_trigger_within_its_window(store: Store) -> None:
    day_ago = NOW - timedelta(days=1)
    await _add(
        store,
        outbox,
        [
            _finished(1, TRIGGER, "done", NOW),
            _finished(2, TRIGGER, "dead", NOW),
            _finished(3, TRIGGER, "done", day_ago - timedelta(seconds=1)),  # before the window
            _finished(4, "crm.email.clicked", "dead", NOW),  # another trigger
        ],
    )
    async with store.transaction() as conn:
        assert await queries.outcome_counts(conn, TRIGGER, day_ago) == (1, 1)


async def test_history_does_not_make_lookups_dearer(tmp_path: Path) -> None:
    # SQLite only: it counts SQLite's own steps (both backends run the lookups above)
    store = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")

    async def by_address(conn: Any) -> object:
        return await queries.active_enrollments(conn, None, "person7@mail.example")

    async def error_rate(conn: Any) -> object:
        return await queries.outcome_counts(conn, TRIGGER, NOW - timedelta(days=1))

    try:
        await _add(store, enrollments, [_enrolment(n) for n in range(1_000)])
        await _add(store, outbox, [_finished(n, TRIGGER, "done", NOW) for n in range(200)])
        old = NOW - timedelta(days=30)
        await _add(store, outbox, [_finished(n, "old", "done", old) for n in range(1_000)])
        small = (await vm_work(store, by_address), await vm_work(store, error_rate))
        more = range(1_000, 21_000)
        await _add(store, enrollments, [_enrolment(n) for n in more])
        await _add(store, outbox, [_finished(n, "old", "done", old) for n in more])
        large = (await vm_work(store, by_address), await vm_work(store, error_rate))
    finally:
        await store.close()
    # before migration 0007: 21 times the rows, about 21 times the work for both
    assert large[0] <= small[0] + 1 and large[1] < small[1] * 1.5, (small, large)


def _action_of(person: str, n: int, category: str | None, finished_at: datetime) -> dict[str, Any]:
    return {
        **_finished(n, TRIGGER, "done", finished_at),
        "ordering_key": person,
        "action_type": "crm.send_email" if category else "crm.upsert_contact",
        "touch_category": category,
        "idempotency_key": f"{person}-{n}",
    }


async def test_the_frequency_cap_reads_only_the_persons_nurture_email(tmp_path: Path) -> None:
    """The cap counts a person's done nurture email; everything else they were sent or had
    done (contact upserts, transactional mail) is history it must not walk (migration 0008)."""
    store = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")
    person = "person7@mail.example"
    hour_ago = NOW - timedelta(hours=1)

    async def cap(conn: Any) -> list[datetime]:
        return await queries.touches_since(conn, person, NOW - timedelta(days=7))

    try:
        await _add(store, outbox, [_action_of(person, n, "nurture", hour_ago) for n in range(3)])
        await _add(store, outbox, [_action_of(person, n, None, hour_ago) for n in range(3, 20)])
        small = await vm_work(store, cap)
        more = [_action_of(person, n, None, hour_ago) for n in range(20, 2_000)]
        more += [_action_of(person, n, "transactional", hour_ago) for n in range(2_000, 4_000)]
        await _add(store, outbox, more)
        large = await vm_work(store, cap)
        async with store.transaction() as conn:
            touches = await cap(conn)
    finally:
        await store.close()
    assert touches == [hour_ago] * 3
    assert large <= small + 1, (small, large)  # before 0008: 1 -> 281 (hundreds of steps)
