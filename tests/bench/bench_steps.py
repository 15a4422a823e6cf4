"""Benchmark: a large ``enrollment_steps`` table on SQLite and on PostgreSQL.

Issue targets, at 1,000,000 pending steps: enrol >= 20,000 steps/s, daemon RSS < 300 MB,
ready after a restart < 2 s, firing lag p99 < 1.5 s with steps coming due at 1,000/s, and
cancelling 10,000 pending steps in < 1 s.

Per backend (a SQLite file in a temporary directory; PostgreSQL in a fresh schema, dropped
afterwards), with one 4-step ``crm.send_email`` sequence:

* **enrol (Sequencer.enroll)**: ``SAMPLE_ENROLMENTS`` enrolments through the real
  ``Sequencer.enroll``, one transaction each (as each enrolment commits with the event that
  caused it), one at a time;
* **enrol (bulk)**: the rest of the ``--steps`` pending steps as enrolments plus steps in
  multi-row INSERTs (SQLAlchemy "insertmanyvalues" for the enrolments' ids, ``executemany``
  for the steps), ``BULK_TRANSACTION`` enrolments per transaction -- the way a backfill
  enrols in bulk. Due times spread over the next ~3 weeks; ``OVERDUE_ENROLMENTS`` of them are
  a few minutes overdue so the restarted daemon has work. On PostgreSQL the load ends with
  ``ANALYZE`` of the two tables (timed in);
* **store size**: the SQLite file plus its WAL; PostgreSQL ``pg_total_relation_size`` of
  ``enrollments`` plus ``enrollment_steps`` (indexes and TOAST included);
* **restart**: a fresh subprocess opens the store (with the migrations check), builds the
  runtime with ``Runtime.build`` (in-memory vendor ports), and runs ``StepRunner.run_due``
  once with the default batch (50): "ready" is the open plus that first tick, both from inside
  the child and from the parent's spawn (interpreter start-up and imports included). The child
  then drains the overdue steps with batch ``LAG_BATCH`` and reports its peak RSS
  (``VmHWM``);
* **firing lag**: ``LAG_RATE`` steps/s come due for ``LAG_SECONDS`` s of real time
  (``due_at = start + i / LAG_RATE``), added to the loaded table; a loop calls ``run_tick``
  (batch ``LAG_BATCH``, in transactions of ``TICK_CHUNK``) on a fixed 1 s grid, skipping a
  tick that is still running -- what the ``Timekeeper``'s APScheduler interval job does
  (``max_instances=1, coalesce``). The lag of a step is the wall clock when its tick ended
  (its transaction had committed, the outbox row is visible) minus its ``due_at``; the system
  clock is used throughout;
* **cancel 10,000**: ``Sequencer.exit(conn, '*', candidate)`` for 2,500 candidates with 4
  pending steps each, in one transaction; for comparison, the same for another 2,500 as two
  set-based UPDATEs (``... WHERE candidate_id IN (...)`` / ``... WHERE enrollment_id IN
  (...)``), which the engine does not have (yet).

The targets apply at 1,000,000 steps: below that size the RSS and ready rows carry no verdict
(they grow with the table); rates, lag and cancel do.

``python -m tests.bench`` runs ``NURTURE_BENCH_STEPS`` steps (default ``DEFAULT_STEPS``, so that
``make bench`` stays short); ``python -m tests.bench.bench_steps --steps 1000000`` is the full
run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select, text

from engine.clock import ManualClock, SystemClock
from engine.config.load import ConfigSet, load_config
from engine.runtime import Runtime
from engine.sequences import Sequencer
from engine.store.store import Store
from engine.store.tables import enrollment_steps, enrollments
from engine.testing import Recorder

from .common import Options, Row, memory_bytes, percentile

NAME = "steps"
STEPS = 1_000_000
"""The issue's size; the default of ``python -m tests.bench.bench_steps``."""
DEFAULT_STEPS = 100_000
"""The default of ``python -m tests.bench`` (``make bench``, about 2.5 minutes for both
backends; the size the issue's first measurement used); override with STEPS_VARIABLE."""
STEPS_VARIABLE = "NURTURE_BENCH_STEPS"
BACKENDS_VARIABLE = "NURTURE_BENCH_STEPS_BACKENDS"
"""Comma-separated backends for ``python -m tests.bench`` (default: both)."""
BACKENDS = ("sqlite", "postgresql")
POSTGRES_URL = os.environ.get("NURTURE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

STEPS_PER_ENROLMENT = 4
SAMPLE_ENROLMENTS = 2_500
BULK_TRANSACTION = 25_000  # enrolments (100,000 steps) per bulk transaction
BULK_STATEMENT = 5_000  # rows per executemany call inside it
OVERDUE_ENROLMENTS = 500  # 2,000 steps due a few minutes ago, for the restarted daemon
DEFAULT_BATCH = 50  # Runtime.build's step_batch
LAG_RATE = 1_000
LAG_SECONDS = 10
LAG_BATCH = 2_000
LAG_LEAD = 3.0  # seconds between writing the lag steps and the first coming due
TICK = 1.0  # the Timekeeper's step_interval
CANCEL_STEPS = 10_000

TARGET_ENROL_STEPS_PER_SECOND = 20_000
MANY_ENROLMENTS = 25_000  # 100,000 steps through the engine's bulk enrolment
TARGET_RSS_BYTES = 300 * 1024 * 1024
TARGET_READY_SECONDS = 2.0
TARGET_LAG_P99_SECONDS = 1.5
TARGET_CANCEL_SECONDS = 1.0

SEQUENCE_ID = "bench-drip"
OFFSETS = (timedelta(days=1), timedelta(days=3), timedelta(days=7), timedelta(days=14))
CONFIG = """\
version: 1
sequences:
  - id: bench-drip
    description: four timed emails, the shape of the shipped nurture sequences
    category: transactional
    allow_concurrent: true
    misfire: {policy: send_late, grace: 30d}
    steps:
      - id: day-1
        at: 1d
        do: &touch
          action: crm.send_email
          params: {template: bench-touch}
          fields: {to: candidate.email, first_name: candidate.first_name,
                   role: application.job.title}
      - {id: day-3, at: 3d, do: *touch}
      - {id: day-7, at: 7d, do: *touch}
      - {id: day-14, at: 14d, do: *touch}
templates:
  - id: bench-touch
    subject: "Hi {first_name}, about {role}"
    crm_email_id: "200001"
    category: transactional
    variables: [first_name, role]
"""
STEP_IDS = ("day-1", "day-3", "day-7", "day-14")


class BenchmarkError(AssertionError):
    """The benchmark's own set-up is wrong, or the engine did not do the work measured."""


# -- inputs ---------------------------------------------------------------------------------


def load(folder: Path) -> ConfigSet:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(CONFIG)
    result = load_config([folder])
    if result.errors or result.config is None:
        raise BenchmarkError("\n".join(d.format_text() for d in result.errors))
    return result.config


def event_data(candidate_id: str) -> dict[str, Any]:
    return {
        "candidate": {
            "id": candidate_id,
            "first_name": "Maya",
            "last_name": "Lopez",
            "email": f"{candidate_id}@mail.example",
        },
        "application": {
            "id": f"app-{candidate_id}",
            "status": "active",
            "stage": {"name": "Application Review"},
            "job": {"id": "j1", "title": "Backend Engineer"},
        },
    }


def enrolment_row(candidate_id: str, now: datetime) -> dict[str, Any]:
    """What ``Sequencer.enroll`` writes for this sequence (no key, transactional)."""
    data = event_data(candidate_id)
    return {
        "sequence_id": SEQUENCE_ID,
        "candidate_id": candidate_id,
        "key": "",
        "email": data["candidate"]["email"],
        "category": "transactional",
        "exclusive": False,
        "status": "active",
        "reason": None,
        "context": data,
        "started_at": now,
    }


# -- the store ------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str
    schema: str | None
    folder: Path
    store: Store
    close: Callable[[], Awaitable[None]]


async def open_backend(name: str, folder: Path) -> Backend:
    """The store and an async cleanup (PostgreSQL: a fresh schema, dropped afterwards)."""
    if name == "sqlite":
        url = f"sqlite:///{folder / 'nurture.db'}"
        store = await Store.open(url)
        return Backend(name, url, None, folder, store, store.close)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        store = await Store.open(POSTGRES_URL, schema=schema)
    except BaseException:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
        raise

    async def close_postgres() -> None:
        try:
            await store.close()
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    return Backend(name, POSTGRES_URL, schema, folder, store, close_postgres)


async def store_size(backend: Backend) -> tuple[int, str]:
    if backend.name == "sqlite":
        database = backend.folder / "nurture.db"
        wal = database.with_name(database.name + "-wal")
        main = database.stat().st_size
        log = wal.stat().st_size if wal.exists() else 0
        return main + log, f"file {main / 2**20:,.0f} MB + WAL {log / 2**20:,.0f} MB"
    async with backend.store.read() as conn:
        steps = (
            await conn.execute(text("SELECT pg_total_relation_size('enrollment_steps')"))
        ).scalar_one()
        enrols = (
            await conn.execute(text("SELECT pg_total_relation_size('enrollments')"))
        ).scalar_one()
    return int(steps) + int(enrols), (
        f"enrollment_steps {steps / 2**20:,.0f} MB + enrollments {enrols / 2**20:,.0f} MB"
    )


# -- enrolling ------------------------------------------------------------------------------


async def enrol_sequencer(
    store: Store, config: ConfigSet, count: int, now: datetime
) -> tuple[float, int]:
    """``count`` enrolments through ``Sequencer.enroll``, one transaction each."""
    sequencer = Sequencer(config, ManualClock(now))
    started = time.perf_counter()
    for n in range(count):
        candidate_id = f"s-{n}"
        data = event_data(candidate_id)
        async with store.transaction() as conn:
            outcome = await sequencer.enroll(
                conn,
                SEQUENCE_ID,
                None,
                data,
                candidate_id,
                data["candidate"]["email"],
                now,
            )
        if outcome != f"enrolled ({STEPS_PER_ENROLMENT} step(s))":
            raise BenchmarkError(f"Sequencer.enroll said {outcome!r}")
    return time.perf_counter() - started, count * STEPS_PER_ENROLMENT


async def enrol_many(
    store: Store, config: ConfigSet, count: int, now: datetime, per_transaction: int = 5_000
) -> tuple[float, int]:
    """``count`` enrolments through ``Sequencer.enroll_many`` (the engine's backfill path)."""
    sequencer = Sequencer(config, ManualClock(now))
    started = time.perf_counter()
    enrolled = 0
    for first in range(0, count, per_transaction):
        batch = [
            (f"m-{n}", f"m-{n}@mail.example", event_data(f"m-{n}"))
            for n in range(first, min(first + per_transaction, count))
        ]
        async with store.transaction() as conn:
            enrolled += await sequencer.enroll_many(conn, SEQUENCE_ID, batch, now)
    if enrolled != count:
        raise BenchmarkError(f"Sequencer.enroll_many enrolled {enrolled} of {count}")
    return time.perf_counter() - started, count * STEPS_PER_ENROLMENT


DueTimes = Callable[[int], Sequence[datetime]]
"""The due times of the steps of the n-th enrolment of a bulk load."""


async def enrol_bulk(
    store: Store,
    prefix: str,
    count: int,
    now: datetime,
    due_times: DueTimes,
    *,
    per_transaction: int = BULK_TRANSACTION,
) -> dict[tuple[int, str], datetime]:
    """``count`` enrolments of 4 steps in multi-row INSERTs; returns each step's due time."""
    due: dict[tuple[int, str], datetime] = {}
    insert_enrolment = enrollments.insert().returning(
        enrollments.c.id, sort_by_parameter_order=True
    )
    for first in range(0, count, per_transaction):
        last = min(first + per_transaction, count)
        async with store.transaction() as conn:
            for chunk in range(first, last, BULK_STATEMENT):
                numbers = range(chunk, min(chunk + BULK_STATEMENT, last))
                rows = [enrolment_row(f"{prefix}-{n}", now) for n in numbers]
                ids = (await conn.execute(insert_enrolment, rows)).scalars().all()
                if len(ids) != len(rows):
                    raise BenchmarkError(f"{len(rows)} enrolments inserted, {len(ids)} ids back")
                steps: list[dict[str, Any]] = []
                for n, enrollment_id in zip(numbers, ids, strict=True):
                    for step_id, at in zip(STEP_IDS, due_times(n), strict=True):
                        due[(int(enrollment_id), step_id)] = at
                        steps.append(
                            {
                                "enrollment_id": enrollment_id,
                                "step_id": step_id,
                                "occurrence": 0,
                                "due_at": at,
                                "status": "pending",
                            }
                        )
                await conn.execute(enrollment_steps.insert(), steps)
    return due


def background_due(now: datetime, count: int, overdue: int) -> DueTimes:
    """The sequence's offsets from enrolment times spread over a week; the first ``overdue``
    enrolments are a few minutes overdue (inside the 30-day grace)."""
    spread = timedelta(days=7).total_seconds()

    def times(n: int) -> Sequence[datetime]:
        if n < overdue:
            late = now - timedelta(minutes=10) + timedelta(milliseconds=n)
            return [late] * STEPS_PER_ENROLMENT
        start = now + timedelta(seconds=spread * n / max(count, 1))
        return [start + offset for offset in OFFSETS]

    return times


# -- the restarted daemon (a child process) -------------------------------------------------


@dataclass(frozen=True)
class Restart:
    open_seconds: float
    first_tick_seconds: float
    first_fired: int
    spawn_to_ready: float
    statuses: dict[str, int]
    drain_seconds: float
    rss_after_imports: int
    peak_rss: int
    total_seconds: float


async def _child(url: str, schema: str | None, config_folder: str, drain_batch: int) -> None:
    after_imports = memory_bytes("VmRSS")
    config = load(Path(config_folder))
    clock = SystemClock()
    recorder = Recorder(ManualClock(clock.now()))
    started = time.perf_counter()
    store = await Store.open(url, schema=schema)
    opened = time.perf_counter()
    try:
        runtime = Runtime.build(
            store, config, clock, recorder, ats=recorder, notifier=recorder, step_batch=50
        )
        first = await runtime.steps.run_due()
        ready = time.perf_counter()
        ready_wall = time.time()
        runtime.steps.batch = drain_batch
        statuses: dict[str, int] = {}
        batch = first
        while batch:
            for outcome in batch:
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
            batch = await runtime.steps.run_due()
        done = time.perf_counter()
    finally:
        await store.close()
    print(
        json.dumps(
            {
                "open_seconds": opened - started,
                "first_tick_seconds": ready - opened,
                "first_fired": len(first),
                "ready_wall": ready_wall,
                "statuses": statuses,
                "drain_seconds": done - ready,
                "rss_after_imports": after_imports,
                "peak_rss": memory_bytes("VmHWM"),
            }
        )
    )


def restart(backend: Backend, config_folder: Path, drain_batch: int = LAG_BATCH) -> Restart:
    command = [
        sys.executable,
        "-m",
        "tests.bench.bench_steps",
        "--child",
        backend.url,
        backend.schema or "",
        str(config_folder),
        str(drain_batch),
    ]
    spawned = time.time()
    started = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    total = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(f"the restarted daemon failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Restart(
        open_seconds=report["open_seconds"],
        first_tick_seconds=report["first_tick_seconds"],
        first_fired=report["first_fired"],
        spawn_to_ready=report["ready_wall"] - spawned,
        statuses=report["statuses"],
        drain_seconds=report["drain_seconds"],
        rss_after_imports=report["rss_after_imports"],
        peak_rss=report["peak_rss"],
        total_seconds=total,
    )


# -- firing lag -----------------------------------------------------------------------------


@dataclass
class Lag:
    steps: int
    lags: list[float] = field(default_factory=list)
    other: dict[str, int] = field(default_factory=dict)
    ticks: list[tuple[int, float]] = field(default_factory=list)  # (steps, seconds) per tick
    skipped_ticks: int = 0
    late_start: float = 0.0  # > 0: the steps were written after the first came due


async def firing_lag(
    store: Store, config: ConfigSet, seconds: float, *, rate: int = LAG_RATE
) -> Lag:
    clock = SystemClock()
    count = max(STEPS_PER_ENROLMENT, round(rate * seconds) // STEPS_PER_ENROLMENT * 4)
    base = clock.now() + timedelta(seconds=LAG_LEAD)

    def times(n: int) -> Sequence[datetime]:
        return [
            base + timedelta(seconds=(n * STEPS_PER_ENROLMENT + k) / rate)
            for k in range(STEPS_PER_ENROLMENT)
        ]

    due = await enrol_bulk(store, "lag", count // STEPS_PER_ENROLMENT, clock.now(), times)
    result = Lag(steps=len(due), late_start=(clock.now() - base).total_seconds())
    recorder = Recorder(ManualClock(clock.now()))
    runtime = Runtime.build(
        store, config, clock, recorder, ats=recorder, notifier=recorder, step_batch=LAG_BATCH
    )
    deadline = time.monotonic() + LAG_LEAD + seconds + 30
    grid = time.monotonic()
    remaining = set(due)
    while remaining and time.monotonic() < deadline:
        started = time.monotonic()
        outcomes = await runtime.steps.run_tick()  # as the Timekeeper's job runs it
        committed = clock.now()
        result.ticks.append((len(outcomes), time.monotonic() - started))
        for outcome in outcomes:
            key = (outcome.enrollment_id, outcome.step_id)
            if key not in remaining:
                result.other["not a lag step"] = result.other.get("not a lag step", 0) + 1
                continue
            remaining.discard(key)
            if outcome.status == "fired":
                result.lags.append((committed - due[key]).total_seconds())
            else:
                result.other[outcome.status] = result.other.get(outcome.status, 0) + 1
        grid += TICK
        now = time.monotonic()
        while grid <= now:  # a tick that came while this one ran is skipped (max_instances=1)
            grid += TICK
            result.skipped_ticks += 1
        await asyncio.sleep(grid - now)
    if remaining:
        result.other["never fired"] = len(remaining)
    return result


# -- cancelling -----------------------------------------------------------------------------


async def _pending_of(store: Store, candidates: Sequence[str]) -> int:
    async with store.read() as conn:
        query = (
            select(func.count())
            .select_from(
                enrollment_steps.join(
                    enrollments, enrollments.c.id == enrollment_steps.c.enrollment_id
                )
            )
            .where(
                enrollments.c.candidate_id.in_(candidates),
                enrollment_steps.c.status == "pending",
            )
        )
        return int((await conn.execute(query)).scalar_one())


async def cancel_exit(
    store: Store, config: ConfigSet, candidates: Sequence[str]
) -> tuple[float, int]:
    """``Sequencer.exit('*')`` for each candidate, all in one transaction."""
    clock = SystemClock()
    sequencer = Sequencer(config, clock)
    before = await _pending_of(store, candidates)
    started = time.perf_counter()
    async with store.transaction() as conn:
        now = clock.now()
        for candidate_id in candidates:
            await sequencer.exit(conn, "*", candidate_id, "bench: cancel", now)
    seconds = time.perf_counter() - started
    if await _pending_of(store, candidates):
        raise BenchmarkError("Sequencer.exit left pending steps")
    return seconds, before


async def cancel_set_based(
    store: Store, config: ConfigSet, candidates: Sequence[str]
) -> tuple[float, int]:
    """``Sequencer.exit_many``: the engine's bulk path (three set-based statements)."""
    clock = SystemClock()
    sequencer = Sequencer(config, clock)
    before = await _pending_of(store, candidates)
    started = time.perf_counter()
    async with store.transaction() as conn:
        await sequencer.exit_many(conn, "*", list(candidates), "bench: cancel", clock.now())
    seconds = time.perf_counter() - started
    if await _pending_of(store, candidates):
        raise BenchmarkError("Sequencer.exit_many left pending steps")
    return seconds, before


# -- one backend ----------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    steps: int = 0  # pending steps loaded (sample + bulk)
    sample_steps: int = 0
    sample_seconds: float = 0.0
    many_steps: int = 0
    many_seconds: float = 0.0
    bulk_steps: int = 0
    overdue_steps: int = 0
    bulk_seconds: float = 0.0
    analyze_seconds: float = 0.0
    size_bytes: int = 0
    size_detail: str = ""
    restart: Restart | None = None
    lag: Lag | None = None
    cancel_steps: int = 0
    cancel_seconds: float = 0.0
    cancel_set_steps: int = 0
    cancel_set_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load at start and at end
    error: str | None = None

    @property
    def sample_rate(self) -> float:
        return self.sample_steps / self.sample_seconds if self.sample_seconds else 0.0

    @property
    def many_rate(self) -> float:
        return self.many_steps / self.many_seconds if self.many_seconds else 0.0

    @property
    def bulk_rate(self) -> float:
        seconds = self.bulk_seconds + self.analyze_seconds
        return self.bulk_steps / seconds if seconds else 0.0


async def measure_backend(
    backend_name: str,
    steps: int,
    *,
    lag_seconds: float = LAG_SECONDS,
    sample: int = SAMPLE_ENROLMENTS,
    cancel: int = CANCEL_STEPS,
) -> Result:
    result = Result(backend_name)
    enrolments = max(steps // STEPS_PER_ENROLMENT, 2)
    sample = min(sample, enrolments // 4)
    bulk = enrolments - sample
    overdue = min(OVERDUE_ENROLMENTS, bulk // 10)
    cancel_enrolments = min(cancel // STEPS_PER_ENROLMENT, (bulk - overdue) // 2)
    start_load = _load_average()
    with tempfile.TemporaryDirectory(prefix="nurture-bench-steps-") as tmp:
        folder = Path(tmp)
        config = load(folder / "config")
        backend = await open_backend(backend_name, folder)
        clock = SystemClock()
        try:
            mark = time.perf_counter()
            now = clock.now()
            result.sample_seconds, result.sample_steps = await enrol_sequencer(
                backend.store, config, sample, now
            )
            result.many_seconds, result.many_steps = await enrol_many(
                backend.store, config, min(MANY_ENROLMENTS, max(bulk // 4, 1)), now
            )
            started = time.perf_counter()
            await enrol_bulk(backend.store, "b", bulk, now, background_due(now, bulk, overdue))
            result.bulk_seconds = time.perf_counter() - started
            result.bulk_steps = bulk * STEPS_PER_ENROLMENT
            result.overdue_steps = overdue * STEPS_PER_ENROLMENT
            if backend.name == "postgresql":
                started = time.perf_counter()
                async with backend.store.transaction() as conn:
                    await conn.execute(text("ANALYZE enrollments"))
                    await conn.execute(text("ANALYZE enrollment_steps"))
                result.analyze_seconds = time.perf_counter() - started
            result.steps = result.sample_steps + result.bulk_steps
            result.size_bytes, result.size_detail = await store_size(backend)
            result.phases["load"] = time.perf_counter() - mark

            mark = time.perf_counter()
            result.restart = restart(backend, folder / "config")
            result.phases["restart"] = time.perf_counter() - mark

            mark = time.perf_counter()
            result.lag = await firing_lag(backend.store, config, lag_seconds)
            result.phases["lag"] = time.perf_counter() - mark

            mark = time.perf_counter()
            # bulk enrolments after the overdue ones: 4 pending steps each, due in the future
            first = [f"b-{overdue + n}" for n in range(cancel_enrolments)]
            second = [f"b-{overdue + cancel_enrolments + n}" for n in range(cancel_enrolments)]
            result.cancel_seconds, result.cancel_steps = await cancel_exit(
                backend.store, config, first
            )
            result.cancel_set_seconds, result.cancel_set_steps = await cancel_set_based(
                backend.store, config, second
            )
            result.phases["cancel"] = time.perf_counter() - mark
        except (BenchmarkError, OSError, asyncpg.PostgresError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            await backend.close()
    result.load_average = (start_load, _load_average())
    return result


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


async def measure(
    steps: int = STEPS,
    *,
    backends: Sequence[str] = BACKENDS,
    lag_seconds: float = LAG_SECONDS,
    sample: int = SAMPLE_ENROLMENTS,
    cancel: int = CANCEL_STEPS,
) -> list[Result]:
    if steps < 100:
        raise ValueError("steps must be at least 100")
    return [
        await measure_backend(b, steps, lag_seconds=lag_seconds, sample=sample, cancel=cancel)
        for b in backends
    ]


# -- the table ------------------------------------------------------------------------------


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def _mb(value: int) -> str:
    return f"{value / 2**20:,.0f} MB"


def rows(results: Sequence[Result]) -> list[Row]:
    out: list[Row] = []
    for r in results:
        name = f"{NAME}: {r.backend}"
        full = r.steps >= STEPS
        size = f"{r.steps:,} pending steps"
        if r.error is not None:
            out.append(Row(name, "error", r.error, "no error", "MISS"))
        out.append(Row(name, "loaded", size + ("" if full else " (issue: 1,000,000)")))
        out.append(
            Row(
                name,
                "enrol: Sequencer.enroll, 1 tx per enrolment",
                f"{r.sample_rate:,.0f} steps/s ({r.sample_steps // STEPS_PER_ENROLMENT:,} "
                f"enrolments, {r.sample_seconds:.1f} s)",
            )
        )
        out.append(
            Row(
                name,
                "enrol: Sequencer.enroll_many, 5,000 per tx",
                f"{r.many_rate:,.0f} steps/s ({r.many_steps:,} steps, {r.many_seconds:.1f} s)",
                f">= {TARGET_ENROL_STEPS_PER_SECOND:,} steps/s",
                _verdict(r.many_rate >= TARGET_ENROL_STEPS_PER_SECOND),
            )
        )
        analyze = f" incl. ANALYZE {r.analyze_seconds:.1f} s" if r.analyze_seconds else ""
        out.append(
            Row(
                name,
                f"setup: raw multi-row INSERT, {BULK_TRANSACTION * STEPS_PER_ENROLMENT:,}/tx",
                f"{r.bulk_rate:,.0f} steps/s ({r.bulk_steps:,} steps, "
                f"{r.bulk_seconds + r.analyze_seconds:.1f} s{analyze})",
            )
        )
        out.append(Row(name, "store size", f"{_mb(r.size_bytes)} ({r.size_detail})"))
        if r.restart is not None:
            s = r.restart
            drained = ", ".join(f"{k} {v:,}" for k, v in sorted(s.statuses.items())) or "none"
            out.append(
                Row(
                    name,
                    "restart: open + first run_due (batch 50)",
                    f"{s.open_seconds + s.first_tick_seconds:.3f} s (open {s.open_seconds:.3f}"
                    f" + tick {s.first_tick_seconds:.3f}, fired {s.first_fired})",
                    f"< {TARGET_READY_SECONDS:g} s" if full else "",
                    _verdict(s.open_seconds + s.first_tick_seconds < TARGET_READY_SECONDS)
                    if full
                    else "",
                )
            )
            out.append(
                Row(
                    name,
                    "restart: spawn to ready (incl. start-up, imports)",
                    f"{s.spawn_to_ready:.3f} s",
                )
            )
            out.append(
                Row(
                    name,
                    "restart: daemon peak RSS",
                    f"{_mb(s.peak_rss)} (after imports {_mb(s.rss_after_imports)}; "
                    f"{drained} of {r.overdue_steps:,} overdue steps in "
                    f"{s.drain_seconds:.1f} s)",
                    f"< {_mb(TARGET_RSS_BYTES)}" if full else "",
                    _verdict(s.peak_rss < TARGET_RSS_BYTES) if full else "",
                )
            )
        if r.lag is not None:
            lag = r.lag
            fired = len(lag.lags)
            busiest = max((t for t in lag.ticks), default=(0, 0.0), key=lambda t: t[1])
            p99 = percentile(lag.lags, 0.99)
            problems = ", ".join(f"{k} {v}" for k, v in sorted(lag.other.items()))
            out.append(
                Row(
                    name,
                    f"firing lag at {LAG_RATE:,}/s, batch {LAG_BATCH:,}, 1 s ticks",
                    f"p50 {percentile(lag.lags, 0.5):.3f} s, p99 {p99:.3f} s, "
                    f"max {max(lag.lags, default=float('nan')):.3f} s "
                    f"({fired:,}/{lag.steps:,} fired{', ' + problems if problems else ''})",
                    f"p99 < {TARGET_LAG_P99_SECONDS:g} s",
                    _verdict(fired == lag.steps and p99 < TARGET_LAG_P99_SECONDS),
                )
            )
            out.append(
                Row(
                    name,
                    "firing: slowest tick",
                    f"{busiest[1]:.3f} s for {busiest[0]:,} steps "
                    f"({busiest[1] / max(busiest[0], 1) * 1000:.2f} ms/step; "
                    f"{lag.skipped_ticks} tick(s) skipped)",
                )
            )
        if r.cancel_steps:
            scale = CANCEL_STEPS / r.cancel_steps
            out.append(
                Row(
                    name,
                    f"cancel {r.cancel_steps:,}: Sequencer.exit per candidate (2,500 exits)",
                    f"{r.cancel_seconds:.3f} s",
                )
            )
            out.append(
                Row(
                    name,
                    f"cancel {r.cancel_set_steps:,}: Sequencer.exit_many, 1 tx",
                    f"{r.cancel_set_seconds:.3f} s",
                    f"< {TARGET_CANCEL_SECONDS:g} s"
                    + ("" if r.cancel_set_steps == CANCEL_STEPS else f" (x{scale:.1f})"),
                    _verdict(r.cancel_set_seconds * scale < TARGET_CANCEL_SECONDS),
                )
            )
        if r.phases:
            phases = ", ".join(f"{k} {v:.0f} s" for k, v in r.phases.items())
            out.append(Row(name, "benchmark time", phases))
        out.append(
            Row(
                name,
                "machine load (1-min average, start / end)",
                f"{r.load_average[0]:.2f} / {r.load_average[1]:.2f} on {os.cpu_count()} CPU(s)",
            )
        )
    return out


# -- entry points ---------------------------------------------------------------------------


def _from_environment() -> tuple[int, list[str]]:
    steps = int(os.environ.get(STEPS_VARIABLE) or DEFAULT_STEPS)
    chosen = os.environ.get(BACKENDS_VARIABLE)
    backends = [b.strip() for b in chosen.split(",") if b.strip()] if chosen else list(BACKENDS)
    return steps, backends


def run(options: Options) -> list[Row]:
    """One run per backend (``--runs`` repeats the in-process microbenchmarks, not this)."""
    steps, backends = _from_environment()
    return rows(asyncio.run(measure(steps, backends=backends)))


def main(argv: Sequence[str] | None = None) -> None:
    from .common import render_table

    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--child":
        url, schema, folder, batch = argv[1:5]
        asyncio.run(_child(url, schema or None, folder, int(batch)))
        return
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_steps")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    parser.add_argument("--lag-seconds", type=float, default=LAG_SECONDS)
    parser.add_argument("--sample", type=int, default=SAMPLE_ENROLMENTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = asyncio.run(
        measure(
            args.steps,
            backends=args.backend or BACKENDS,
            lag_seconds=args.lag_seconds,
            sample=args.sample,
        )
    )
    print(render_table(rows(results)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
