"""The outbox claim: correct past a window of blocked actions, and no dearer with a backlog.

A claim walks the waiting actions ``CLAIM_WINDOW`` at a time in id order. Before, it asked
for every due action at once, and both databases read and sorted all of them: 70 ms per
claim on SQLite with 50,000 waiting, 35-45 s on PostgreSQL before its statistics caught up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.store import queries
from engine.store.queries import CLAIM_WINDOW
from engine.store.store import Store
from tests.engine.store.vm_work import vm_work

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=2)


def _action(n: int, person: str, status: str = "pending") -> dict[str, Any]:
    return {
        "event_id": None,
        "rule_id": "welcome",
        "action_index": 0,
        "action_type": "crm.upsert_contact",
        "ordering_key": person,
        "candidate_id": person,
        "trigger": "ats.application.created",
        "payload": {"fields": {}},
        "idempotency_key": f"{status}-{n}",
        "status": status,
        "attempts": 0,
        "next_attempt_at": NOW,
        "created_at": NOW,
        "touch_category": None,
        "enrollment_id": None,
    }


async def _queue(store: Store, rows: list[dict[str, Any]]) -> None:
    async with store.transaction() as conn:
        for start in range(0, len(rows), 1000):
            await queries.insert_actions(conn, rows[start : start + 1000])


async def test_a_claim_finds_the_claimable_actions_behind_a_window_of_blocked_ones(
    store: Store,
) -> None:
    # one person's long queue first (all but its head blocked), then 40 other people
    queue = [_action(n, "busy") for n in range(CLAIM_WINDOW * 2 + 10)]
    others = [_action(10_000 + n, f"p{n}") for n in range(40)]
    await _queue(store, queue + others)
    async with store.transaction() as conn:
        claimed = await queries.claim_actions(conn, NOW, LEASE, 32)
    assert [c.ordering_key for c in claimed] == ["busy"] + [f"p{n}" for n in range(31)]
    async with store.transaction() as conn:
        rest = await queries.claim_actions(conn, NOW, LEASE, 32)
    assert [c.ordering_key for c in rest] == [f"p{n}" for n in range(31, 40)]


async def test_a_claim_claims_nothing_while_everything_is_paused(store: Store) -> None:
    await _queue(store, [_action(n, f"p{n}") for n in range(5)])
    async with store.transaction() as conn:
        await queries.pause(conn, "*", NOW)
    async with store.transaction() as conn:
        assert await queries.claim_actions(conn, NOW, LEASE, 32) == []
    async with store.transaction() as conn:
        await queries.resume(conn, "*")
    async with store.transaction() as conn:
        assert len(await queries.claim_actions(conn, NOW, LEASE, 32)) == 5


async def _claim_work(store: Store) -> int:
    """The work one claim of 32 takes."""

    async def claim(conn: Any) -> None:
        assert len(await queries.claim_actions(conn, NOW, LEASE, 32)) == 32

    return await vm_work(store, claim)


async def test_a_claim_costs_the_same_however_many_actions_wait(tmp_path: Path) -> None:
    # SQLite only: it counts SQLite's own steps (PostgreSQL runs the claim tests above)
    store = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")
    try:
        await _claim_costs_the_same(store)
    finally:
        await store.close()


async def _claim_costs_the_same(store: Store) -> None:
    history = [_action(n, f"h{n % 500}", status="done") for n in range(5_000)]
    # more than a window waits in both cases: a claim walks at most a window of them
    await _queue(store, history + [_action(10_000 + n, f"a{n}") for n in range(1_000)])
    small = await _claim_work(store)
    await _queue(store, [_action(20_000 + n, f"b{n}") for n in range(20_000)])
    large = await _claim_work(store)
    # before the windowed claim: 20 times the backlog, about 20 times the work
    assert large < small * 1.5, (small, large)
