"""Send keys (HubSpot's ``sendId``) are unique beyond one store: HubSpot answers a reused key
409, which reads as "sent before", so a collision is an email silently never sent."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from adapters.hubspot.client import HubSpotClient
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.runtime import Runtime
from engine.store.store import Store
from tests.engine.test_mail_smtp import CONFIG, SIGNER, event, run
from tests.engine.test_subscription_check import Sim


async def test_a_second_store_on_the_same_hubspot_portal_sends_its_own_sequence_email(
    store: Store,
    tmp_path: Path,
    clock: ManualClock,
    crm: HubSpotClient,
    hubspot: Sim,
    make_config: Callable[[str], ConfigSet],
) -> None:
    """Staging beside production on one portal, or a store started afresh: both stores'
    first enrolment has id 1, and its Day-0 email must still go out from each."""
    staging_store = await Store.open(f"sqlite:///{tmp_path / 'staging.db'}")
    try:
        staging = Runtime.build(
            staging_store, make_config(CONFIG), clock, crm, rng=random.Random(7), links=SIGNER
        )
        await staging.intake.accept(event("rejected", "s1", email="tester@example.com"))
        assert await run(staging) == ["done"]
    finally:
        await staging_store.close()

    clock.advance(timedelta(seconds=1))
    production = Runtime.build(
        store, make_config(CONFIG), clock, crm, rng=random.Random(7), links=SIGNER
    )
    await production.intake.accept(event("rejected", "p1", email="maya@example.com"))
    assert await run(production) == ["done"]

    sends = hubspot[0].state.sends
    assert sorted(send["to"] for send in sends.values()) == [
        "maya@example.com",
        "tester@example.com",
    ]
    assert len({key.split(":")[0] for key in sends}) == 1  # both were enrolment 1
