"""Crash loop: SIGKILL the daemon at random moments during a load, restarting it each time.

The daemon runs the shipped rules and sequences on a simulated clock (``nurture run
--simulated-clock``) fast enough that welcome steps due days later fire during the run, so
kills land in intake, in outbox sends and in step firing alike. Midway, some candidates
unsubscribe through signed HubSpot webhooks. Then the clock is slowed (the daemon restarted
with the timeline continued at 60x) until everything due is done, and the invariants are
checked at the simulators and in the store.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.clock import ScaledClock
from tests.bench.common import percentile
from tests.proof import invariants as inv
from tests.proof.harness import (
    DaemonProcess,
    DaemonSettings,
    VendorsProcess,
    settle,
    vendors_process,
    workdir,
)
from tests.proof.poster import Outcome, Poster
from tests.proof.results import Result, Size
from tests.proof.traffic import Delivery, Mix, greenhouse_mix, hubspot_unsubscribe

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday morning, before the send windows
DRAIN_RATE = 60.0  # simulated seconds per real second while the backlog drains


@dataclass(frozen=True)
class Plan:
    events: int
    kills: int
    window: float  # real seconds over which the kills are spread
    days: float  # simulated days that pass in that window
    unsubscribe_share: float = 0.03
    concurrency: int = 8
    drain_timeout: float = 240.0


PLANS = {
    Size.REDUCED: Plan(events=1000, kills=3, window=40.0, days=4.0),
    Size.FULL: Plan(events=10_000, kills=20, window=300.0, days=10.0, drain_timeout=900.0),
}


async def run(size: Size, seed: int = 20, *, acceptor: bool = False) -> Result:
    """``acceptor``: Greenhouse webhooks go to the acceptor process (``server.acceptor``), whose
    2xx means "in the spool"; the same invariants must hold across the kills."""
    plan = PLANS[size]
    with workdir("crash") as folder:
        return await _run(plan, folder, seed, acceptor)


async def _run(plan: Plan, folder: Path, seed: int, acceptor: bool) -> Result:
    rng = random.Random(seed)
    mix = greenhouse_mix(plan.events, seed=seed, tag=f"c{seed}")
    rate = plan.days * 86_400 / plan.window
    clock = ScaledClock(START, time.time(), rate)
    settings = DaemonSettings(
        store_url=f"sqlite:///{folder / 'nurture.db'}", acceptor_backlog=256 if acceptor else None
    )
    result = Result("crash loop (SIGKILL, SQLite" + (", acceptor process)" if acceptor else ")"))
    async with vendors_process(folder) as vendors:
        daemon = DaemonProcess(folder, vendors, settings, clock)
        restarts: list[float] = []
        try:
            await daemon.start()
            await vendors.latency(0.02)  # vendor calls in flight when a kill lands
            began = time.monotonic()
            # the load spans the kill window, so kills land in intake, sends and steps alike
            pace = plan.events / (plan.window * 0.8)
            poster = Poster(daemon.webhook_url, concurrency=plan.concurrency, pace=pace)
            posting = asyncio.create_task(poster.post_all(mix.deliveries))
            unsubscribing = asyncio.create_task(
                _unsubscribe(daemon, vendors, mix, plan, rng, began)
            )
            kill_times = sorted(rng.uniform(1.0, plan.window) for _ in range(plan.kills))
            for moment in kill_times:
                await asyncio.sleep(max(0.2, moment - (time.monotonic() - began)))
                await daemon.kill()
                restarts.append(await daemon.start())
            outcomes = await posting
            unsubscribes = await unsubscribing
            posted_for = time.monotonic() - began
            # slow the timeline down (continued, never rewound) so the backlog can drain
            await daemon.stop()
            daemon.clock = ScaledClock(clock.now(), time.time(), DRAIN_RATE)
            await daemon.start()
            tolerance = timedelta(seconds=15 * DRAIN_RATE)
            drained_in = await settle(lambda: _drained(daemon, tolerance), plan.drain_timeout)
            await daemon.stop()
            ended_at = daemon.now()
            state = await vendors.state()
            async with daemon.store() as store:
                snap = await inv.Snapshot.read(store)
            orphans = sum(
                int(line.get("actions", 0))
                for line in daemon.log_lines()
                if line.get("decision") == "released_orphans"
            )
        finally:
            await daemon.kill()
    acknowledged = [o for o in outcomes if o.accepted]
    sent, absorbed_check = inv.no_email_twice(state, mix, snap)
    unsub_check, unsub_count = inv.nothing_after_unsubscribe(unsubscribes, state, snap)
    checks = {
        "every delivery acknowledged (retried like a vendor)": inv.Check.of(
            [o.delivery.id for o in outcomes if not o.accepted], "deliveries never acknowledged"
        ),
        "every accepted event processed": inv.every_accepted_event_processed(
            acknowledged + [u for u in unsubscribes if u.accepted], snap
        ),
        "exactly one CRM contact per person": inv.one_contact_per_person(state, mix),
        "no email sent twice": sent,
        "every send the store marked done reached the CRM": inv.every_done_send_reached_the_crm(
            state, snap
        ),
        "no due step missed": inv.no_due_step_missed(snap, ended_at, tolerance),
        "nothing sent after an accepted unsubscribe": unsub_check,
    }
    result.invariants = {name: check.held for name, check in checks.items()}
    result.details = {name: check.detail for name, check in checks.items() if not check.held}
    fired = sum(1 for s in snap.steps if s["status"] == "fired")
    latencies = [o.latency for o in acknowledged if o.latency is not None]
    simulated = ended_at - START
    result.figures = {
        "events": f"{len(acknowledged):,} of {len(outcomes):,} acknowledged ({_kinds(outcomes)})",
        "kills": f"{plan.kills} SIGKILLs over {posted_for:.0f} s; ready again in median "
        f"{statistics.median(restarts):.1f} s, max {max(restarts):.1f} s; {orphans} claimed "
        "actions handed back at restart",
        "clock": f"{rate:,.0f}x, {simulated.days} simulated days; "
        + (
            f"drained in {drained_in:.0f} s at {DRAIN_RATE:.0f}x"
            if drained_in is not None
            else f"NOT drained in {plan.drain_timeout:.0f} s"
        ),
        "webhook ack p50/p99": f"{percentile(latencies, 0.5) * 1000:.0f}/"
        f"{percentile(latencies, 0.99) * 1000:.0f} ms",
        "crm": f"{sum(state['hubspot']['contacts_per_email'].values()):,} contacts, "
        f"{len(state['hubspot']['sends']):,} emails, {absorbed_check} repeated sends "
        f"absorbed by sendId",
        "steps fired": f"{fired:,}",
        "unsubscribes": f"{unsub_count} via HubSpot webhooks",
    }
    result.faults_injected = plan.kills
    return result


def _kinds(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.delivery.kind] = counts.get(o.delivery.kind, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


async def _unsubscribe(
    daemon: DaemonProcess,
    vendors: VendorsProcess,
    mix: Mix,
    plan: Plan,
    rng: random.Random,
    began: float,
) -> list[Outcome]:
    """A third of the way in, some people with a CRM contact opt out of all email."""
    await asyncio.sleep(max(0.0, plan.window / 3 - (time.monotonic() - began)))
    contacts: dict[str, str] = (await vendors.state())["hubspot"]["contact_ids"]
    known = sorted(e for e in contacts if e in mix.expected_contacts)
    chosen = rng.sample(known, max(5, int(len(known) * plan.unsubscribe_share)))
    deliveries = [
        Delivery(
            id=f"unsubscribe-{n}",
            action="hs_email_optout",
            body=hubspot_unsubscribe(contacts[email], 5_000_000 + n),
            kind="unsubscribe",
            email=email,
            candidate_id="",
            source="hubspot",
        )
        for n, email in enumerate(chosen)
    ]
    return await Poster(daemon.url, concurrency=2, seed=9).post_all(deliveries)


async def _drained(daemon: DaemonProcess, tolerance: timedelta) -> bool:
    """Nothing due (before now minus a few ticks) is still waiting in the store."""
    async with daemon.store() as store:
        snap = await inv.Snapshot.read(store)
    return inv.no_due_step_missed(snap, daemon.now(), tolerance).held
