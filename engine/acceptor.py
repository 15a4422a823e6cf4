"""``python -m engine.acceptor``: the webhook acceptor process (``server.acceptor``).

The daemon starts it and talks to it over its standard streams, one line each way:
it prints ``ready`` once listening and ``spooled N`` after each commit (N: the last spool
sequence number), and reads ``evaluated N`` (how far the daemon has evaluated). It answers
``POST /webhooks/{source}`` exactly as the daemon does (same verification, errors and
bodies), but its 2xx means "in the spool", and it holds an acknowledgement while more than
``backlog`` spooled events wait for evaluation, so a sender at full speed is slowed to what
the daemon completes instead of building a queue. Its standard input closing means the daemon
is gone (even by SIGKILL): it stops. SIGHUP re-reads ``nurture.yaml``'s sources; SIGTERM
answers 503 from then on and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from aiohttp import web

from engine.clock import SystemClock
from engine.config.daemon import DaemonConfig
from engine.config.load import load_config
from engine.events import Event
from engine.intake import Accepted
from engine.log_lines import json_line
from engine.metrics import Metrics
from engine.server import ServerState, WebhookServer, json_errors
from engine.spool import Spool
from engine.store.store import Store
from engine.webhook_sources import webhook_sources

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


class AcceptorServer(WebhookServer):
    """The daemon's webhook handler on a spool; decisions are logged where they are made."""

    def note_accepted(self, event: Event, outcome: Accepted) -> None:
        if not outcome.duplicate:
            log.debug(json_line(decision="spooled", event_id=event.id, source=event.source))

    def routes(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body + 1, middlewares=[json_errors])
        app.router.add_post("/webhooks/{source}", self._webhook)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._acceptor_metrics)
        return app

    async def _acceptor_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


def _daemon_config(path: Path) -> DaemonConfig:
    loaded = load_config([], daemon_path=path)
    if loaded.config is None or loaded.config.daemon is None:
        raise SystemExit("acceptor: " + "; ".join(d.format_text() for d in loaded.errors))
    return loaded.config.daemon


async def serve(config_path: Path, spool_path: Path) -> int:
    daemon = _daemon_config(config_path)
    assert daemon.server.acceptor is not None, "server.acceptor is not configured"
    settings = daemon.server.acceptor
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
        cast(Store, None),  # the acceptor serves no endpoint that reads the store
        webhook_sources(daemon, os.environ),
        SystemClock(),
        Metrics(),
        max_body=daemon.server.max_body_bytes,
        state=state,
        public_url=daemon.server.public_url,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reload() -> None:
        try:
            fresh = _daemon_config(config_path)
        except SystemExit as refused:  # the daemon alerts on a broken file; keep serving
            log.error(json_line(decision="acceptor_reload_rejected", error=str(refused)))
            return
        server.serve(webhook_sources(fresh, os.environ), None, fresh.server.public_url)
        log.info(json_line(decision="acceptor_reloaded", sources=sorted(server.sources)))

    loop.add_signal_handler(signal.SIGHUP, reload)
    # a short wait for in-flight answers at the end: the next start (after a SIGKILL of the
    # daemon) needs this port back, and what waited on back-pressure is released first
    runner = web.AppRunner(server.routes(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    host, port = settings.listen.rsplit(":", 1)
    await web.TCPSite(runner, host, int(port)).start()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    announce(spool.last)
    out.write("ready\n")
    out.flush()

    async def listen_to_daemon() -> None:
        while line := await reader.readline():
            word, _, value = line.decode().partition(" ")
            if word == "evaluated":
                intake.note_evaluated(int(value))
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
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--spool", type=Path, required=True)
    args = parser.parse_args(argv)
    from engine.daemon import configure_logging

    configure_logging(debug=False)
    return asyncio.run(serve(args.config, args.spool))


if __name__ == "__main__":
    raise SystemExit(main())
