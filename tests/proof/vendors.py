"""The vendors process: HubSpot, Greenhouse Harvest, Slack and SMTP simulators in ONE subprocess.

``python -m tests.proof.vendors --ports-file PATH`` serves the four simulators on loopback
ports the OS picks, plus a small control API, and writes every port to ``PATH`` (JSON, written
atomically) once all of them listen. Running them apart from the load generator and from the
daemon means no two of the three share a CPU-bound event loop.

The control API only drives the simulators; their behaviour stays in ``adapters/*/simulator.py``:

- ``POST /chaos/hubspot {error_rate, rate_limit_rate, retry_after, timeout_rate, hang, outage,
  seed}``: random faults (``adapters.simulation.Chaos``); an absent key keeps its value;
- ``POST /hubspot/latency {"seconds"}``: every HubSpot answer takes this long;
- ``POST /greenhouse/reject {"candidate_id"}``: Harvest answers 422 to every write on it;
- ``GET /state``: counters and records (contacts per normalised email, sends by ``sendId``
  with the requests each got and the time it was accepted, alerts received on Slack and by
  mail, requests seen, faults injected).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.greenhouse.simulator import HarvestSimulator
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.simulation import Chaos
from adapters.slack.simulator import SlackSimulator
from adapters.smtp.simulator import SmtpSimulator

HUBSPOT_TOKEN = "proof-hubspot-token"
HARVEST_KEY = "proof-harvest-key"
CHAOS_KEYS = ("error_rate", "rate_limit_rate", "retry_after", "timeout_rate", "hang", "outage")


class Vendors:
    def __init__(self) -> None:
        self.hubspot = HubSpotSimulator(HUBSPOT_TOKEN)
        # the proof measures nurture, not Harvest's 50-per-10-s demo limit
        self.harvest = HarvestSimulator(HARVEST_KEY, rate_limit=1_000_000)
        self.slack = SlackSimulator()
        self.smtp = SmtpSimulator(starttls=False)

    def control(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/chaos/hubspot", self._chaos)
        app.router.add_post("/hubspot/latency", self._latency)
        app.router.add_post("/greenhouse/reject", self._reject)
        app.router.add_get("/state", self._state)
        return app

    async def _chaos(self, request: web.Request) -> web.Response:
        body = await request.json()
        current = self.hubspot.chaos
        settings = {k: body.get(k, getattr(current, k)) for k in CHAOS_KEYS}
        chaos = Chaos(**settings, seed=body.get("seed"))
        chaos.injected = current.injected  # the counts cover the whole run
        self.hubspot.chaos = chaos
        return web.json_response({k: getattr(chaos, k) for k in CHAOS_KEYS})

    async def _latency(self, request: web.Request) -> web.Response:
        self.hubspot.latency = float((await request.json())["seconds"])
        return web.json_response({"latency": self.hubspot.latency})

    async def _reject(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.harvest.reject_candidate(str(body["candidate_id"]))
        return web.json_response({"rejected": sorted(self.harvest.state.rejected_candidates)})

    async def _state(self, _request: web.Request) -> web.Response:
        hub = self.hubspot.state
        per_email = Counter(str(c.get("email", "")).strip().lower() for c in hub.contacts.values())
        requests_per_send = Counter(hub.send_requests)
        sends = {
            send_id: {
                "to": send["to"],
                "email_id": send["emailId"],
                "at": send["at"],
                "requests": requests_per_send[send_id],
            }
            for send_id, send in hub.sends.items()
        }
        harvest_requests = self.harvest.state.requests
        writes = [r for r in harvest_requests if r.method != "GET"]
        return web.json_response(
            {
                "hubspot": {
                    "contacts_per_email": dict(per_email),
                    "contact_ids": dict(hub.by_email),
                    # time.monotonic() of each create: the load benchmark's webhook -> CRM
                    "created_at": {e: hub.created_at.get(c) for e, c in hub.by_email.items()},
                    "sends": sends,
                    "requests": hub.requests,
                    "create_requests": hub.create_requests,
                    "faults_injected": dict(self.hubspot.chaos.injected),
                },
                "greenhouse": {
                    "requests": len(harvest_requests),
                    "writes": [
                        {"method": r.method, "path": r.path, "body": r.body} for r in writes
                    ],
                    "tags": {cid: self.harvest.tags_of(cid) for cid in self.harvest.state.applied},
                    "rejected_candidates": sorted(self.harvest.state.rejected_candidates),
                },
                "slack": [m.get("text", "") for m in self.slack.messages],
                "mail": [
                    {"subject": m.subject, "body": m.body, "to": list(m.rcpt_tos)}
                    for m in self.smtp.messages
                ],
            },
            dumps=lambda value: json.dumps(value, default=_plain),
        )


def _plain(value: Any) -> Any:
    try:
        return asdict(value)
    except TypeError:
        return str(value)


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


async def main(ports_file: Path) -> None:
    vendors = Vendors()
    vendors.smtp.start()
    runners = []
    ports: dict[str, int] = {"smtp": vendors.smtp.port}
    try:
        for name, app in (
            ("hubspot", vendors.hubspot.app()),
            ("greenhouse", vendors.harvest.app()),
            ("slack", vendors.slack.app()),
            ("control", vendors.control()),
        ):
            runner, ports[name] = await _serve(app)
            runners.append(runner)
        ports["pid"] = os.getpid()
        partial = ports_file.with_suffix(".tmp")
        partial.write_text(json.dumps(ports))
        partial.replace(ports_file)  # the harness never reads half a file
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        vendors.smtp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports-file", required=True, type=Path)
    asyncio.run(main(parser.parse_args().ports_file))
