"""The daemon's side of ``server.acceptor``: it starts the acceptor process, restarts it if it
dies, and evaluates what it spooled, in order, through the ordinary intake.

An event fails evaluation in one of two ways. The store is down: the batch is read again a
second later, from the same position (nothing is skipped). The event itself fails (a defect
the vendor's retry could not have cured either): an alert names its delivery and the reason,
it is logged, and the spool keeps it for an hour for inspection. Either way nothing is lost
silently.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from engine.clock import Clock
from engine.events import Event
from engine.intake import Accepted, Intake
from engine.log_lines import json_line
from engine.spool import SpoolReader
from engine.store import queries
from engine.store.store import STORE_DOWN, Store

log = logging.getLogger("nurture.acceptor")
BATCH = 64  # spooled events evaluated together (one intake group, one commit)
RETRY_STORE = 1.0  # seconds before a batch the store refused is read again
RESTART_AFTER = 1.0  # seconds before an acceptor that died is started again


class AcceptorLink:
    def __init__(
        self,
        config_path: Path,
        spool_path: Path,
        *,
        intake: Callable[[], Intake],
        note: Callable[[Event, Accepted], None],
        wake: Callable[[], None],
        store: Store,
        clock: Clock,
    ) -> None:
        self.config_path = config_path
        self.spool_path = spool_path
        self.intake = intake
        self.note = note
        self.wake = wake
        self.store = store
        self.clock = clock
        self.process: asyncio.subprocess.Process | None = None
        self._spooled = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.reader: SpoolReader | None = None
        self._ready = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def ready(self) -> bool:
        """Listening: it said so, and has not died since."""
        return self._ready and self.running

    async def start(self) -> None:
        """Start the acceptor and wait until it listens; then evaluate what it spools."""
        self.reader = SpoolReader(self.spool_path)
        await self._spawn()
        self._spooled.set()  # what a previous run spooled and did not evaluate
        self._tasks = [
            asyncio.create_task(self._feed()),
            asyncio.create_task(self._supervise()),
        ]

    async def _spawn(self) -> None:
        self._ready = False
        command = [sys.executable, "-m", "engine.acceptor", "--config", str(self.config_path)]
        self.process = await asyncio.create_subprocess_exec(
            *command,
            "--spool",
            str(self.spool_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if line.strip() == b"ready":
                self._ready = True
                log.info(json_line(decision="acceptor_started", pid=self.process.pid))
                self._tell(f"evaluated {self.reader.position if self.reader else 0}")
                return
            self._heard(line)
        raise RuntimeError(f"the acceptor exited with {await self.process.wait()} before ready")

    def _heard(self, line: bytes) -> None:
        if line.startswith(b"spooled "):
            self._spooled.set()

    def _tell(self, line: str) -> None:
        if self.running and self.process is not None and self.process.stdin is not None:
            self.process.stdin.write(line.encode() + b"\n")

    async def _supervise(self) -> None:
        """Hear the acceptor; start it again if it dies (its spool stays where it was)."""
        while not self._stopping:
            assert self.process is not None and self.process.stdout is not None
            while line := await self.process.stdout.readline():
                self._heard(line)
            code = await self.process.wait()
            if self._stopping:
                return
            log.error(json_line(decision="acceptor_died", code=code))
            await asyncio.sleep(RESTART_AFTER)
            try:
                await self._spawn()
            except (OSError, RuntimeError) as exc:
                log.error(json_line(decision="acceptor_restart_failed", error=str(exc)))

    async def _feed(self) -> None:
        assert self.reader is not None
        while True:
            await self._spooled.wait()
            self._spooled.clear()
            while batch := self.reader.after(BATCH):
                if not await self._evaluate(batch):
                    await asyncio.sleep(RETRY_STORE)
                    continue
                self.reader.advance(batch[-1][0])
                self._tell(f"evaluated {batch[-1][0]}")
                self.wake()

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

    def reload(self) -> None:
        """The acceptor re-reads its sources from ``nurture.yaml``."""
        if self.running and self.process is not None:
            self.process.send_signal(1)  # SIGHUP

    async def stop(self, grace: float) -> None:
        """Stop the acceptor first (webhooks then fail and are retried), then the feeding."""
        self._stopping = True
        if self.running and self.process is not None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=grace)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.reader is not None:
            self.reader.close()
