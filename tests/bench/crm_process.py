"""The benchmark's CRM in a process of its own, as a vendor is: ``python -m
tests.bench.crm_process PORT_FILE LATENCY``.

It serves the loopback HubSpot simulator, stamping ``time.perf_counter()`` when each send
reaches its handler (CLOCK_MONOTONIC, the same clock in every process of this machine, so the
engine's process can subtract its own stamps), and answers ``GET /_bench/received`` with those
stamps and the request count.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from aiohttp import web

from adapters.hubspot.simulator import HubSpotSimulator

TOKEN = "bench-token"


class TimedHubSpot(HubSpotSimulator):
    def __init__(self, token: str, *, latency: float) -> None:
        super().__init__(token, latency=latency)
        self.received: dict[str, float] = {}

    async def _send(self, request: web.Request) -> web.Response:
        stamp = time.perf_counter()
        body = await request.json()  # aiohttp keeps the body: the simulator reads it again
        self.received.setdefault(str((body.get("message") or {}).get("sendId")), stamp)
        return await super()._send(request)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/_bench/received", self._received)
        return app

    async def _received(self, _request: web.Request) -> web.Response:
        return web.json_response({"received": self.received, "requests": self.state.requests})


async def serve(port_file: Path, latency: float) -> None:
    runner = web.AppRunner(TimedHubSpot(TOKEN, latency=latency).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    port_file.write_text(str(port))
    await asyncio.Event().wait()  # until the benchmark terminates this process


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), float(sys.argv[2])))
