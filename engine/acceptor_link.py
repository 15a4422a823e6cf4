"""The daemon's side of ``server.acceptor``: it starts the acceptor process, starts it again if
it dies, and has ``SpoolFeeder`` evaluate what it spools.

They talk over the acceptor's standard streams, one line each way: ``ready`` and ``spooled N``
from it; ``settings {json}`` (first, and after each reload) and ``evaluated N`` (its
back-pressure) to it. Its standard input closing is how it learns that the daemon is gone,
even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from engine.acceptor import Settings
from engine.clock import Clock
from engine.events import Event
from engine.intake import Intake
from engine.log_lines import json_line
from engine.spool import SpoolReader
from engine.spool_feed import SpoolFeeder
from engine.store.store import Store
from engine.webhook_handler import Accepted
from engine.webhook_sources import signed_source_secrets

if TYPE_CHECKING:
    from engine.config.daemon import DaemonConfig

log = logging.getLogger("nurture.acceptor")
RESTART_AFTER = 1.0  # seconds before an acceptor that died is started again


def acceptor_settings(
    daemon: DaemonConfig, env: Mapping[str, str], running: Settings | None = None
) -> Settings:
    """What the acceptor is told of ``nurture.yaml``. Where it listens is read at its start
    only; after a reload that drops the section, the running acceptor keeps its settings."""
    section = daemon.server.acceptor
    if section is None:
        assert running is not None, "server.acceptor is not configured"
        listen, backlog = running.listen, running.backlog
    else:
        listen = running.listen if running is not None else section.listen
        backlog = section.backlog
    return Settings(
        listen=listen,
        backlog=backlog,
        max_body=daemon.server.max_body_bytes,
        public_url=daemon.server.public_url,
        sources=signed_source_secrets(daemon, env),
    )


class AcceptorLink:
    def __init__(
        self,
        settings: Settings,
        spool_path: Path,
        *,
        intake: Callable[[], Intake],
        note: Callable[[Event, Accepted], None],
        wake: Callable[[], None],
        store: Store,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.spool_path = spool_path
        self.process: asyncio.subprocess.Process | None = None
        self.reader = SpoolReader(spool_path)

        def evaluated(seq: int) -> None:
            self._tell(f"evaluated {seq}")
            wake()  # the outbox: new actions

        self.feeder = SpoolFeeder(
            self.reader, intake=intake, note=note, evaluated=evaluated, store=store, clock=clock
        )
        self._stopping = False
        self._ready = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def ready(self) -> bool:
        """Listening: it said so, and has not died since."""
        return self._ready and self.running

    async def start(self, attempts: int = 40) -> None:
        """Start the acceptor and wait until it listens; then evaluate what it spools. After a
        SIGKILL of the daemon, the old acceptor may still hold the port for a moment (it stops
        when it sees its standard input close): the start is tried again meanwhile."""
        for attempt in range(attempts):
            try:
                await self._spawn()
                break
            except RuntimeError as exc:
                if attempt == attempts - 1:
                    raise
                log.warning(json_line(decision="acceptor_start_retried", error=str(exc)))
                await asyncio.sleep(RESTART_AFTER / 4)
        self._tasks = [
            asyncio.create_task(self.feeder.run()),
            asyncio.create_task(self._supervise()),
        ]

    async def _spawn(self) -> None:
        self._ready = False
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.acceptor",
            "--spool",
            str(self.spool_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.process.stdin.write(self.settings.line())
        while line := await self.process.stdout.readline():
            if line.strip() == b"ready":
                self._ready = True
                log.info(json_line(decision="acceptor_started", pid=self.process.pid))
                self._tell(f"evaluated {self.reader.position}")
                return
            self._heard(line)
        raise RuntimeError(f"the acceptor exited with {await self.process.wait()} before ready")

    def _heard(self, line: bytes) -> None:
        if line.startswith(b"spooled "):
            self.feeder.spooled()

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

    def reload(self, settings: Settings) -> None:
        """The acceptor serves what a reload of ``nurture.yaml`` says (a restart is told too)."""
        self.settings = settings
        if self.running and self.process is not None and self.process.stdin is not None:
            self.process.stdin.write(settings.line())

    async def stop(self, grace: float) -> None:
        """Stop the acceptor first (its webhooks then fail and are retried), then the feeding;
        what it spooled and was not evaluated waits in the spool for the next start."""
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
        self.reader.close()
