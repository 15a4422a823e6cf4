"""Store faults: PostgreSQL going away mid-load, and SQLite under concurrent load.

PostgreSQL: the daemon reaches the shared server through a loopback TCP proxy the scenario
controls; cutting it resets every connection and refuses new ones, which is the server going
away as the daemon sees it (the server itself, shared with other tests, is never stopped).
While it is cut, webhooks must get 503 (never a 2xx for an event that was not stored) and
``/readyz`` must say not ready; after it is restored, readiness must come back and every
acknowledged event be processed, nothing lost, nothing doubled.

SQLite: several vendors posting at once while an operator runs ``nurture dlq list`` and
``nurture pause``/``resume`` against the same file; no "database is locked" may reach a vendor
(every delivery acknowledged, no 5xx, nothing about locks in the daemon's log).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.proof import invariants as inv
from tests.proof.harness import (
    REPO,
    DaemonProcess,
    DaemonSettings,
    postgres_schema,
    postgres_url,
    settle,
    until,
    vendors_process,
    workdir,
)
from tests.proof.pgproxy import TcpProxy
from tests.proof.poster import Outcome, Poster
from tests.proof.results import Result, Size
from tests.proof.traffic import greenhouse_mix


@dataclass(frozen=True)
class Plan:
    events: int
    cut_for: float  # real seconds PostgreSQL stays unreachable
    sqlite_events: int
    sqlite_posters: int
    drain_timeout: float = 240.0


PLANS = {
    Size.REDUCED: Plan(events=400, cut_for=6.0, sqlite_events=600, sqlite_posters=4),
    Size.FULL: Plan(events=3000, cut_for=30.0, sqlite_events=4000, sqlite_posters=6),
}


async def run(size: Size, seed: int = 40) -> Result:
    plan = PLANS[size]
    result = Result("store faults (PostgreSQL cut mid-load; SQLite concurrency)")
    with workdir("store") as folder:
        (folder / "pg").mkdir()
        (folder / "sqlite").mkdir()
        await _postgres(plan, folder / "pg", seed, result)
        await _sqlite(plan, folder / "sqlite", seed + 1, result)
    return result


async def _postgres(plan: Plan, folder: Path, seed: int, result: Result) -> None:
    mix = greenhouse_mix(plan.events, seed=seed, tag=f"s{seed}")
    proxy = TcpProxy()
    await proxy.start()
    async with postgres_schema() as schema, vendors_process(folder) as vendors:
        settings = DaemonSettings(store_url=postgres_url(schema, proxy.port))
        daemon = DaemonProcess(folder, vendors, settings)
        try:
            await daemon.start()
            await vendors.latency(0.05)  # vendor calls in flight when the store goes away
            poster = Poster(daemon.url, concurrency=8, give_up_after=plan.cut_for + 120)
            posting = asyncio.create_task(poster.post_all(mix.deliveries))

            async def a_third_accepted() -> bool:
                return len(poster.acknowledged()) >= plan.events // 3

            await until(a_third_accepted, "a third of the load to be accepted", timeout=120)
            cut_at = time.time()
            await proxy.cut()
            not_ready = await settle(lambda: _readiness(daemon, False), plan.cut_for + 10, 0.2)
            await asyncio.sleep(max(0.0, plan.cut_for - (time.time() - cut_at)))  # the outage
            restored_at = time.time()
            await proxy.restore()
            ready_again = await settle(lambda: _readiness(daemon, True), 60, 0.2)
            outcomes = await posting
            acknowledged = [o for o in outcomes if o.accepted]
            direct = postgres_url(schema)

            async def drained() -> bool:
                async with daemon.store(direct) as store:
                    snap = await inv.Snapshot.read(store)
                return inv.every_accepted_event_processed(acknowledged, snap).held

            drained_in = await settle(drained, plan.drain_timeout)
            await daemon.stop()
            state = await vendors.state()
            async with daemon.store(direct) as store:
                snap = await inv.Snapshot.read(store)
            decisions = [line.get("decision") for line in daemon.log_lines()]
        finally:
            await daemon.kill()
            await proxy.close()
    during = [
        a
        for o in outcomes
        for a in o.attempts
        if a.started > cut_at + 0.5 and a.ended < restored_at
    ]
    answered = [a for a in during if a.status is not None]
    wrong = [a.status for a in answered if a.status != 503]
    stored = inv.every_accepted_event_processed(acknowledged, snap)
    sent, _ = inv.no_email_twice(state, mix, snap)
    checks = {
        "PostgreSQL: webhooks answered 503 while the store was unreachable": inv.Check.of(
            ([] if answered else ["no webhook was answered during the cut"])
            + [f"answered {s}" for s in wrong],
            "wrong answers during the cut",
        ),
        "PostgreSQL: never a 2xx for an event that was not stored": inv.Check.of(
            [
                o.delivery.id
                for o in acknowledged
                if inv.event_key(o) not in snap.events
                and not (o.delivery.kind == "dropped" and o.accepted and o.accepted.status == 202)
            ],
            "acknowledged but not stored",
        ),
        "PostgreSQL: /readyz flipped to not ready and back": inv.Check.of(
            (["still ready during the cut"] if not_ready is None else [])
            + (["not ready again after the restore"] if ready_again is None else []),
            "readiness problems",
        ),
        "PostgreSQL: every accepted event processed after the restore": stored,
        "PostgreSQL: processing resumed at once, not after the 2-minute lease": inv.Check.of(
            [] if drained_in is not None and drained_in < 60 else [f"after {_secs(drained_in)}"],
            "slow resumptions",
        ),
        "PostgreSQL: one CRM contact per person, no email twice": inv.Check.of(
            [c.detail for c in (inv.one_contact_per_person(state, mix), sent) if not c.held],
            "duplicates",
        ),
    }
    _merge(result, checks)
    statuses: dict[str, int] = {}
    for a in during:
        key = str(a.status or a.error)
        statuses[key] = statuses.get(key, 0) + 1
    result.figures["postgres"] = (
        f"{len(acknowledged):,} of {len(outcomes):,} acknowledged; cut {plan.cut_for:.0f} s; "
        f"answers while cut: {statuses}; readyz not ready after "
        f"{_secs(not_ready)}, ready {_secs(ready_again)} after the restore; outcomes kept "
        f"through the cut: {decisions.count('record_retry')} record retries, "
        f"{decisions.count('record_failed')} given up to the lease; all processed "
        f"{_secs(drained_in)} after the load"
    )
    result.faults_injected += proxy.cuts


async def _sqlite(plan: Plan, folder: Path, seed: int, result: Result) -> None:
    mix = greenhouse_mix(plan.sqlite_events, seed=seed, tag=f"q{seed}")
    settings = DaemonSettings(store_url=f"sqlite:///{folder / 'nurture.db'}")
    async with vendors_process(folder) as vendors:
        daemon = DaemonProcess(folder, vendors, settings)
        try:
            await daemon.start()
            shares = [mix.deliveries[i :: plan.sqlite_posters] for i in range(plan.sqlite_posters)]
            started = time.monotonic()
            posters = [
                Poster(daemon.url, concurrency=8, seed=n) for n in range(plan.sqlite_posters)
            ]
            posting = asyncio.gather(*(p.post_all(s) for p, s in zip(posters, shares, strict=True)))
            operator_runs = await _operator(daemon, posting)
            groups = await posting
            took = time.monotonic() - started
            outcomes = [o for group in groups for o in group]
            acknowledged = [o for o in outcomes if o.accepted]

            async def drained() -> bool:
                async with daemon.store() as store:
                    snap = await inv.Snapshot.read(store)
                return inv.every_accepted_event_processed(acknowledged, snap).held

            drained_in = await settle(drained, plan.drain_timeout)
            await daemon.stop()
            state = await vendors.state()
            async with daemon.store() as store:
                snap = await inv.Snapshot.read(store)
            log = daemon.log.read_text(errors="replace")
        finally:
            await daemon.kill()
    refused = [
        f"{o.delivery.id}: {[a.status for a in o.attempts]}"
        for o in outcomes
        if any(a.status is None or a.status >= 500 for a in o.attempts)
    ]
    checks = {
        "SQLite: no 'database is locked' reached a vendor": inv.Check.of(
            refused + [line[:200] for line in log.splitlines() if "locked" in line.lower()],
            "errors under concurrency",
        ),
        "SQLite: every accepted event processed": inv.every_accepted_event_processed(
            acknowledged, snap
        ),
        "SQLite: one CRM contact per person": inv.one_contact_per_person(state, mix),
    }
    _merge(result, checks)
    result.figures["sqlite"] = (
        f"{len(acknowledged):,} of {len(outcomes):,} acknowledged from {plan.sqlite_posters} "
        f"posters x 8 in {took:.1f} s ({len(acknowledged) / took:.0f}/s) beside "
        f"{operator_runs} operator commands; all processed {_secs(drained_in)} after the load"
    )


async def _operator(daemon: DaemonProcess, posting: asyncio.Future[list[list[Outcome]]]) -> int:
    """What an operator does during the load: read dead letters, pause and resume a rule."""
    runs = 0
    commands = [
        ["dlq", "list"],
        ["pause", "proof-operator-rule"],
        ["resume", "proof-operator-rule"],
    ]
    while not posting.done():
        for command in commands:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "engine.cli",
                *command,
                "--config",
                str(daemon.config),
                cwd=REPO,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await process.communicate()
            if process.returncode != 0:
                raise AssertionError(f"nurture {' '.join(command)}: {err.decode()[-500:]}")
            runs += 1
    return runs


async def _readiness(daemon: DaemonProcess, wanted: bool) -> bool:
    try:
        status, _ = await daemon.get("/readyz", timeout=5)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
    return (status == 200) == wanted


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _merge(result: Result, checks: dict[str, inv.Check]) -> None:
    for name, check in checks.items():
        result.invariants[name] = check.held
        if not check.held:
            result.details[name] = check.detail
