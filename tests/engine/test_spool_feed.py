"""``SpoolFeeder``: what the acceptor spooled is evaluated in order, once, and never lost
silently: a store that is down is waited out, an event that fails alone is alerted by name."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.hubspot.client import HubSpotClient
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.events import Event
from engine.intake import Intake
from engine.runtime import Runtime
from engine.spool import Spool, SpoolReader
from engine.spool_feed import SpoolFeeder
from engine.store.store import Store
from engine.store.tables import alerts, inbox
from engine.webhook_handler import Accepted
from tests.engine.test_engine import WITHOUT_BROKEN_RULE, application
from tests.engine.test_store_outage import proxied  # noqa: F401 - a PostgreSQL store behind a proxy
from tests.proof.pgproxy import TcpProxy


async def _until(check: Callable[[], bool], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def _spooled(path: Path, *events: Event) -> None:
    spool = Spool(path)
    for event in events:
        assert await spool.append(event, None) is False
    spool.close()


class Fed:
    """A feeder on a runtime, with what it reported."""

    def __init__(self, spool: Path, runtime: Runtime, store: Store, clock: ManualClock) -> None:
        self.noted: list[str] = []
        self.evaluated: list[int] = []
        self.batches = 0  # intakes handed out: one per batch tried

        def intake() -> Intake:
            self.batches += 1
            return runtime.intake

        def note(event: Event, _outcome: Accepted) -> None:
            self.noted.append(event.id)

        self.feeder = SpoolFeeder(
            SpoolReader(spool),
            intake=intake,
            note=note,
            evaluated=self.evaluated.append,
            store=store,
            clock=clock,
            retry=0.05,
        )


async def test_a_spooled_event_that_fails_evaluation_is_alerted_by_its_delivery_and_the_rest_go_on(
    tmp_path: Path, clock: ManualClock, crm: HubSpotClient, make_config: Callable[[str], ConfigSet]
) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")
    # the defect stands in as a real trigger: the store refuses this one delivery, and only it
    with contextlib.closing(sqlite3.connect(tmp_path / "nurture.db")) as db:
        db.execute(
            "CREATE TRIGGER poisoned BEFORE INSERT ON inbox WHEN NEW.delivery_id = 'd-poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned delivery'); END"
        )
        db.commit()
    runtime = Runtime.build(store, make_config(WITHOUT_BROKEN_RULE), clock, crm)
    await _spooled(
        tmp_path / "spool.db",
        application("d1", "c1", "maya@example.com"),
        application("d-poison", "c2", "li@example.com"),
        application("d3", "c3", "ana@example.com"),
    )
    fed = Fed(tmp_path / "spool.db", runtime, store, clock)
    task = asyncio.create_task(fed.feeder.run())
    try:
        await _until(lambda: fed.evaluated == [3])
    finally:
        task.cancel()
    assert fed.noted == ["d1", "d3"]
    async with store.read() as conn:
        stored = (await conn.execute(select(inbox.c.delivery_id))).scalars().all()
        raised = (await conn.execute(select(alerts.c.kind, alerts.c.reason))).all()
    assert sorted(stored) == ["d1", "d3"]
    assert len(raised) == 1 and raised[0].kind == "intake_error"
    assert "d-poison" in raised[0].reason and "poisoned delivery" in raised[0].reason
    assert SpoolReader(tmp_path / "spool.db").position == 3  # kept for the next start
    await store.close()


@pytest.mark.postgres
async def test_spooled_events_wait_out_a_store_that_is_down_and_none_is_skipped(
    tmp_path: Path,
    proxied: tuple[Store, TcpProxy],  # noqa: F811 - the fixture, imported above
    clock: ManualClock,
    crm: HubSpotClient,
    make_config: Callable[[str], ConfigSet],
) -> None:
    store, proxy = proxied
    runtime = Runtime.build(store, make_config(WITHOUT_BROKEN_RULE), clock, crm)
    await _spooled(
        tmp_path / "spool.db",
        application("d1", "c1", "maya@example.com"),
        application("d2", "c2", "li@example.com"),
    )
    fed = Fed(tmp_path / "spool.db", runtime, store, clock)
    await proxy.cut()
    task = asyncio.create_task(fed.feeder.run())
    try:
        await _until(lambda: fed.batches >= 3)  # tried, refused, tried again
        assert fed.evaluated == [] and fed.noted == []
        await proxy.restore()
        await _until(lambda: fed.evaluated == [2])
    finally:
        task.cancel()
    assert fed.noted == ["d1", "d2"]
    async with store.read() as conn:
        stored = (await conn.execute(select(inbox.c.delivery_id))).scalars().all()
    assert sorted(stored) == ["d1", "d2"]
