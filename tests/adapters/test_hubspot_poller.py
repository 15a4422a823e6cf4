"""The HubSpot engagement poller against the simulator: pages, cursor, restart, write-backs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from adapters.hubspot.poller import EngagementPoller
from adapters.hubspot.simulator import HubSpotSimulator
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.cursors import StoreCursors
from engine.runtime import Runtime
from engine.store import queries
from engine.store.store import Store
from engine.testing import Recorder

CONFIG = """\
version: 1
rules:
  - id: click-flag
    description: CRM email click -> ATS re-engagement flag
    trigger: crm.email.clicked
    condition: "candidate != `null`"
    actions:
      - action: ats.add_tag
        params: {tag: Re-engaged}
        fields: {candidate_id: candidate.id}
  - id: unsubscribe
    description: CRM unsubscribe -> suppression
    trigger: crm.contact.unsubscribed
    actions:
      - action: suppress
        params: {reason: unsubscribed}
        fields: {email: contact.email}
"""
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def poller_of(
    session: aiohttp.ClientSession,
    url: str,
    store: Store,
    clock: ManualClock,
    sink: Callable[[Any], Awaitable[Any]],
) -> EngagementPoller:
    """The poller as the daemon builds it, on the store's cursors, in pages of 100."""
    return EngagementPoller(
        session,
        url,
        "test-token",
        StoreCursors(store, clock),
        sink,
        start=T0 - timedelta(days=1),
        page_size=100,
    )


async def test_poller_pages_resumes_from_its_cursor_without_gaps_or_doubles(
    store: Store,
    hubspot: tuple[HubSpotSimulator, str],
    make_config: Callable[[str], ConfigSet],
) -> None:
    simulator, url = hubspot
    clock = ManualClock(T0)
    recorder = Recorder(clock)
    runtime = Runtime.build(
        store, make_config(CONFIG), clock, recorder, ats=recorder, notifier=recorder
    )
    async with store.transaction() as conn:  # maya's contact is linked to ATS record 71
        await queries.save_link(conn, "maya@example.com", "51", "71", T0)
    for n in range(230):
        simulator.add_email_event("OPEN", f"p{n}@example.com", ms(T0 + timedelta(minutes=n)))
    simulator.add_email_event(
        "CLICK", "Maya@Example.com", ms(T0 + timedelta(hours=5)), url="https://jobs.example.com/1"
    )
    simulator.add_unsubscribe("zoe@example.com", ms(T0 + timedelta(hours=5)))

    async def sink(event):
        return await runtime.intake.accept(event)

    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        poller = poller_of(session, url, store, clock, sink)
        assert await poller.poll_once() == 232  # three pages of opens, a click, an unsubscribe
        simulator.add_email_event("OPEN", "late@example.com", ms(T0 + timedelta(hours=6)))
        restarted = poller_of(session, url, store, clock, sink)
        seen_again = await restarted.poll_once()
        await runtime.dispatcher.run_until_idle()
        async with store.read() as conn:
            stored = (await conn.exec_driver_sql("SELECT count(*) FROM inbox")).scalar_one()
            zoe = await queries.suppression_reason(conn, "zoe@example.com")
            cursor = await queries.get_cursor(conn, "hubspot:email-events")
    assert stored == 233  # every event once: the re-read overlap was acknowledged as duplicate
    assert seen_again < 10  # the restart read from its cursor, not from the start
    assert cursor == (T0 + timedelta(hours=6)).isoformat()
    assert zoe == "unsubscribed"
    assert recorder.ats == [
        {"at": T0, "call": "add_tag", "candidate_id": "71", "value": "Re-engaged"}
    ]


async def test_the_cursor_passes_event_kinds_nobody_acts_on(
    store: Store, hubspot: tuple[HubSpotSimulator, str]
) -> None:
    """Sends and deliveries far outnumber opens and clicks: when only mapped events moved the
    cursor, every sweep re-read every delivery since the last open, a window that grew for as
    long as nobody opened anything."""
    simulator, url = hubspot
    clock = ManualClock(T0)
    for n in range(250):
        simulator.add_email_event("DELIVERED", f"p{n}@example.com", ms(T0 + timedelta(minutes=n)))
    handed: list[object] = []

    async def sink(event: object) -> None:
        handed.append(event)

    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        poller = poller_of(session, url, store, clock, sink)
        assert await poller.poll_once() == 0
        first = simulator.stats()["requests"]
        assert await poller.poll_once() == 0
        second = simulator.stats()["requests"] - first
        async with store.read() as conn:
            cursor = await queries.get_cursor(conn, "hubspot:email-events")
    assert handed == []
    assert first == 3 + 1  # three pages of deliveries, one empty timeline page
    assert second == 1 + 1  # then only the overlap behind the cursor: one page each
    assert cursor == (T0 + timedelta(minutes=249)).isoformat()
