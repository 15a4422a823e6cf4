"""Evaluating what the acceptor spooled: in order, through the ordinary intake, once.

An event fails evaluation in one of two ways. The store is down: the batch is read again
after ``retry`` seconds, from the same position, so nothing is skipped. The event itself
fails (a defect a vendor's redelivery could not have cured either): an alert names its
delivery and the reason, it is logged, and the spool keeps it for an hour for inspection.
Either way nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from engine.clock import Clock
from engine.events import Event
from engine.intake import Intake
from engine.log_lines import json_line
from engine.spool import SpoolReader
from engine.store import queries
from engine.store.store import STORE_DOWN, Store
from engine.webhook_handler import Accepted

log = logging.getLogger("nurture.acceptor")
BATCH = 64  # spooled events evaluated together: one intake group, one commit


class SpoolFeeder:
    def __init__(
        self,
        reader: SpoolReader,
        *,
        intake: Callable[[], Intake],
        note: Callable[[Event, Accepted], None],
        evaluated: Callable[[int], None],
        store: Store,
        clock: Clock,
        retry: float = 1.0,
    ) -> None:
        self.reader = reader
        self.intake = intake
        self.note = note  # the daemon's metrics and decision lines for an accepted event
        self.evaluated = evaluated  # told the position after each batch (back-pressure, wake)
        self.store = store
        self.clock = clock
        self.retry = retry
        self._spooled = asyncio.Event()
        self._spooled.set()  # what a previous run spooled and did not evaluate

    def spooled(self) -> None:
        """The acceptor committed more."""
        self._spooled.set()

    async def run(self) -> None:
        while True:
            await self._spooled.wait()
            self._spooled.clear()
            while batch := self.reader.after(BATCH):
                if not await self._evaluate(batch):
                    await asyncio.sleep(self.retry)
                    continue
                self.reader.advance(batch[-1][0])
                self.evaluated(batch[-1][0])

    async def _evaluate(self, batch: list[tuple[int, Event, str | None]]) -> bool:
        """One intake group; False when the store refused it (read it again later)."""
        intake = self.intake()
        outcomes = await asyncio.gather(
            *(intake.accept(event, key) for _, event, key in batch), return_exceptions=True
        )
        if any(isinstance(o, STORE_DOWN) for o in outcomes):
            log.error(json_line(decision="store_unavailable", source="spool"))
            return False
        for (seq, event, _), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                await self._alert(seq, event, outcome)
            else:
                self.note(event, outcome)
        return True

    async def _alert(self, seq: int, event: Event, error: BaseException) -> None:
        reason = (
            f"spooled event {event.source}/{event.id} (spool #{seq}) failed evaluation: "
            f"{type(error).__name__}: {error}"
        )
        log.error(json_line(decision="spool_event_failed", event_id=event.id, error=reason))
        now = self.clock.now()
        try:
            async with self.store.transaction() as conn:
                await queries.group_alert(
                    conn,
                    group_key=f"spool:{event.source}",
                    kind="intake_error",
                    reason=reason,
                    candidate_id=event.subject,
                    rule_id=None,
                    action_type=None,
                    now=now,
                    window_start=now - timedelta(minutes=10),
                )
        except STORE_DOWN:
            log.error(json_line(decision="alert_not_recorded", event_id=event.id))
