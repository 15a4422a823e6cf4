"""Vendor faults: a flaky HubSpot with an outage in the middle, and a Greenhouse 422.

HubSpot (simulated) answers 20% of requests with a 5xx, 10% with 429 and ``Retry-After``, and
holds 5% past the daemon's timeout (processing them anyway, as a server whose answer is lost
would); in the middle of the load it answers 503 to everything for two minutes (shortened in
CI). Greenhouse answers 422 to every write on one silver medalist. The daemon runs on the real
clock, so backoff, ``Retry-After`` and the outage are all in real seconds.

Everything retryable must eventually succeed; the 422 must land in the dead letter with one
alert naming the candidate and the reason; the outage must produce one alert, not hundreds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.proof import invariants as inv
from tests.proof.harness import (
    DaemonProcess,
    DaemonSettings,
    settle,
    until,
    vendors_process,
    workdir,
)
from tests.proof.poster import Poster
from tests.proof.results import Result, Size
from tests.proof.traffic import greenhouse_mix

CHAOS = {
    "error_rate": 0.20,
    "rate_limit_rate": 0.10,
    "retry_after": 1,
    "timeout_rate": 0.05,
    "hang": 1.5,  # past the daemon's 1 s HubSpot timeout
}


@dataclass(frozen=True)
class Plan:
    events: int
    outage: float  # real seconds of HubSpot answering 503 to everything
    drain_timeout: float


PLANS = {
    Size.REDUCED: Plan(events=300, outage=30.0, drain_timeout=180.0),
    Size.FULL: Plan(events=2000, outage=120.0, drain_timeout=900.0),
}


async def run(size: Size, seed: int = 30) -> Result:
    plan = PLANS[size]
    with workdir("vendors") as folder:
        return await _run(plan, folder, seed)


async def _run(plan: Plan, folder: Path, seed: int) -> Result:
    mix = greenhouse_mix(plan.events, seed=seed, tag=f"v{seed}")
    rejected = min(mix.silver_medalists)  # Harvest refuses every write on this one
    settings = DaemonSettings(store_url=f"sqlite:///{folder / 'nurture.db'}", hubspot_timeout="1s")
    result = Result("vendor faults (HubSpot 5xx/429/timeouts + outage, Greenhouse 422)")
    async with vendors_process(folder) as vendors:
        daemon = DaemonProcess(folder, vendors, settings)
        try:
            await daemon.start()
            await vendors.reject_candidate(rejected)
            await vendors.chaos(**CHAOS, seed=seed)
            began = time.monotonic()
            poster = Poster(daemon.url, concurrency=8)
            posting = asyncio.create_task(poster.post_all(mix.deliveries))

            async def a_third_accepted() -> bool:
                return len(poster.acknowledged()) >= plan.events // 3

            await until(a_third_accepted, "a third of the load to be accepted", timeout=120)
            await vendors.chaos(outage=True)
            outage_began = time.monotonic()
            await asyncio.sleep(plan.outage)  # the outage's length is the scenario, not a wait
            await vendors.chaos(outage=False)
            outage_lasted = time.monotonic() - outage_began
            outcomes = await posting
            acknowledged = [o for o in outcomes if o.accepted]

            def dead_on_purpose(action: dict[str, Any]) -> bool:
                return action["candidate_id"] == rejected and "422" in str(action["last_error"])

            async def drained() -> bool:
                async with daemon.store() as store:
                    snap = await inv.Snapshot.read(store)
                return inv.every_accepted_event_processed(acknowledged, snap, dead_on_purpose).held

            settled = await settle(drained, plan.drain_timeout)
            drained_after = time.monotonic() - began
            await asyncio.sleep(6)  # one alert-delivery tick (5 s) for the last alerts
            await daemon.stop()
            state = await vendors.state()
            async with daemon.store() as store:
                snap = await inv.Snapshot.read(store)
        finally:
            await daemon.kill()
    dead = [a for a in snap.actions if a["status"] == "dead"]
    alerts = state["slack"]
    about_rejected = [m for m in alerts if "dead letter" in m and rejected in m]
    outage_alerts = [m for m in alerts if "outage" in m]
    sent, absorbed = inv.no_email_twice(state, mix, snap)
    checks = {
        "every accepted event processed": inv.every_accepted_event_processed(
            acknowledged, snap, dead_on_purpose
        ),
        "everything retryable eventually succeeded (only the 422 is dead)": inv.Check.of(
            [f"{a['idempotency_key']}: {a['last_error']}" for a in dead if not dead_on_purpose(a)]
            + ([] if any(dead_on_purpose(a) for a in dead) else ["the 422 is not dead-lettered"]),
            "unexpected dead letters",
        ),
        "one alert names the 422's candidate and reason": inv.Check.of(
            []
            if len(about_rejected) == 1 and "422" in about_rejected[0]
            else [f"{len(about_rejected)} dead-letter alerts name {rejected}: {about_rejected}"],
            "alerts",
        ),
        "the outage raised one grouped alert": inv.Check.of(
            [] if len(outage_alerts) == 1 else [f"{len(outage_alerts)} outage alerts"], "alerts"
        ),
        "exactly one CRM contact per person": inv.one_contact_per_person(state, mix),
        "no email sent twice": sent,
    }
    result.invariants = {name: check.held for name, check in checks.items()}
    result.details = {name: check.detail for name, check in checks.items() if not check.held}
    injected: dict[str, int] = state["hubspot"]["faults_injected"]
    kinds = Counter(m.splitlines()[0] for m in alerts)
    attempts = Counter(int(a["attempts"]) for a in snap.actions)
    result.figures = {
        "events": f"{len(acknowledged):,} of {len(outcomes):,} acknowledged",
        "hubspot faults": ", ".join(f"{k} {v:,}" for k, v in sorted(injected.items()))
        + f" of {state['hubspot']['requests']:,} requests",
        "outage": f"{outage_lasted:.0f} s real time",
        "all done after": f"{drained_after:.0f} s (real clock)"
        if settled is not None
        else f"NOT done {drained_after:.0f} s after the load began",
        "attempts per action": ", ".join(f"{n}: {c:,}" for n, c in sorted(attempts.items())),
        "repeated sends absorbed by sendId": f"{absorbed:,}",
        "alerts": f"{len(alerts)} ("
        + ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))
        + ")",
    }
    result.faults_injected = sum(injected.values()) + 1
    return result
