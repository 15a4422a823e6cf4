"""Benchmark: durable intake -> evaluation -> CRM call over loopback HTTP, SQLite and PostgreSQL.

Issue target: at least 1,500 events/s completed on SQLite, with an end-to-end p99 under 50 ms,
at concurrency 8 (the CRM answering after 5 ms). For scale, measured on the issue's machine:
n8n 2.40 completes about 22 events/s (65 tuned) with an end-to-end p50 of 117 ms; a
non-durable 60-line aiohttp script about 2,200 events/s.

The HubSpot simulator (5 ms latency) runs in a process of its own, as a vendor does, and is
called over loopback HTTP; everything else runs in this one process and event loop, as the
engine does in ``nurture run``: the store, a ``Runtime`` built by
``Runtime.build`` with the real handlers and ``HubSpotClient``, its outbox ``Stream`` (what
``Dispatcher.run_forever`` runs) as a background task, and 8 producer tasks that push
``ats.application.created`` events through ``Intake.accept`` (a closed loop: each producer
sends its next event as soon as the previous one is acknowledged) and set the dispatcher's
wake event after each, as a daemon would. Once all is built, what lives is frozen out of full
garbage collections, as the daemon does after start (``engine/gc_pauses.py``); without it the
benchmark's own 3,000-10,000 prepared events made every full collection a 50-70 ms pause
that the daemon does not have. Two rule sets:

* ``send``: one ``crm.send_email`` per event (1 CRM call);
* ``upsert+send``: ``crm.upsert_contact`` then ``crm.send_email`` (a share of a batch upsert
  request, then a send, the second action waiting for the first by the ordering key; the
  table's "events / CRM requests" row shows how many requests that made).

The template is ``category: transactional``, so quiet hours (which would defer nurture mail
sent at night) and the frequency cap do not apply: the result does not depend on the hour.

Measured per backend (a SQLite file in a temporary directory; PostgreSQL in a fresh schema,
dropped afterwards):

* accepted events/s: N / (last ``accept`` returned - first ``accept`` started);
* completed events/s: N / (last send received by the CRM - first ``accept`` started);
* ack latency: the duration of each ``accept`` (the commit a vendor's webhook waits for);
* end-to-end latency: from just before ``accept`` to the moment the simulator's send handler
  received that event's email (matched by ``sendId``, the action's idempotency key), so it
  includes the CRM's 5 ms;
* peak RSS of the process during the scenario (``VmHWM``, reset before each scenario; where
  that cannot be reset, ``ru_maxrss``, the peak of the whole process so far).

Every event must complete, and every outbox action end ``done``; a scenario that does not
says so in its rows instead of printing a throughput for work that was not done.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from adapters.hubspot.client import HubSpotClient
from engine.clock import SystemClock
from engine.config.load import ConfigSet, load_config
from engine.events import Event
from engine.gc_pauses import GcPauses
from engine.metrics import Metrics
from engine.outbox import Outcome
from engine.outbox_stream import Stream
from engine.runtime import Runtime
from engine.store import queries

from .bench_steps import open_backend
from .common import Options, Row, memory_bytes, percentile

NAME = "pipeline"
EVENTS = 3_000
CONCURRENCY = 8
CRM_LATENCY = 0.005
TARGET_COMPLETED_PER_SECOND = 1_500
TARGET_P99_SECONDS = 0.050
TOKEN = "bench-token"
SOURCE = "ats/greenhouse"
EVENTS_VARIABLE = "NURTURE_BENCH_PIPELINE_EVENTS"
"""Overrides ``EVENTS`` for ``python -m tests.bench`` (which has no option of its own for it)."""

BACKENDS = ("sqlite", "postgresql")

SEND_RULE = """\
version: 1
rules:
  - id: welcome
    description: new application -> welcome email
    trigger: ats.application.created
    condition: "candidate.email != `null`"
    actions:
{upsert}      - action: crm.send_email
        params: {{template: welcome}}
        fields: {{to: candidate.email, first_name: candidate.first_name}}
templates:
  - id: welcome
    subject: "Hi {{first_name}}"
    crm_email_id: "100001"
    category: transactional
    variables: [first_name]
"""
UPSERT_ACTION = """\
      - action: crm.upsert_contact
        fields: {email: candidate.email, firstname: candidate.first_name,
                 ats_candidate_id: candidate.id}
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    calls: str  # CRM calls per event, for the label
    upsert: bool

    def config_text(self) -> str:
        return SEND_RULE.format(upsert=UPSERT_ACTION if self.upsert else "")


SCENARIOS = (
    Scenario("send", "1 CRM call/event", upsert=False),
    Scenario("upsert+send", "a batch upsert share + 1 call/event", upsert=True),
)


class BenchmarkError(AssertionError):
    """The benchmark's own set-up is wrong (the config did not load)."""


# -- the timed CRM, in a process of its own ---------------------------------------------------


class RemoteCrm:
    """``crm_process`` started as a subprocess; ``received()`` reads its send stamps."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process, self.url = process, url

    @classmethod
    async def start(cls, folder: Path, latency: float) -> RemoteCrm:
        port_file = folder / "crm.port"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bench.crm_process", str(port_file), str(latency)
        )
        for _ in range(600):  # the child starting up: bounded, at most 30 s
            if port_file.exists() and port_file.read_text():
                return cls(process, f"http://127.0.0.1:{port_file.read_text()}")
            await asyncio.sleep(0.05)
        process.kill()
        raise RuntimeError("the CRM simulator process did not start")

    async def received(self, session: aiohttp.ClientSession) -> tuple[dict[str, float], int]:
        async with session.get(self.url + "/_bench/received") as answer:
            body = await answer.json()
        return body["received"], int(body["requests"])

    async def stop(self) -> None:
        self.process.terminate()
        await self.process.wait()


# -- inputs ---------------------------------------------------------------------------------


def load(text: str, folder: Path) -> ConfigSet:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text)
    result = load_config([folder])
    if result.errors or result.config is None:
        raise BenchmarkError("\n".join(d.format_text() for d in result.errors))
    return result.config


def make_events(count: int, run: str) -> list[Event]:
    """``count`` distinct applications, each a distinct person (its own ordering key)."""
    time_ = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return [
        Event(
            id=f"{run}-{n}",
            source=SOURCE,
            type="ats.application.created",
            time=time_,
            subject=f"cand-{n}",
            data={
                "candidate": {
                    "id": f"cand-{n}",
                    "first_name": "Maya",
                    "last_name": "Lopez",
                    "email": f"maya.lopez.{run}.{n}@mail.example",
                },
                "application": {
                    "id": f"app-{run}-{n}",
                    "status": "active",
                    "stage": {"name": "Application Review"},
                    "job": {"id": "j1", "title": "Backend Engineer"},
                },
            },
        )
        for n in range(count)
    ]


def send_id(event: Event, scenario: Scenario) -> str:
    """The idempotency key of the event's send_email action, which is the CRM's sendId."""
    index = 1 if scenario.upsert else 0
    return f"{event.source}|{event.id}|welcome|{index}"


# -- resources ------------------------------------------------------------------------------


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) for this process; False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes(reset_worked: bool) -> int:
    if reset_worked:
        return memory_bytes("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


# -- one scenario ---------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    scenario: Scenario
    events: int
    accept_seconds: float = 0.0
    complete_seconds: float = 0.0
    ack: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    completed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    crm_requests: int = 0
    batches: list[int] = field(default_factory=list)
    peak_rss: int = 0
    peak_rss_whole_process: bool = False
    error: str | None = None

    @property
    def accepted_rate(self) -> float:
        return self.events / self.accept_seconds if self.accept_seconds else 0.0

    @property
    def completed_rate(self) -> float:
        return self.completed / self.complete_seconds if self.complete_seconds else 0.0

    @property
    def all_done(self) -> bool:
        return (
            self.error is None
            and self.completed == self.events
            and self.statuses == {"done": self.events * (2 if self.scenario.upsert else 1)}
        )


async def run_scenario(
    backend: str,
    scenario: Scenario,
    events: int,
    *,
    concurrency: int = CONCURRENCY,
    latency: float = CRM_LATENCY,
    timeout: float | None = None,
) -> Result:
    """Drive ``events`` events through a fresh engine and wait until every send arrived."""
    result = Result(backend, scenario, events)
    run = uuid.uuid4().hex[:8]
    batch = make_events(events, run)
    expected = {send_id(event, scenario): i for i, event in enumerate(batch)}
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        folder = Path(tmp)
        config = load(scenario.config_text(), folder / "config")
        simulator = await RemoteCrm.start(folder, latency)
        try:
            opened = await open_backend(backend, folder)
            store, close = opened.store, opened.close
        except (OSError, asyncpg.PostgresError) as exc:
            await simulator.stop()
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        try:
            async with aiohttp.ClientSession() as session:
                crm = HubSpotClient(session, simulator.url, TOKEN)
                runtime = Runtime.build(store, config, SystemClock(), crm)
                await _drive(
                    runtime, simulator, session, batch, expected, result, concurrency, timeout
                )
                async with store.read() as conn:
                    result.statuses = await queries.status_counts(conn)
        finally:
            await close()
            await simulator.stop()
    return result


async def _drive(
    runtime: Runtime,
    simulator: RemoteCrm,
    session: aiohttp.ClientSession,
    batch: list[Event],
    expected: dict[str, int],
    result: Result,
    concurrency: int,
    timeout: float | None,
) -> None:
    dispatcher = runtime.dispatcher
    original_record = dispatcher._record

    async def counted_record(writes: list[Any]) -> list[Outcome]:
        result.batches.append(len(writes))
        return await original_record(writes)

    dispatcher._record = counted_record  # type: ignore[method-assign]
    stop, wake = asyncio.Event(), asyncio.Event()
    starts = [0.0] * len(batch)
    ack = [0.0] * len(batch)
    queue = iter(range(len(batch)))
    accept = runtime.intake.accept

    async def producer() -> None:
        for i in queue:  # the shared iterator hands each event to exactly one producer
            started = time.perf_counter()
            starts[i] = started
            await accept(batch[i])
            ack[i] = time.perf_counter() - started
            wake.set()

    reset = _reset_peak_rss()
    worker = asyncio.create_task(Stream(lambda: dispatcher).run(stop, wake))
    # as the daemon does once it is up (engine/gc_pauses.py): what lives now, the runtime
    # and this benchmark's prepared events, is exempt from full collections
    GcPauses(Metrics()).freeze_what_lives()
    began = time.perf_counter()
    try:
        await asyncio.gather(*(producer() for _ in range(concurrency)))
        accepted = time.perf_counter()
        limit = timeout if timeout is not None else max(60.0, len(batch) / 20)
        deadline = time.perf_counter() + limit
        while True:  # the other process's progress, polled: not a timer of our own
            stamps, requests = await simulator.received(session)
            if len(stamps) >= len(batch):
                break
            if time.perf_counter() > deadline:
                result.error = (
                    f"timed out after {limit:.0f} s with {len(stamps)} of "
                    f"{len(batch)} sends received"
                )
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        wake.set()
        await worker
        gc.unfreeze()
    result.peak_rss = _peak_rss_bytes(reset)
    result.peak_rss_whole_process = not reset
    result.accept_seconds = accepted - began
    result.crm_requests = requests
    received = {key: stamp for key, stamp in stamps.items() if key in expected}
    result.completed = len(received)
    if received:
        result.complete_seconds = max(received.values()) - began
    result.ack = ack
    result.e2e = [stamp - starts[expected[key]] for key, stamp in received.items()]


# -- rows -----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rows(results: Sequence[Result], concurrency: int = CONCURRENCY) -> list[Row]:
    table: list[Row] = []
    for r in results:
        label = f"{r.backend} {r.scenario.name} ({r.scenario.calls})"
        if r.error is not None and not r.completed:
            table.append(Row(NAME, f"{label}: not run", r.error))
            continue
        judged = r.backend == "sqlite" and not r.scenario.upsert
        if r.all_done:
            state = "all done"
        else:
            state = f"INCOMPLETE: {r.completed:,} sent; outbox {r.statuses}; {r.error or ''}"
        table.append(
            Row(
                NAME,
                f"{label}: events / CRM requests",
                f"{r.events:,} / {r.crm_requests:,} ({state}), concurrency {concurrency}",
            )
        )
        table.append(Row(NAME, f"{label}: accepted", f"{r.accepted_rate:,.0f} events/s"))
        completed = f"{r.completed_rate:,.0f} events/s"
        table.append(
            Row(
                NAME,
                f"{label}: completed",
                completed,
                f">= {TARGET_COMPLETED_PER_SECOND:,} events/s" if judged else "",
                _judge(judged, r.all_done and r.completed_rate >= TARGET_COMPLETED_PER_SECOND),
            )
        )
        table.append(
            Row(
                NAME,
                f"{label}: ack p50 / p99",
                f"{_ms(percentile(r.ack, 0.5))} / {_ms(percentile(r.ack, 0.99))}",
            )
        )
        p99 = percentile(r.e2e, 0.99)
        table.append(
            Row(
                NAME,
                f"{label}: end-to-end p50 / p99 / max",
                f"{_ms(percentile(r.e2e, 0.5))} / {_ms(p99)} / {_ms(max(r.e2e, default=0.0))}",
                f"p99 < {TARGET_P99_SECONDS * 1000:.0f} ms" if judged else "",
                _judge(judged, r.all_done and p99 < TARGET_P99_SECONDS),
            )
        )
        mean = statistics.fmean(r.batches) if r.batches else 0.0
        table.append(
            Row(
                NAME,
                f"{label}: outcome commits",
                f"{len(r.batches):,} (mean {mean:.1f} actions, max {max(r.batches, default=0)})",
            )
        )
        rss = f"{r.peak_rss / 2**20:,.0f} MiB"
        if r.peak_rss_whole_process:
            rss += " (peak of the whole process so far)"
        table.append(Row(NAME, f"{label}: peak RSS", rss))
    return table


def _judge(judged: bool, passed: bool) -> str:
    if not judged:
        return ""
    return "PASS" if passed else "MISS"


# -- entry points ---------------------------------------------------------------------------


async def measure(
    events: int = EVENTS,
    *,
    backends: Sequence[str] = BACKENDS,
    scenarios: Sequence[Scenario] = SCENARIOS,
    concurrency: int = CONCURRENCY,
    latency: float = CRM_LATENCY,
    timeout: float | None = None,
) -> list[Result]:
    if events < 1 or concurrency < 1:
        raise ValueError("events and concurrency must be at least 1")
    results = []
    for backend in backends:
        for scenario in scenarios:
            results.append(
                await run_scenario(
                    backend,
                    scenario,
                    events,
                    concurrency=concurrency,
                    latency=latency,
                    timeout=timeout,
                )
            )
    return results


def _events_from_environment() -> int:
    value = os.environ.get(EVENTS_VARIABLE)
    return int(value) if value else EVENTS


def run(options: Options) -> list[Row]:
    """One run per backend and scenario (a run is thousands of events; ``--runs`` repeats the
    in-process microbenchmarks, not this one)."""
    return rows(asyncio.run(measure(_events_from_environment())))


def main(argv: Sequence[str] | None = None) -> None:
    from .common import render_table

    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_pipeline")
    parser.add_argument("--events", type=int, default=_events_from_environment())
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    parser.add_argument("--scenario", choices=[s.name for s in SCENARIOS], action="append")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if args.scenario is None or s.name in args.scenario]
    results = asyncio.run(
        measure(
            args.events,
            backends=args.backend or BACKENDS,
            scenarios=chosen,
            concurrency=args.concurrency,
        )
    )
    print(render_table(rows(results, args.concurrency)))


if __name__ == "__main__":
    main()
