"""The prepared fast path on SQLite stores exactly what the generic SQLAlchemy path stores."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from engine.clock import ManualClock
from engine.config.load import load_config
from engine.events import Event
from engine.runtime import Runtime
from engine.store import prepared
from engine.store import store as store_module
from engine.store.prepared import raw_sqlite
from engine.store.store import Store
from tests.engine.conftest import START, _serve
from tests.engine.test_engine import application

REPO = Path(__file__).resolve().parents[3]


async def _generic_store(path: Path) -> Store:
    """The same schema through plain aiosqlite: every statement goes through SQLAlchemy."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        poolclass=NullPool,
        json_serializer=store_module.json_text,
        json_deserializer=store_module.json_value,
    )
    event.listen(engine.sync_engine, "connect", store_module._sqlite_pragmas)
    store = Store(engine)
    await store.migrate()
    return store


def _unsubscribed(delivery: str, email: str) -> Event:
    return Event(
        id=delivery,
        source="crm/hubspot",
        type="crm.contact.unsubscribed",
        time="2026-03-02T10:00:00Z",
        data={"contact": {"id": "501", "email": email}},
    )


def _traffic() -> list[Event]:
    return [
        application("d1", "c1", "Maya@Example.com"),
        application("d1", "c1", "Maya@Example.com"),  # a redelivery
        application("d2", "c2", "ana@example.com", name="Ana"),
        application(
            "d3", "c1", "maya@example.com", stage="Interview Scheduled", kind="stage_changed"
        ),
        application("d4", "c2", "ana@example.com", stage="Final Interview", kind="stage_changed"),
        application("d5", "c2", "ana@example.com", stage="Final Interview", kind="rejected"),
        _unsubscribed("h1", "maya@example.com"),
        application("d6", "c3", "lee@example.com", name="Lee"),  # stays enrolled
    ]


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _same_ids(value: Any) -> Any:
    """The CRM numbers each send with a random status id; the two runs differ only there."""
    return _UUID.sub("<uuid>", value) if isinstance(value, str) else value


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    names = [
        r[0]
        for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        if r[0] != "alembic_version"
    ]
    dump = {
        name: sorted(
            (tuple(_same_ids(v) for v in row) for row in db.execute(f'SELECT * FROM "{name}"')),
            key=repr,
        )
        for name in names
    }
    db.close()
    return dump


async def test_the_fast_path_stores_what_the_generic_path_stores(tmp_path: Path) -> None:
    config = load_config([REPO / "rules", REPO / "sequences"]).config
    assert config is not None
    dumps = []
    for name in ("fast", "generic"):
        path = tmp_path / f"{name}.db"
        store = await (Store.open(f"sqlite:///{path}") if name == "fast" else _generic_store(path))
        simulator = HubSpotSimulator("t")  # a fresh CRM each, so both see the same answers
        runner, url = await _serve(simulator.app())
        async with aiohttp.ClientSession() as session:
            crm = HubSpotClient(session, url, "t")
            # one at a time: the CRM numbers contacts in the order it sees them
            clock = ManualClock(START)
            runtime = Runtime.build(store, config, clock, crm, concurrency=1)
            for item in _traffic():
                await runtime.intake.accept(item)  # Day-0 steps fire here
            await runtime.dispatcher.run_until_idle()  # claims, identity links, outcomes
            clock.set(START + timedelta(days=8))
            later = await runtime.steps.run_until_idle()  # the tick's statements
            assert "fired" in {o.status for o in later}
        await runner.cleanup()
        async with store.transaction() as conn:
            assert (raw_sqlite(conn) is not None) == (name == "fast")
        await store.close()
        dumps.append(_tables(path))
    fast, generic = dumps
    assert fast["inbox"] and fast["outbox"] and fast["rule_firings"]
    assert fast["enrollments"] and fast["suppressions"]  # the traffic reached every hot path
    assert fast["identity_links"]
    step_statuses = {row[5] for row in fast["enrollment_steps"]}
    assert {"fired", "cancelled"} <= step_statuses  # fired at intake and on the tick
    assert fast == generic


def test_a_remembered_datetime_text_is_the_text_of_that_instant() -> None:
    """The fast path remembers the text of the moments it binds: the same instant in another
    zone is the same text, a naive time is still refused, and what it keeps stays bounded."""
    utc = START.replace(microsecond=123456)
    berlin = utc.astimezone(timezone(timedelta(hours=1)))
    assert prepared._sqlite_datetime(utc) == "2026-03-02 09:00:00.123456"
    assert prepared._sqlite_datetime(berlin) == "2026-03-02 09:00:00.123456"
    with pytest.raises(ValueError, match="naive"):
        prepared._sqlite_datetime(utc.replace(tzinfo=None))
    for n in range(prepared._DATETIME_TEXTS_KEPT + 10):
        moment = utc + timedelta(seconds=n)
        assert prepared._sqlite_datetime(moment) == moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert len(prepared._DATETIME_TEXTS) <= prepared._DATETIME_TEXTS_KEPT
