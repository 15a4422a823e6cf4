"""``python -m engine.acceptor``: the webhook acceptor process (``server.acceptor``).

The daemon starts it and talks to it over its standard streams, one line each way. The daemon
writes ``settings {json}`` first (and again after a reload: the signed sources with their
secrets, the body limit, the public URL, the back-pressure backlog and where to listen), then
``evaluated N`` as it goes (how far it has evaluated). The acceptor prints ``ready`` once
listening and ``spooled N`` after each commit (N: the last spool sequence number).

It answers ``POST /webhooks/{source}`` with the daemon's own handler (same verification, errors
and bodies), but its 2xx means "in the spool", and it holds an acknowledgement while more than
``backlog`` spooled events wait for evaluation, so a sender at full speed is slowed to what the
daemon completes instead of building a queue. Its standard input closing means the daemon is
gone (even by SIGKILL): it stops. SIGTERM answers 503 from then on and stops; SIGHUP is the
daemon's to act on, and is ignored here.

It reads no config file and loads neither the store nor the config models: what it needs comes
from the daemon, which has validated it, so the two can never disagree about a reload.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.events import Event
from engine.log_lines import configure_logging, json_line
from engine.metrics import Metrics
from engine.spool import Spool
from engine.webhook_handler import Accepted, ServerState, WebhookHandler, json_errors
from engine.webhook_sources import signed_sources

log = logging.getLogger("nurture.acceptor")
PRUNE_EVERY = 1024  # spooled events between two prunes of the evaluated ones


class SpoolIntake:
    """What the webhook handler hands events to: the spool, with back-pressure."""

    def __init__(self, spool: Spool, backlog: int, announce: Callable[[int], None]) -> None:
        self.spool = spool
        self.backlog = backlog
        self.evaluated = 0
        self._announce = announce
        self._progress = asyncio.Event()
        self._since_prune = 0

    def release(self) -> None:
        """Stopping: acknowledge what waits on back-pressure (it is in the spool)."""
        self.backlog = sys.maxsize
        self._progress.set()

    def note_evaluated(self, seq: int) -> None:
        self.evaluated = max(self.evaluated, seq)
        self._progress.set()

    async def accept(self, event: Event, replay_key: str | None = None) -> Accepted:
        duplicate = await self.spool.append(event, replay_key)
        if not duplicate:
            self._announce(self.spool.last)
            self._since_prune += 1
            if self._since_prune >= PRUNE_EVERY:
                self._since_prune = 0
                self.spool.prune(self.evaluated)
        while self.spool.last - self.evaluated > self.backlog:
            self._progress.clear()
            await self._progress.wait()
        return Accepted(None, duplicate=duplicate)


class AcceptorServer(WebhookHandler):
    """The daemon's webhook handler on a spool; decisions are logged where they are made."""

    def note_accepted(self, event: Event, outcome: Accepted) -> None:
        super().note_accepted(event, outcome)
        if not outcome.duplicate:
            log.debug(json_line(decision="spooled", event_id=event.id, source=event.source))

    def routes(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body + 1, middlewares=[json_errors])
        app.router.add_post("/webhooks/{source}", self._webhook)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


@dataclass(frozen=True)
class Settings:
    """What the daemon tells its acceptor (``settings {json}``); see ``acceptor_settings``."""

    listen: str
    backlog: int
    max_body: int
    public_url: str | None
    sources: dict[str, list[str]]  # source name -> its webhook secrets

    def line(self) -> bytes:
        return b"settings " + json.dumps(self.__dict__).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Settings | None:
        """The settings a ``settings {json}`` line carries; None for any other line."""
        word, _, value = line.partition(b" ")
        if word != b"settings":
            return None
        fields: dict[str, Any] = json.loads(value)
        return cls(**fields)


async def serve(spool_path: Path) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    settings = Settings.parse(await reader.readline())
    if settings is None:
        raise SystemExit("acceptor: the daemon sent no settings")
    spool = Spool(spool_path)
    out = sys.stdout
    stop = asyncio.Event()

    def announce(seq: int) -> None:
        try:
            out.write(f"spooled {seq}\n")
            out.flush()
        except OSError:  # the daemon is gone (its end of the pipe closed): stop with it
            stop.set()

    intake = SpoolIntake(spool, settings.backlog, announce)
    state = ServerState()
    server = AcceptorServer(
        lambda: intake,
        signed_sources(settings.sources),
        Metrics(),
        max_body=settings.max_body,
        state=state,
        public_url=settings.public_url,
    )
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # a terminal's hangup reaches the whole process group; the daemon reloads and tells us
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    # a short wait for in-flight answers at the end: the next start (after a SIGKILL of the
    # daemon) needs this port back, and what waited on back-pressure is released first
    runner = web.AppRunner(server.routes(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    host, port = settings.listen.rsplit(":", 1)
    await web.TCPSite(runner, host, int(port)).start()
    announce(spool.last)
    out.write("ready\n")
    out.flush()

    async def listen_to_daemon() -> None:
        while line := await reader.readline():
            fresh = Settings.parse(line)
            if fresh is not None:  # a reload: a webhook secret rotated, a vendor added
                server.route_sources(signed_sources(fresh.sources), fresh.public_url)
                intake.backlog = fresh.backlog
                log.info(json_line(decision="acceptor_reloaded", sources=sorted(fresh.sources)))
            elif line.startswith(b"evaluated "):
                intake.note_evaluated(int(line.split()[1]))
        stop.set()  # the daemon is gone

    listener = asyncio.create_task(listen_to_daemon())
    await stop.wait()
    state.accepting = False  # 503 from here on: the sender retries against the next start
    listener.cancel()
    intake.release()
    await runner.cleanup()
    spool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.acceptor")
    parser.add_argument("--spool", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging(debug=False)
    return asyncio.run(serve(args.spool))


if __name__ == "__main__":
    raise SystemExit(main())
