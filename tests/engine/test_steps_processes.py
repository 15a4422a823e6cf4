"""Several real engine processes on one PostgreSQL: each step fires exactly once, even when one
of them is killed with SIGKILL in the middle of a batch.

The workers are ``tests/engine/step_worker.py`` subprocesses: a Runtime as the daemon builds it,
on the wall clock, running ``run_due`` until nothing is due. What they did is read back from
the database (step statuses, outbox rows and their idempotency keys) and from what each
worker says it fired. PostgreSQL only; an unreachable server is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from engine.clock import SystemClock
from engine.config.load import ConfigSet, load_config
from engine.sequences import Sequencer
from engine.steps import step_key
from engine.store.store import Store
from engine.store.tables import enrollment_steps, enrollments, outbox
from tests.conftest import REPO
from tests.engine.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres

CONFIG = """\
version: 1
rules:
  - id: enrol
    description: every applicant gets the ping
    trigger: ats.application.created
    actions:
      - {action: sequence.enroll, params: {sequence: bulk}}
sequences:
  - id: bulk
    description: one step, due at once
    category: transactional
    steps:
      - id: ping
        at: 0d
        do: {action: crm.send_email, params: {template: note}, fields: {to: candidate.email}}
templates:
  - {id: note, subject: "A note", crm_email_id: "200001", category: transactional}
"""
TIMEOUT = 60


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[tuple[Store, str, Path, ConfigSet]]:
    """A store in its own schema, the URL a worker opens it with, and the config directory."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        store = await Store.open(POSTGRES_URL, schema=schema)
        folder = tmp_path / "config"
        folder.mkdir()
        (folder / "config.yaml").write_text(CONFIG)
        loaded = load_config([folder])
        assert loaded.config is not None, [d.format_text() for d in loaded.errors]
        try:
            yield store, f"{POSTGRES_URL}?search_path={schema}", folder, loaded.config
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def seed(store: Store, config: ConfigSet, count: int) -> None:
    """``count`` enrolments, each with its one step due now, in one transaction."""
    sequencer = Sequencer(config, SystemClock())
    now = datetime.now(UTC)
    async with store.transaction() as conn:
        for n in range(count):
            email = f"c{n}@example.com"
            data = {"candidate": {"id": f"c{n}", "email": email}}
            outcome = await sequencer.enroll(conn, "bulk", None, data, f"c{n}", email, now)
            assert outcome == "enrolled (1 step(s))"


class Worker:
    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.fired_batches: list[int] = []

    @classmethod
    async def start(cls, name: str, url: str, config: Path, *flags: str) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.engine.step_worker",
            url,
            str(config),
            *flags,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(name, process)

    async def line(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            raw = await self.process.stdout.readline()
        if not raw:
            assert self.process.stderr is not None
            error = (await self.process.stderr.read()).decode()
            raise AssertionError(f"worker {self.name} exited early:\n{error[-3000:]}")
        text = raw.decode().strip()
        if text.startswith("batch "):
            self.fired_batches.append(int(text.split()[1]))
        return text

    async def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()

    async def finish(self) -> int:
        """Read until ``done N``; returns N (the steps this worker fired)."""
        while not (text := await self.line()).startswith("done "):
            pass
        async with asyncio.timeout(TIMEOUT):
            _, error = await self.process.communicate()
        assert self.process.returncode == 0, error.decode()[-3000:]
        fired = int(text.split()[1])
        assert fired == sum(self.fired_batches)
        return fired

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        async with asyncio.timeout(TIMEOUT):
            await self.process.communicate()
        assert self.process.returncode == -signal.SIGKILL


async def fired_state(store: Store) -> tuple[dict[str, int], int, int, set[str]]:
    """(step counts by status, outbox rows, distinct keys, the keys) of the ``bulk`` sequence."""
    async with store.read() as conn:
        by_status = {
            str(status): int(count)
            for status, count in await conn.execute(
                select(enrollment_steps.c.status, func.count()).group_by(enrollment_steps.c.status)
            )
        }
        keys = list(
            (
                await conn.execute(
                    select(outbox.c.idempotency_key).where(outbox.c.trigger == "sequence:bulk")
                )
            ).scalars()
        )
    return by_status, len(keys), len(set(keys)), set(keys)


async def expected_keys(store: Store) -> set[str]:
    async with store.read() as conn:
        rows = (await conn.execute(select(enrollments.c.id, enrollments.c.started_at))).mappings()
        return {step_key(row, "ping", 0) for row in rows}


async def test_two_engine_processes_never_fire_a_step_twice(
    postgres: tuple[Store, str, Path, ConfigSet],
) -> None:
    store, url, folder, config = postgres
    count = 500
    await seed(store, config, count)
    workers = [
        await Worker.start(name, url, folder, "--batch", "10", "--wait-for-go")
        for name in ("A", "B")
    ]
    for worker in workers:
        assert await worker.line() == "ready"
    for worker in workers:  # both start firing at the same moment
        await worker.go()
    fired = await asyncio.gather(*(worker.finish() for worker in workers))
    print(f"worker A fired {fired[0]} steps, worker B fired {fired[1]}")

    assert sum(fired) == count  # no step fired by both
    assert all(n > 0 for n in fired), "one worker did everything: the test proved nothing"
    by_status, rows, distinct, keys = await fired_state(store)
    assert by_status == {"fired": count}
    assert rows == distinct == count
    assert keys == await expected_keys(store)
    async with store.read() as conn:
        statuses = (
            await conn.execute(select(enrollments.c.status, func.count()).group_by("status"))
        ).all()
    assert [tuple(s) for s in statuses] == [("completed", count)]


async def test_sigkill_mid_batch_loses_no_step_and_fires_none_twice(
    postgres: tuple[Store, str, Path, ConfigSet],
) -> None:
    store, url, folder, config = postgres
    count, batch = 1000, 100
    await seed(store, config, count)
    victim = await Worker.start("victim", url, folder, "--batch", str(batch))
    assert await victim.line() == "ready"
    for _ in range(3):  # three batches committed; the fourth is in flight
        assert (await victim.line()).startswith("batch ")
    await victim.kill()

    by_status, rows, distinct, _ = await fired_state(store)
    fired_before = by_status.get("fired", 0)
    print(f"killed after {fired_before} of {count} steps were fired")
    assert 3 * batch <= fired_before < count, "the kill did not land mid-run"
    assert fired_before % batch == 0  # a batch commits whole or not at all
    assert by_status == {"fired": fired_before, "pending": count - fired_before}
    assert rows == distinct == fired_before  # every fired step has its action, and only they

    survivor = await Worker.start("restart", url, folder, "--batch", str(batch))
    fired_after = await survivor.finish()
    print(f"the restarted worker fired {fired_after}")
    assert fired_after == count - fired_before  # nothing fired again, nothing left behind
    by_status, rows, distinct, keys = await fired_state(store)
    assert by_status == {"fired": count}
    assert rows == distinct == count
    assert keys == await expected_keys(store)
