"""The daemon's outbox stream: claims as slots free up, records outcomes as they arrive."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from engine.clock import ManualClock
from engine.outbox import Dispatcher
from engine.outbox_stream import Stream
from engine.store import queries
from engine.store.queries import Claimed
from engine.store.store import Store
from engine.store.tables import outbox
from tests.engine.conftest import START


def _row(person: int, index: int) -> dict[str, Any]:
    return {
        "event_id": None,
        "rule_id": "application-to-crm",
        "action_index": index,
        "action_type": "crm.upsert_contact",
        "ordering_key": f"person{person}@example.com",
        "candidate_id": f"gh-{person}",
        "trigger": "ats.application.created",
        "payload": {"person": person, "index": index},
        "idempotency_key": f"k{person}-{index}",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": START,
        "created_at": START,
    }


async def _queue(store: Store, rows: list[dict[str, Any]]) -> None:
    async with store.transaction() as conn:
        await queries.insert_actions(conn, rows)


async def _statuses(store: Store) -> dict[str, str]:
    async with store.read() as conn:
        rows = await conn.execute(select(outbox.c.idempotency_key, outbox.c.status))
        return {r.idempotency_key: r.status for r in rows}


async def _until(check: Any, what: str) -> None:
    async with asyncio.timeout(20):
        while not await check():
            await asyncio.sleep(0.01)


async def test_the_stream_keeps_each_persons_order_and_runs_people_in_parallel(
    store: Store,
) -> None:
    await _queue(store, [_row(p, i) for i in range(3) for p in range(4)])
    seen: list[tuple[int, int]] = []
    running = 0
    most = 0

    async def handler(job: Claimed) -> dict[str, Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        for _ in range(3):  # hand the loop over, so others can overlap
            await asyncio.sleep(0)
        seen.append((job.payload["person"], job.payload["index"]))
        running -= 1
        return {}

    dispatcher = Dispatcher(
        store, {"crm.upsert_contact": handler}, ManualClock(START), concurrency=3
    )
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(Stream(lambda: dispatcher, idle=0.05).run(stop, wake))
    await _until(lambda: _all(store, "done", 12), "every action done")
    stop.set()
    await task
    for person in range(4):
        assert [i for p, i in seen if p == person] == [0, 1, 2]
    assert 1 < most <= 3


async def _all(store: Store, status: str, count: int) -> bool:
    statuses = await _statuses(store)
    return len(statuses) == count and set(statuses.values()) == {status}


async def test_a_slow_action_does_not_hold_back_the_others(store: Store) -> None:
    await _queue(store, [_row(p, 0) for p in range(5)])
    slow_may_finish = asyncio.Event()

    async def handler(job: Claimed) -> dict[str, Any]:
        if job.payload["person"] == 0:
            await slow_may_finish.wait()
        return {}

    dispatcher = Dispatcher(store, {"crm.upsert_contact": handler}, ManualClock(START))
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(Stream(lambda: dispatcher, idle=0.05).run(stop, wake))

    async def others_done() -> bool:
        statuses = await _statuses(store)
        return [statuses[f"k{p}-0"] for p in range(1, 5)] == ["done"] * 4

    # recorded (committed) while person 0's call is still in flight
    await _until(others_done, "the fast actions recorded")
    assert (await _statuses(store))["k0-0"] == "running"
    await _queue(store, [_row(9, 0)])  # new work starts meanwhile too
    wake.set()
    await _until(lambda: _status_is(store, "k9-0", "done"), "new work done")
    slow_may_finish.set()
    stop.set()
    await task  # stop lets the slow one finish and records it
    assert (await _statuses(store))["k0-0"] == "done"


async def _status_is(store: Store, key: str, status: str) -> bool:
    return (await _statuses(store)).get(key) == status


async def test_a_cancelled_stream_releases_what_it_claimed(store: Store) -> None:
    await _queue(store, [_row(p, 0) for p in range(3)])
    never = asyncio.Event()

    async def handler(job: Claimed) -> dict[str, Any]:
        await never.wait()
        return {}

    dispatcher = Dispatcher(store, {"crm.upsert_contact": handler}, ManualClock(START))
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(Stream(lambda: dispatcher, idle=0.05).run(stop, wake))
    await _until(lambda: _all(store, "running", 3), "all three claimed")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with store.read() as conn:
        rows = (await conn.execute(select(outbox.c.status, outbox.c.lease_until))).all()
    assert [(r.status, r.lease_until) for r in rows] == [("pending", None)] * 3
