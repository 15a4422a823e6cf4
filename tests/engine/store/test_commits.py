"""Large SQLite commits run on a thread of their own (``inline_sqlite.Committer``): SQLite
writes each changed page at COMMIT and releases the GIL meanwhile, so the loop goes on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.store import queries
from engine.store.prepared import raw_sqlite
from engine.store.store import Store

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _event_row(delivery_id: str) -> dict[str, object]:
    return {
        "source": "greenhouse",
        "delivery_id": delivery_id,
        "type": "ats.application.created",
        "subject": None,
        "time": NOW,
        "data": {"n": delivery_id},
        "received_at": NOW,
        "config_digest": "d",
    }


async def _insert(store: Store, prefix: str, rows: int) -> None:
    async with store.transaction() as conn:
        for n in range(rows):
            await queries.insert_event(conn, _event_row(f"{prefix}{n}"))


def _stored(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM inbox").fetchone()[0])
    finally:
        db.close()


async def _trace_commits(store: Store, on_commit: object) -> None:
    """Calls ``on_commit()`` on whichever thread runs a COMMIT of the store's writer."""
    async with store.transaction() as conn:
        raw = raw_sqlite(conn)
        assert raw is not None
        raw.set_trace_callback(lambda sql: on_commit() if sql == "COMMIT" else None)  # type: ignore[operator]


async def test_a_large_commit_runs_off_the_loop_thread_and_a_small_one_on_it(
    tmp_path: Path,
) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    committed_on: list[int] = []
    try:
        await _trace_commits(store, lambda: committed_on.append(threading.get_ident()))
        committed_on.clear()
        await _insert(store, "small", 2)
        await _insert(store, "large", 40)
    finally:
        await store.close()
    loop_thread = threading.get_ident()
    assert len(committed_on) == 2
    assert committed_on[0] == loop_thread
    assert committed_on[1] != loop_thread
    assert _stored(tmp_path / "c.db") == 42


async def test_a_caller_cancelled_mid_commit_waits_for_it_and_the_store_stays_usable(
    tmp_path: Path,
) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    entered, release = threading.Event(), threading.Event()

    def hold_off_loop_commits() -> None:
        if threading.current_thread() is not threading.main_thread():
            entered.set()
            release.wait(10)

    try:
        await _trace_commits(store, hold_off_loop_commits)
        writer = asyncio.create_task(_insert(store, "held", 40))
        for _ in range(500):
            if entered.is_set():
                break
            await asyncio.sleep(0.01)
        assert entered.is_set(), "the large commit never ran off the loop thread"
        writer.cancel()
        await asyncio.sleep(0.05)
        assert not writer.done()  # it waits for the commit under way: the connection is busy
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await writer
        await _insert(store, "after", 2)
    finally:
        release.set()
        await store.close()
    assert _stored(tmp_path / "c.db") == 42  # the held commit went through, and so did the next
