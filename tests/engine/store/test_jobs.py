"""Jobs seen in events: read when unchanged, so concurrent intakes never queue on their rows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from engine.store import queries
from engine.store.store import Store
from engine.store.tables import jobs
from tests.engine.conftest import START

JOB = {"id": 501, "title": "Data Engineer", "status": "open", "department": "Data"}


async def _updated_at(store: Store) -> object:
    async with store.read() as conn:
        return (await conn.execute(select(jobs.c.updated_at))).scalar_one()


async def test_an_unchanged_job_is_read_not_rewritten_until_the_refresh(store: Store) -> None:
    async with store.transaction() as conn:
        await queries.save_job(conn, JOB, START)
    async with store.transaction() as conn:
        await queries.save_job(conn, dict(JOB), START + timedelta(minutes=5))
    assert await _updated_at(store) == START  # the same job: not written again
    later = START + queries.JOB_REFRESH + timedelta(seconds=1)
    async with store.transaction() as conn:
        await queries.save_job(conn, dict(JOB), later)
    assert await _updated_at(store) == later  # "recently seen" stays roughly true
    changed = {**JOB, "status": "closed"}
    async with store.transaction() as conn:
        await queries.save_job(conn, changed, later + timedelta(minutes=1))
    async with store.read() as conn:
        row = (await conn.execute(select(jobs.c.status, jobs.c.job))).one()
    assert row.status == "closed" and row.job == changed


async def test_two_processes_intakes_naming_the_same_job_do_not_wait_for_each_other(
    store: Store,
) -> None:
    """Two transactions (as two daemons on PostgreSQL) both saving the same unchanged job:
    the second must not wait for the first's commit (it used to wait on the row lock, and two
    such transactions touching two jobs in opposite order deadlocked)."""
    async with store.transaction() as conn:
        await queries.save_job(conn, JOB, START)
    if store.dialect != "postgresql":
        return  # SQLite has one writer by design; the read-only path is shown above
    async with store.engine.begin() as first:
        await queries.save_job(first, dict(JOB), START + timedelta(minutes=1))
        async with store.engine.begin() as second:  # the first is still open
            await asyncio.wait_for(
                queries.save_job(second, dict(JOB), START + timedelta(minutes=1)), timeout=5
            )
