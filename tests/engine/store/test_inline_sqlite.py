"""SQLite runs inline on the loop: what that must still guarantee."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.errors import StoreError
from engine.store.store import WAL_BOUND_PAGES, Store


async def test_a_failed_savepoint_rolls_back_only_its_own_work(tmp_path: Path) -> None:
    """Intake runs each event of a group in a savepoint; one failing must not undo the rest
    nor commit early (the sqlite3 module's implicit transactions got this wrong)."""
    store = await Store.open(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        async with store.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        async with store.transaction() as conn:
            async with conn.begin_nested():
                await conn.execute(text("INSERT INTO t VALUES (1)"))
            with pytest.raises(Exception, match="UNIQUE"):
                async with conn.begin_nested():
                    await conn.execute(text("INSERT INTO t VALUES (2)"))
                    await conn.execute(text("INSERT INTO t VALUES (1)"))
            # not committed yet: another connection sees nothing of this transaction
            outside = sqlite3.connect(tmp_path / "n.db")
            assert outside.execute("SELECT count(*) FROM t").fetchone() == (0,)
            outside.close()
        async with store.read() as conn:
            rows = (await conn.execute(text("SELECT x FROM t"))).scalars().all()
        assert rows == [1]
    finally:
        await store.close()


async def test_a_writer_in_another_process_is_waited_for_not_an_error(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE takes the write lock up front: while another connection (a CLI
    command) holds it, our transaction waits for it instead of failing with "locked"."""
    path = tmp_path / "n.db"
    store = await Store.open(f"sqlite:///{path}")
    try:
        async with store.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        # the other writer commits from a thread while our transaction is waiting for it
        releaser = threading.Timer(0.2, other.execute, args=("COMMIT",))
        releaser.start()
        async with store.transaction() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        releaser.join()
        other.close()
        async with store.read() as conn:
            rows = (await conn.execute(text("SELECT x FROM t ORDER BY x"))).scalars().all()
        assert rows == [1, 2]
    finally:
        await store.close()


async def test_the_wal_is_checkpointed_off_the_loop(tmp_path: Path) -> None:
    """The store runs passive checkpoints (the only fsyncs) on a worker thread; SQLite's own
    automatic checkpoint stays on at a high mark, so the WAL stays bounded under load."""
    path = tmp_path / "n.db"
    store = await Store.open(f"sqlite:///{path}")
    try:
        async with store.read() as conn:
            mark = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
        assert mark == WAL_BOUND_PAGES
        async with store.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (x BLOB)"))
        commits = Store.CHECKPOINT_EVERY * 8
        for _ in range(commits):
            async with store.transaction() as conn:
                await conn.execute(text("INSERT INTO t VALUES (zeroblob(4096))"))
            await asyncio.sleep(0)  # the daemon yields between groups; so does this loop
        assert store._checkpoint is not None
        busy, _, _ = await store._checkpoint  # it ran on its thread and was not blocked
        assert busy == 0
        written = os.path.getsize(f"{path}-wal") // 4096
        async with store.read() as conn:
            frames = (await conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))).all()[0][1]
        # each commit wrote at least two 4 KiB pages: far more than the bound passed through
        assert commits * 2 > WAL_BOUND_PAGES
        assert frames <= WAL_BOUND_PAGES + 8 and written <= WAL_BOUND_PAGES + 64
    finally:
        await store.close()


async def test_an_in_memory_sqlite_store_is_refused_with_a_reason() -> None:
    with pytest.raises(StoreError, match="file path"):
        await Store.open("sqlite:///:memory:")
