"""Load: signed Greenhouse webhooks posted to a running ``nurture run``; one command,
``python -m tests.bench.load`` (``--reduced`` for the CI size), prints a table.

The daemon runs the shipped rules and sequences as a subprocess (``tests/proof/harness.py``);
the vendors (HubSpot answering after 5 ms, Harvest, Slack, SMTP) run in a second process and
the poster in this one, so no two share an event loop. The traffic is the proof suite's
Greenhouse mix (``tests/proof/traffic.py``): new applications with 10% repeat applicants,
stage changes, rejections and 5% that the rules must drop.

Measured per run:

* accepted events/s and ack p50/p99: from the first post to the last 2xx, and each accepted
  POST's duration (the commit a vendor waits for);
* completed events/s and webhook -> CRM p50/p99: for each new person, from the start of the
  POST that delivered their first application to the moment the HubSpot simulator created
  their contact (its ``time.monotonic()``, the same clock in every process of this machine);
* the daemons' CPU seconds (``/proc/PID/stat``) and peak RSS (``VmHWM``), each summed over the
  daemons and their acceptor processes (a sum of peaks: never less than they held at once).

Runs: SQLite at concurrency 1, 8 and 32; SQLite at concurrency 8 with ``REFERENCE_RULES`` (the
shape of the issue's reference points: a new application becomes a CRM contact, nothing
else); PostgreSQL with one daemon and with two sharing the store (the mix split by
candidate, so one person's deliveries reach one daemon in order); and, for the webhook
acknowledgement target, SQLite at a fixed 500 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.bench.common import Row, memory_bytes, percentile, render_table
from tests.proof.harness import (
    DaemonProcess,
    DaemonSettings,
    VendorsProcess,
    postgres_schema,
    postgres_url,
    settle,
    vendors_process,
    workdir,
)
from tests.proof.poster import Outcome, Poster
from tests.proof.results import Result, Size
from tests.proof.traffic import Delivery, greenhouse_mix

NAME = "load"
CRM_LATENCY = 0.005
TARGET_COMPLETED = 1_500
TARGET_E2E_P99 = 0.050
TARGET_RSS = 150 * 2**20
TARGET_ACK_P99 = 0.020
ACK_RATE = 500
ACCEPTOR_BACKLOG = 256  # server.acceptor.backlog in the paced acceptor run
REFERENCE_BACKLOG = 16  # and at concurrency 8 (the best of 16-48: webhook -> CRM p99)


# The reference points (n8n, a 60-line aiohttp + jmespath script) map a new application
# to one CRM contact and do nothing else. This is that shape in nurture's rule language: an
# upsert by email, which shares HubSpot batch upsert requests with the upserts due beside it.
# The shipped rules do more per new person (that upsert, the welcome sequence's Day-0 email
# with its subscription check, stage tags, ATS write-backs), so both are measured and labelled.
REFERENCE_RULES = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> CRM contact (the reference points' shape)
    trigger: ats.application.created
    condition: "candidate.email != `null`"
    actions:
      - action: crm.upsert_contact
        fields:
          email: candidate.email
          firstname: candidate.first_name
          lastname: candidate.last_name
"""


@dataclass(frozen=True)
class Run:
    backend: str
    concurrency: int
    events: int
    daemons: int = 1
    pace: float | None = None  # deliveries per second (open loop), None: closed loop
    rules: str = "shipped"  # or "reference": REFERENCE_RULES
    acceptor: int | None = None  # server.acceptor's back-pressure backlog; None: no acceptor

    @property
    def label(self) -> str:
        who = f"{self.daemons} daemons" if self.daemons > 1 else "1 daemon"
        how = f"{self.pace:,.0f}/s paced" if self.pace else f"concurrency {self.concurrency}"
        rules = ", reference-shape rules" if self.rules == "reference" else ""
        acceptor = f", acceptor (backlog {self.acceptor})" if self.acceptor else ""
        return f"{self.backend}, {who}, {how}{rules}{acceptor}"


@dataclass
class Measured:
    run: Run
    acked: int = 0
    refused: int = 0
    accept_seconds: float = 0.0
    ack: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    complete_seconds: float = 0.0
    expected_people: int = 0
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    duplicate_contacts: int = 0
    crm_requests: int = 0  # what HubSpot was asked, all endpoints: how well upserts batch
    error: str | None = None

    @property
    def accepted_rate(self) -> float:
        return self.acked / self.accept_seconds if self.accept_seconds else 0.0

    @property
    def completed_rate(self) -> float:
        return self.run.events / self.complete_seconds if self.complete_seconds else 0.0


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def _store_url(backend: str, folder: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'nurture.db'}"
        return
    async with postgres_schema() as schema:
        yield postgres_url(schema)


def _split(deliveries: list[Delivery], parts: int) -> list[list[Delivery]]:
    """By candidate, so a person's follow-ups go to the daemon that has their application."""
    shares: list[list[Delivery]] = [[] for _ in range(parts)]
    for delivery in deliveries:
        shares[int(delivery.candidate_id) % parts].append(delivery)
    return shares


async def measure(run: Run, seed: int = 7) -> Measured:
    result = Measured(run)
    mix = greenhouse_mix(run.events, seed=seed, tag=f"load{seed}")
    with workdir("load") as folder:
        async with vendors_process(folder) as vendors, _store_url(run.backend, folder) as url:
            await vendors._call("POST", "/hubspot/latency", {"seconds": CRM_LATENCY})
            settings = DaemonSettings(store_url=url, acceptor_backlog=run.acceptor)
            if run.rules == "reference":
                (folder / "reference").mkdir()
                (folder / "reference" / "rules.yaml").write_text(REFERENCE_RULES)
                settings = replace(settings, config_paths=(folder / "reference",))
            daemons = []
            for n in range(run.daemons):
                (folder / f"d{n}").mkdir()
                daemon = DaemonProcess(folder / f"d{n}", vendors, settings)
                await daemon.start()
                daemons.append(daemon)
            try:
                await _drive(run, mix.deliveries, mix.expected_contacts, daemons, vendors, result)
            finally:
                for daemon in daemons:
                    await daemon.stop()
    return result


async def _drive(
    run: Run,
    deliveries: list[Delivery],
    expected: set[str],
    daemons: list[DaemonProcess],
    vendors: VendorsProcess,
    result: Measured,
) -> None:
    # the daemons and their children (an acceptor): its CPU is the integration's too
    pids = [d.process.pid for d in daemons if d.process is not None]
    pids += [child for pid in pids for child in _children(pid)]
    cpu_before = sum(_cpu_seconds(pid) for pid in pids)
    offset = time.time() - time.monotonic()  # the poster stamps wall time, HubSpot monotonic
    share = max(1, run.concurrency // len(daemons))
    pace = run.pace / len(daemons) if run.pace else None
    posters = [Poster(d.webhook_url, concurrency=share, pace=pace) for d in daemons]
    began = time.monotonic()
    parts = _split(deliveries, len(daemons))
    outcomes: list[Outcome] = []
    pairs = zip(posters, parts, strict=True)
    for done in await asyncio.gather(*(poster.post_all(part) for poster, part in pairs)):
        outcomes.extend(done)
    accepted = [o for o in outcomes if o.accepted is not None]
    result.acked = len(accepted)
    result.refused = len(outcomes) - len(accepted)
    result.accept_seconds = max((o.accepted.ended for o in accepted), default=0) - offset - began  # type: ignore[union-attr]
    result.ack = [o.latency for o in accepted if o.latency is not None]
    result.expected_people = len(expected)

    async def created() -> dict[str, float]:
        state = await vendors.state()
        return {e: t for e, t in state["hubspot"]["created_at"].items() if t is not None}

    async def all_created() -> bool:
        return expected <= set(await created())

    if await settle(all_created, timeout=max(60.0, run.events / 20), every=0.2) is None:
        result.error = f"only {len(await created())} of {len(expected)} contacts were created"
    stamps = await created()
    state = await vendors.state()
    result.duplicate_contacts = sum(n - 1 for n in state["hubspot"]["contacts_per_email"].values())
    result.crm_requests = int(state["hubspot"]["requests"])
    first_post: dict[str, float] = {}
    for o in accepted:
        email = o.delivery.email
        if o.delivery.kind == "application" and email in expected and email not in first_post:
            first_post[email] = o.accepted.started - offset  # type: ignore[union-attr]
    result.e2e = [stamps[e] - t for e, t in first_post.items() if e in stamps]
    if stamps:
        result.complete_seconds = max(stamps.values()) - began
    result.cpu_seconds = sum(_cpu_seconds(pid) for pid in pids) - cpu_before
    result.peak_rss = sum(memory_bytes("VmHWM", pid) for pid in pids)


def _per_event(requests: int, events: int) -> str:
    """Requests are steadier than rates on a machine whose speed drifts: two changes that made
    fewer upserts share a batch request showed here first (778 -> 1,578 for 5,000 events)."""
    return f"{requests:,} ({requests / max(events, 1):.2f} per event)"


def _judge(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def rows(results: Sequence[Measured]) -> list[Row]:
    table: list[Row] = []
    for r in results:
        label = r.run.label
        if r.error is not None and not r.e2e:
            table.append(Row(NAME, f"{label}: not run", r.error))
            continue
        main_target = r.run.backend == "sqlite" and r.run.concurrency == 8 and not r.run.pace
        paced = r.run.pace is not None
        table.append(
            Row(
                NAME,
                f"{label}: events accepted / refused",
                f"{r.acked:,} / {r.refused:,} of {r.run.events:,}"
                + (f" ({r.error})" if r.error else ""),
            )
        )
        ack99 = percentile(r.ack, 0.99)
        table.append(
            Row(
                NAME,
                f"{label}: accepted, ack p50 / p99",
                f"{r.accepted_rate:,.0f} events/s; {percentile(r.ack, 0.5) * 1000:.1f} ms / "
                f"{ack99 * 1000:.1f} ms",
                "p99 < 20 ms at 500/s" if paced else "",
                _judge(ack99 < TARGET_ACK_P99) if paced else "",
            )
        )
        e2e99 = percentile(r.e2e, 0.99)
        table.append(
            Row(
                NAME,
                f"{label}: completed, webhook -> CRM p50 / p99",
                f"{r.completed_rate:,.0f} events/s; {percentile(r.e2e, 0.5) * 1000:.1f} ms / "
                f"{e2e99 * 1000:.1f} ms ({len(r.e2e):,} people)",
                ">= 1,500/s, p99 < 50 ms" if main_target else "",
                _judge(r.completed_rate >= TARGET_COMPLETED and e2e99 < TARGET_E2E_P99)
                if main_target
                else "",
            )
        )
        table.append(
            Row(
                NAME,
                f"{label}: daemon CPU, peak RSS, duplicate contacts, HubSpot requests",
                f"{r.cpu_seconds:.1f} s ({r.cpu_seconds / max(r.acked, 1) * 1e3:.2f} ms/event); "
                f"{r.peak_rss / 2**20:,.0f} MiB; {r.duplicate_contacts}; "
                f"{_per_event(r.crm_requests, r.acked)}",
                "RSS < 150 MB" if main_target else "",
                _judge(r.peak_rss < TARGET_RSS) if main_target else "",
            )
        )
    pg = {r.run.daemons: r.completed_rate for r in results if r.run.backend == "postgresql"}
    if 1 in pg and 2 in pg:
        table.append(
            Row(
                NAME,
                "postgresql: two daemons / one daemon, completed",
                f"{pg[2]:,.0f} / {pg[1]:,.0f} events/s",
                "two > one",
                _judge(pg[2] > pg[1]),
            )
        )
    return table


def plan(events: int) -> list[Run]:
    return [
        Run("sqlite", 1, max(200, events // 10)),
        Run("sqlite", 8, events),
        Run("sqlite", 8, events, rules="reference"),
        Run("sqlite", 32, events),
        Run("sqlite", 32, events, pace=ACK_RATE),
        Run("sqlite", 8, events, rules="reference", acceptor=REFERENCE_BACKLOG),
        Run("sqlite", 32, events, pace=ACK_RATE, acceptor=ACCEPTOR_BACKLOG),
        Run("postgresql", 16, events),
        Run("postgresql", 16, events, daemons=2),
    ]


async def measure_all(runs: Sequence[Run]) -> list[Measured]:
    return [await measure(run) for run in runs]


async def run(size: Size) -> Result:
    """The proof runner's entry: the main SQLite run and the paced acknowledgement run."""
    events = 600 if size is Size.REDUCED else 5_000
    measured = await measure_all(
        [
            Run("sqlite", 8, events),
            Run("sqlite", 8, events, rules="reference"),
            Run("sqlite", 8, events, rules="reference", acceptor=REFERENCE_BACKLOG),
            Run("sqlite", 32, events, pace=500),
            Run("sqlite", 32, events, pace=500, acceptor=ACCEPTOR_BACKLOG),
        ]
    )
    result = Result("load (webhooks -> daemon -> HubSpot simulator)")
    for r in measured:
        result.figures[f"{r.run.label}: completed"] = f"{r.completed_rate:,.0f} events/s"
        result.figures[f"{r.run.label}: webhook -> CRM p99"] = (
            f"{percentile(r.e2e, 0.99) * 1000:.0f} ms"
        )
        result.figures[f"{r.run.label}: ack p99"] = f"{percentile(r.ack, 0.99) * 1000:.1f} ms"
        result.figures[f"{r.run.label}: HubSpot requests"] = _per_event(r.crm_requests, r.acked)
        result.invariants[f"{r.run.label}: every event accepted"] = r.acked == r.run.events
        result.invariants[f"{r.run.label}: every person reached the CRM"] = (
            r.error is None and len(r.e2e) == r.expected_people
        )
        result.invariants[f"{r.run.label}: no duplicate contact"] = r.duplicate_contacts == 0
    return result


def bench(options: object) -> list[Row]:
    """For ``make bench``: every run at 3,000 events."""
    return rows(asyncio.run(measure_all(plan(3_000))))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.load")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--reduced", action="store_true", help="600 events per run (CI)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), action="append")
    args = parser.parse_args(argv)
    events = 600 if args.reduced else args.events
    runs = [r for r in plan(events) if args.backend is None or r.backend in args.backend]
    started = time.monotonic()
    results = asyncio.run(measure_all(runs))
    table = rows(results)
    table.append(Row(NAME, "benchmark time", f"{time.monotonic() - started:.0f} s"))
    print(render_table(table))
    print(f"\nmachine: {os.cpu_count()} CPUs; 1-min load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
