"""The store going away mid-batch: PostgreSQL behind a loopback TCP proxy the test cuts.

The outbox must neither dead-letter an action whose handler lost the store (that is our
failure, not the action's) nor leave a batch claimed until its lease expires because the
outcome could not be written: it keeps the outcome and writes it when the store is back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.outbox import Outcome
from engine.runtime import Runtime
from engine.store import queries
from engine.store.queries import Claimed
from engine.store.store import Store
from engine.store.tables import outbox
from tests.engine.conftest import POSTGRES_URL
from tests.engine.test_engine import WITHOUT_BROKEN_RULE, application
from tests.proof.pgproxy import TcpProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Store, TcpProxy]]:
    """A store on the shared server, reached through a proxy the test can cut."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    proxy = TcpProxy()
    port = await proxy.start()
    url = POSTGRES_URL.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    store = await Store.open(url, schema=schema)
    try:
        yield store, proxy
    finally:
        await store.close()
        await proxy.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


@dataclass
class Outage:
    """A runtime on the proxied store, and the means to cut the store mid-call."""

    store: Store
    proxy: TcpProxy
    simulator: HubSpotSimulator
    clock: ManualClock
    runtime: Runtime

    async def one_batch_with_the_store_cut_mid_call(self) -> list[Outcome]:
        """One application's first batch, with the store cut for a second while its vendor
        call is in flight (the simulator answers after 0.3 s); the batch must still hold its
        outcome then."""
        self.simulator.latency = 0.3
        await self.runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        batch = asyncio.create_task(self.runtime.dispatcher.run_once())
        while self.simulator.stats()["requests"] == 0:  # the handler has reached the vendor
            await asyncio.sleep(0.01)
        await self.proxy.cut()
        await asyncio.sleep(1.0)  # the store stays away while the batch ends and records
        assert not batch.done(), "the outcome was given up while the lease still held"
        await self.proxy.restore()
        return await batch


@pytest.fixture
def outage(
    proxied: tuple[Store, TcpProxy],
    hubspot: tuple[HubSpotSimulator, str],
    crm: HubSpotClient,
    clock: ManualClock,
    make_config: Callable[[str], ConfigSet],
) -> Outage:
    store, proxy = proxied
    runtime = Runtime.build(store, make_config(WITHOUT_BROKEN_RULE), clock, crm)
    return Outage(store, proxy, hubspot[0], clock, runtime)


async def test_a_store_outage_mid_call_keeps_the_outcome_and_its_link_until_the_store_is_back(
    outage: Outage,
) -> None:
    """The contact was created while the store was away: that is a fact, recorded (with the
    identity link the upsert learned, in the outcome's transaction) once the store is back,
    neither dead-lettered nor left claimed until the lease expires."""
    store, runtime, simulator = outage.store, outage.runtime, outage.simulator
    async with asyncio.timeout(30):
        outcomes = await outage.one_batch_with_the_store_cut_mid_call()
        assert [o.status for o in outcomes] == ["done"]
        assert await queries.contact_id_now(store, "maya@example.com") is not None
        rest = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in rest] == ["done"]
    assert simulator.stats()["contacts"] == 1 and simulator.stats()["sends"] == 1


async def test_a_handler_that_loses_the_store_is_retried_not_dead_lettered(
    outage: Outage,
) -> None:
    """A handler that reads the store after its vendor call (as the SMTP path does) and finds
    it gone: our failure, not the action's; retried without spending an attempt."""
    store, runtime, simulator = outage.store, outage.runtime, outage.simulator
    upsert = runtime.dispatcher.handlers["crm.upsert_contact"]

    async def upsert_then_read_the_store(job: Claimed) -> dict[str, Any]:
        result = await upsert(job)
        await queries.contact_id_now(store, "someone-else@example.com")
        return result

    runtime.dispatcher.handlers = {
        **runtime.dispatcher.handlers,
        "crm.upsert_contact": upsert_then_read_the_store,
    }
    async with asyncio.timeout(30):
        outcomes = await outage.one_batch_with_the_store_cut_mid_call()
        assert [o.status for o in outcomes] == ["pending"]  # retried, not dead-lettered
        assert "store unreachable, not counted" in str(outcomes[0].error)
        outage.clock.advance(timedelta(minutes=1))
        rest = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in rest] == ["done", "done"]
    assert simulator.stats()["contacts"] == 1 and simulator.stats()["sends"] == 1


async def test_a_claim_whose_commit_went_unanswered_is_handed_back_by_the_next_claim(
    outage: Outage,
) -> None:
    """PostgreSQL ran the claim's COMMIT and the connection broke before the answer came
    back: the actions are "running" under a lease that nobody holds. The next claim hands them
    back and runs them, instead of the person's every action waiting out the lease."""
    store, proxy, runtime, simulator = outage.store, outage.proxy, outage.runtime, outage.simulator
    await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
    proxy.lose_the_answer_to(b"COMMIT")
    async with asyncio.timeout(30):
        with pytest.raises(DBAPIError, match="connection was closed"):
            await runtime.dispatcher.claim(64)
        assert proxy.answers_lost == 1
        async with store.read() as conn:
            statuses = (await conn.execute(select(outbox.c.status))).scalars().all()
        assert "running" in statuses  # the claim did commit
        outcomes = await runtime.dispatcher.run_until_idle()  # the clock stands: no expiry
    assert [o.status for o in outcomes] == ["done", "done"]
    assert simulator.stats()["contacts"] == 1 and simulator.stats()["sends"] == 1


async def test_handing_back_an_unanswered_claim_spares_what_this_process_is_running(
    outage: Outage,
) -> None:
    """On a clock that stands still two claims share a lease end: the hand-back must not take
    the actions a successful claim gave this process (they would run twice)."""
    store, proxy, runtime = outage.store, outage.proxy, outage.runtime
    await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
    await runtime.intake.accept(application("d2", "c2", "ana@example.com", name="Ana"))
    async with asyncio.timeout(30):
        (running,), lease = await runtime.dispatcher.claim(1)
        proxy.lose_the_answer_to(b"COMMIT")
        with pytest.raises(DBAPIError, match="connection was closed"):
            await runtime.dispatcher.claim(64)
        again, same_lease = await runtime.dispatcher.claim(64)
    assert same_lease == lease
    assert [job.ordering_key for job in again] == ["ana@example.com"]
    async with store.read() as conn:
        status = await conn.scalar(select(outbox.c.status).where(outbox.c.id == running.id))
    assert running.ordering_key == "maya@example.com" and status == "running"
