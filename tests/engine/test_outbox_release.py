"""A worker cancelled mid-batch (shutdown past its grace) gives its claimed actions back."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from engine.clock import ManualClock
from engine.outbox import Dispatcher, work
from engine.store import queries
from engine.store.queries import Claimed
from engine.store.store import Store
from engine.store.tables import outbox
from tests.engine.conftest import START


def _row(n: int) -> dict[str, Any]:
    return {
        "event_id": None,
        "rule_id": "application-to-crm",
        "action_index": 0,
        "action_type": "crm.upsert_contact",
        "ordering_key": f"person{n}@example.com",
        "candidate_id": f"gh-{n}",
        "trigger": "ats.application.created",
        "payload": {},
        "idempotency_key": f"k{n}",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": START,
        "created_at": START,
    }


async def _statuses(store: Store) -> list[tuple[str, Any]]:
    async with store.read() as conn:
        rows = await conn.execute(select(outbox.c.status, outbox.c.lease_until))
        return [(r.status, r.lease_until) for r in rows]


async def test_a_cancelled_worker_releases_what_it_claimed(store: Store) -> None:
    async with store.transaction() as conn:
        await queries.insert_actions(conn, [_row(n) for n in range(3)])
    started = asyncio.Event()
    never = asyncio.Event()

    async def vendor_that_hangs(job: Claimed) -> dict[str, Any]:
        started.set()
        await never.wait()
        return {}

    dispatcher = Dispatcher(store, {"crm.upsert_contact": vendor_that_hangs}, ManualClock(START))
    worker = asyncio.create_task(work(lambda: dispatcher, asyncio.Event(), asyncio.Event()))
    await asyncio.wait_for(started.wait(), timeout=10)
    assert [status for status, _ in await _statuses(store)] == ["running"] * 3

    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)

    # pending with no lease: a restart runs them at once, not after the lease expires
    assert await _statuses(store) == [("pending", None)] * 3
    assert dispatcher.in_flight == set()
