"""Lever deliveries through the daemon's webhook server: verified, read back, stored."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from adapters.lever.client import LeverClient
from adapters.lever.simulator import LeverSimulator, signed_webhook
from adapters.sources import lever as lever_source
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.metrics import Metrics
from engine.runtime import Runtime
from engine.server import WebhookServer
from engine.store.store import Store
from engine.testing import Recorder
from tests.adapters.test_lever import CONTACT, OPP, SECRET, client, lever  # noqa: F401
from tests.engine.conftest import _serve

CONFIG = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> contact
    trigger: ats.application.created
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email}
"""


async def test_a_signed_lever_delivery_is_read_back_and_stored_and_a_forged_one_is_401(
    store: Store,
    clock: ManualClock,
    make_config: Callable[[str], ConfigSet],
    client: LeverClient,  # noqa: F811 - the fixture, imported above
    lever: tuple[LeverSimulator, str],  # noqa: F811
) -> None:
    recorder = Recorder(clock)
    runtime = Runtime.build(
        store, make_config(CONFIG), clock, recorder, ats=recorder, notifier=recorder
    )
    server = WebhookServer(
        lambda: runtime.intake, store, {"lever": lever_source([SECRET], client)}, clock, Metrics()
    )
    runner, url = await _serve(server.app())
    now_ms = int(time.time() * 1000)  # Lever's replay window is checked on the wall clock
    good = signed_webhook(
        "applicationCreated",
        {"opportunityId": OPP, "contactId": CONTACT},
        secret=SECRET,
        triggered_at=now_ms,
    )
    forged = signed_webhook(
        "applicationCreated",
        {"opportunityId": OPP, "contactId": CONTACT},
        secret="not-the-secret",
        triggered_at=now_ms,
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/webhooks/lever", data=forged) as answer:
                assert answer.status == 401
                assert (await answer.json())["error"] == "signature_mismatch"
            async with session.post(f"{url}/webhooks/lever", data=good) as answer:
                assert answer.status == 200, await answer.text()
                assert await answer.json() == {"accepted": 1, "duplicates": 0}
    finally:
        await runner.cleanup()
    async with store.read() as conn:
        rows = (await conn.exec_driver_sql("SELECT type, subject FROM inbox")).all()
    assert [tuple(r) for r in rows] == [("ats.application.created", CONTACT)]
