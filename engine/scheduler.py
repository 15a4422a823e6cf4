"""The timekeeper: the only module that imports APScheduler.

APScheduler 3.11 wakes the step runner every second and the alert sender every few seconds;
it holds no state worth keeping. The ``enrollment_steps`` table is the source of truth, so a
restart loses nothing: APScheduler 3.11 deletes a one-off job before running it, which is why
steps are never APScheduler jobs (see DESIGN.md, "Time and scheduling").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine.runtime import Runtime

log = logging.getLogger("nurture.scheduler")


class Timekeeper:
    def __init__(
        self,
        runtime: Runtime | Callable[[], Runtime],
        *,
        step_interval: float = 1.0,
        alert_interval: float = 5.0,
    ) -> None:
        # a callable lets the daemon swap the runtime on reload without restarting the jobs
        self._runtime: Callable[[], Runtime] = (
            runtime if not isinstance(runtime, Runtime) else (lambda: runtime)
        )
        self.step_interval = step_interval
        self.alert_interval = alert_interval
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.ticks = 0

    def start(self) -> None:
        """Register the jobs and start (needs a running event loop)."""
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True}
        self.scheduler.add_job(
            self.fire_steps, "interval", seconds=self.step_interval, id="fire-steps", **common
        )
        self.scheduler.add_job(
            self.deliver_alerts,
            "interval",
            seconds=self.alert_interval,
            id="deliver-alerts",
            **common,
        )
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def fire_steps(self) -> int:
        """One tick (``StepRunner.run_tick``): at most one batch, so a backlog after downtime
        drains spread out."""
        self.ticks += 1
        try:
            return len(await self._runtime().steps.run_tick())
        except Exception:  # a tick must never kill the scheduler; the next tick retries
            log.exception("step tick failed")
            return 0

    async def deliver_alerts(self) -> int:
        try:
            return await self._runtime().alerts.deliver_due()
        except Exception:
            log.exception("alert delivery tick failed")
            return 0
