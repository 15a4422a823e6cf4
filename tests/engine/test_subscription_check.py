"""The HubSpot subscription status read before each nurture email, and the daemon's wiring.

The loopback HubSpot answers ``GET /communication-preferences/v3/status/email/{email}``; an
unsubscribe made there (as the candidate would, in HubSpot) is not yet known to our poller.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.smtp.simulator import SmtpSimulator
from engine.clock import ManualClock
from engine.config.load import ConfigSet, load_config
from engine.daemon import Daemon
from engine.runtime import Runtime
from engine.store import queries
from engine.store.store import Store
from engine.store.tables import outbox
from tests.engine.test_mail_smtp import CONFIG, SIGNER, email_result, event, run

Sim = tuple[HubSpotSimulator, str]


@pytest.fixture
def engine(
    store: Store, clock: ManualClock, crm: HubSpotClient, make_config: Callable[[str], ConfigSet]
) -> Runtime:
    """Mail through HubSpot's transactional send (mail.via: crm), consent checked."""
    return Runtime.build(
        store, make_config(CONFIG), clock, crm, rng=random.Random(7), links=SIGNER, consent=crm
    )


async def skip_reason(store: Store) -> str:
    """Why the (one) skipped crm.send_email was skipped."""
    async with store.read() as conn:
        query = select(outbox.c.last_error).where(
            outbox.c.action_type == "crm.send_email", outbox.c.status == "skipped"
        )
        return str((await conn.execute(query)).scalars().first())


async def suppression(store: Store, email: str = "maya@example.com") -> str | None:
    async with store.read() as conn:
        return await queries.suppression_reason(conn, email)


async def test_a_contact_unsubscribed_in_hubspot_gets_no_nurture_email_and_is_suppressed(
    engine: Runtime, hubspot: Sim, store: Store, clock: ManualClock
) -> None:
    hubspot[0].unsubscribe("maya@example.com", "7")

    await engine.intake.accept(event("created", "d1"))  # the receipt is transactional
    assert await run(engine) == ["done"]
    assert hubspot[0].stats()["sends"] == 1 and hubspot[0].state.status_requests == []

    await engine.intake.accept(event("rejected", "d2"))  # the nurture sequence starts
    assert await run(engine) == ["skipped"]
    result = await skip_reason(store)
    assert "NOT_SUBSCRIBED to 'Marketing Information'" in result and "suppressed" in result
    assert hubspot[0].stats()["sends"] == 1  # no nurture email went out
    assert await suppression(store) == "unsubscribed"

    # from now on our own list answers: the next nurture email costs no status request
    clock.advance(timedelta(days=3))
    await engine.intake.accept(event("updated", "d3"))
    assert await run(engine) == ["skipped"]
    assert hubspot[0].state.status_requests == ["maya@example.com"]


async def test_a_subscribed_contact_costs_one_status_request_per_nurture_send(
    engine: Runtime, hubspot: Sim, store: Store
) -> None:
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["done"]
    assert hubspot[0].stats()["sends"] == 1
    assert hubspot[0].state.status_requests == ["maya@example.com"]
    assert await suppression(store) is None
    assert (await email_result(store))["status"]["sendResult"] == "QUEUED"


async def test_an_unsubscribe_from_another_subscription_does_not_stop_nurture_mail_when_scoped(
    store: Store,
    clock: ManualClock,
    session: aiohttp.ClientSession,
    hubspot: Sim,
    make_config: Callable[[str], ConfigSet],
) -> None:
    scoped = HubSpotClient(session, hubspot[1], "test-token", subscription_id="7")
    engine = Runtime.build(store, make_config(CONFIG), clock, scoped, links=SIGNER, consent=scoped)
    hubspot[0].unsubscribe("maya@example.com", "8")  # one-to-one mail, not nurture
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["done"]
    assert await suppression(store) is None


async def test_a_failed_status_request_is_retried_and_nothing_is_sent_unchecked(
    engine: Runtime, hubspot: Sim, clock: ManualClock
) -> None:
    hubspot[0].fail_next(503, path_prefix="/communication-preferences")
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["pending"]
    assert hubspot[0].stats()["sends"] == 0

    clock.advance(timedelta(minutes=5))
    assert await run(engine) == ["done"]
    assert hubspot[0].stats()["sends"] == 1


# -- the daemon wires both options ---------------------------------------------------------


@pytest.fixture
def plain_smtp() -> Iterator[SmtpSimulator]:
    with SmtpSimulator(starttls=False) as server:
        yield server


def daemon_yaml(hubspot_url: str, smtp_port: int, check: bool) -> str:
    return f"""\
version: 1
ats: greenhouse
config_paths: [rules]
vendors:
  greenhouse:
    auth: basic
    api_key_env: GREENHOUSE_API_KEY
    on_behalf_of: "40211"
    webhook_secret_envs: [GREENHOUSE_WEBHOOK_SECRET]
  hubspot:
    base_url: "{hubspot_url}"
    token_env: HUBSPOT_TOKEN
    check_subscription_before_send: {str(check).lower()}
alerting:
  targets: [{{name: ops, kind: slack, webhook_url_env: SLACK_URL}}]
mail:
  via: smtp
  smtp: {{host: 127.0.0.1, port: {smtp_port}, starttls: false, sender: careers@acme.example}}
"""


@pytest.mark.parametrize("check", [True, False], ids=["default-on", "switched-off"])
async def test_the_daemon_sends_over_smtp_and_checks_subscriptions_as_configured(
    check: bool,
    tmp_path: Path,
    store: Store,
    clock: ManualClock,
    hubspot: Sim,
    plain_smtp: SmtpSimulator,
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "config.yaml").write_text(CONFIG)
    config_file = tmp_path / "nurture.yaml"
    config_file.write_text(daemon_yaml(hubspot[1], plain_smtp.port, check))
    loaded = load_config([tmp_path / "rules"], daemon_path=config_file)
    assert loaded.config is not None, [d.format_text() for d in loaded.errors]
    env = {
        "HUBSPOT_TOKEN": "test-token",
        "SLACK_URL": "http://127.0.0.1:9/unused",
        "NURTURE_LINK_SECRET": "daemon-link-secret-0123",
    }
    daemon = Daemon(config_file, env=env, clock=clock)
    async with aiohttp.ClientSession() as session:
        runtime, _, _ = daemon._build(loaded.config, store, session, vendor_limits=False)
        async with asyncio.timeout(10):
            await runtime.intake.accept(event("rejected", "d1"))
            assert await run(runtime) == ["done"]
    [msg] = plain_smtp.messages
    assert msg.subject == "Shall we keep you posted, Maya?" and not msg.tls
    assert hubspot[0].stats()["sends"] == 0
    assert hubspot[0].state.status_requests == (["maya@example.com"] if check else [])
