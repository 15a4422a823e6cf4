"""Crash test: the engine in a real subprocess, killed with SIGKILL at random moments.

Each run reads the same stream of events (as a vendor redelivers after a failed webhook) and
is killed mid-intake or mid-dispatch, once the CRM has seen a random number of further
requests (a point in the work, not a moment: a faster engine finished its runs before a timed
kill came); a final run completes. Afterwards the loopback CRM must
hold exactly one contact per person and exactly one email per application, and the store must
have every event processed with no action left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from adapters.hubspot.simulator import HubSpotSimulator
from engine.store import queries
from engine.store.store import Store
from tests.engine.conftest import _serve

RULES = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> contact + welcome email
    trigger: ats.application.created
    condition: "candidate.email != `null`"
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email, firstname: candidate.first_name}
      - action: crm.send_email
        params: {template: welcome}
        fields: {to: candidate.email, first_name: candidate.first_name}
templates:
  - id: welcome
    subject: "Hi {first_name}"
    crm_email_id: "100001"
    category: transactional
    variables: [first_name]
"""
PEOPLE = 800
APPLICATIONS = 1200  # some people apply twice, under a second ATS record


def _events(path: Path) -> dict[str, int]:
    rng = random.Random(11)
    per_email: dict[str, int] = {}
    with path.open("w") as out:
        for n in range(APPLICATIONS):
            person = n if n < PEOPLE else rng.randrange(PEOPLE)
            email = f"person{person}@example.com"
            per_email[email] = per_email.get(email, 0) + 1
            event = {
                "id": f"delivery-{n}",
                "source": "ats/greenhouse",
                "type": "ats.application.created",
                "time": "2026-03-02T09:00:00Z",
                "subject": f"cand-{n}",
                "data": {
                    "candidate": {"id": f"cand-{n}", "email": email, "first_name": f"P{person}"},
                    "application": {"id": f"app-{n}", "status": "active"},
                },
            }
            out.write(json.dumps(event) + "\n")
    return per_email


async def _run_engine(
    store_url: str, crm_url: str, events: Path, config: Path, kill_when: Callable[[], bool] | None
) -> int | None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.cli",
        "ingest",
        str(events),
        str(config),
        "--store",
        store_url,
        "--crm-url",
        crm_url,
        "--lease",  # short, so the final run soon takes over what a killed run had claimed
        "1",
        "--wait",
        "60",
        env={**os.environ, "HUBSPOT_TOKEN": "test-token"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    if kill_when is None:
        try:
            _, err = await asyncio.wait_for(process.communicate(), timeout=120)
        except TimeoutError:
            process.send_signal(signal.SIGKILL)
            _, err = await process.communicate()
            raise AssertionError("final run hung:\n" + err.decode()[-3000:]) from None
        assert process.returncode == 0, err.decode()
        return process.returncode
    for _ in range(12_000):  # polls the in-process CRM; bounded at about 120 s
        if process.returncode is not None:
            return process.returncode
        if kill_when():
            process.send_signal(signal.SIGKILL)
            await process.wait()
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=0.01)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    raise AssertionError("a run neither finished nor reached its kill point")


async def test_sigkill_at_random_points_loses_nothing_and_doubles_nothing(
    store: Store, tmp_path: Path
) -> None:
    simulator = HubSpotSimulator("test-token", latency=0.002, search_delay=30)
    runner, crm_url = await _serve(simulator.app())
    config = tmp_path / "config"
    config.mkdir()
    (config / "rules.yaml").write_text(RULES)
    events = tmp_path / "events.jsonl"
    per_email = _events(events)
    store_url = store.engine.url.render_as_string(hide_password=False)
    if store.dialect == "postgresql":
        async with store.read() as conn:
            schema = (await conn.exec_driver_sql("SELECT current_schema()")).scalar_one()
        store_url += f"?search_path={schema}"
    rng = random.Random(5)
    kills = 0
    try:
        for _ in range(5):
            # about 3,600 CRM requests in all; five kills take at most 2,000 of them
            kill_at = simulator.state.requests + rng.randint(1, 400)

            def reached(at: int = kill_at) -> bool:
                return simulator.state.requests >= at

            if (
                await _run_engine(
                    store_url,
                    crm_url,
                    events,
                    config,
                    kill_when=reached,
                )
                is None
            ):
                kills += 1
        await _run_engine(store_url, crm_url, events, config, kill_when=None)
    finally:
        await runner.cleanup()
    assert kills >= 3, "the runs finished before they could be killed; the test proved nothing"
    stats = simulator.stats()
    assert stats["duplicate_emails"] == 0
    assert stats["contacts"] == len(per_email)  # exactly one contact per person
    sends_per_email: dict[str, int] = {}
    for send in simulator.state.sends.values():
        sends_per_email[send["to"]] = sends_per_email.get(send["to"], 0) + 1
    assert sends_per_email == per_email  # one welcome per application, none twice
    async with store.read() as conn:
        counts = await queries.status_counts(conn)
        events_stored = (await conn.exec_driver_sql("SELECT count(*) FROM inbox")).scalar_one()
        dead = await queries.dead_letters(conn)
    assert events_stored == APPLICATIONS
    assert counts == {"done": 2 * APPLICATIONS}, (counts, [d["last_error"] for d in dead][:3])
