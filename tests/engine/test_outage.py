"""Vendor outages (``engine.outage``): the outbox against a loopback HubSpot that stops answering.

Each test runs on SQLite and PostgreSQL, with the real dispatcher and HTTP client; time is the
manual clock, moved by the test, never waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.hubspot.simulator import HubSpotSimulator
from adapters.simulation import Chaos
from adapters.slack.simulator import SlackSimulator
from engine.clock import ManualClock
from engine.outage import WAITED, VendorHealth
from engine.outbox import RetryPolicy
from engine.runtime import Runtime
from engine.store import queries
from engine.store.store import Store
from tests.engine.test_engine import (  # noqa: F401 - runtime_for is a fixture
    WITHOUT_BROKEN_RULE,
    application,
    runtime_for,
)

TIMEOUT = 20


async def _actions(store: Store) -> list[dict[str, Any]]:
    async with store.read() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT action_type, status, attempts, last_error FROM outbox ORDER BY id"
        )
        return [dict(r._mapping) for r in rows]


async def _run_for(runtime: Runtime, clock: ManualClock, minutes: int) -> None:
    """Let ``minutes`` of engine time pass, running whatever comes due each simulated second."""
    for _ in range(minutes * 6):
        clock.advance(timedelta(seconds=10))
        await runtime.dispatcher.run_until_idle()


async def test_an_outage_keeps_every_retry_budget_alerts_once_and_releases_the_backlog(
    runtime_for: Callable[..., Runtime],  # noqa: F811 - the fixture, imported above
    hubspot: tuple[HubSpotSimulator, str],
    slack: tuple[SlackSimulator, str],
    clock: ManualClock,
    store: Store,
) -> None:
    hubspot[0].chaos = Chaos(outage=True)
    runtime = runtime_for(WITHOUT_BROKEN_RULE, retry=RetryPolicy(max_attempts=3))
    async with asyncio.timeout(TIMEOUT):
        for n in range(12):
            await runtime.intake.accept(application(f"d{n}", f"c{n}", f"p{n}@example.com"))
        await _run_for(runtime, clock, minutes=30)  # ten times the 3-attempt budget's backoff
        during = await _actions(store)
        await runtime.alerts.deliver_due()
        hubspot[0].chaos = Chaos()  # it answers again
        clock.advance(timedelta(seconds=1))
        await runtime.intake.accept(application("d-new", "c-new", "new@example.com"))
        await runtime.dispatcher.run_until_idle()  # the new person's success ends the outage
        clock.advance(timedelta(seconds=1))
        await runtime.dispatcher.run_until_idle()  # and what waited is due at once
        await runtime.alerts.deliver_due()
        after = await _actions(store)
    assert not [a for a in during if a["status"] == "dead"], "an outage must not dead-letter"
    waited = [a for a in during if WAITED in str(a["last_error"])]
    assert len(waited) >= 9  # all but the few failures before the run was the vendor's
    assert all(a["attempts"] <= 3 for a in during)
    outage_alerts = [m["text"] for m in slack[0].messages if "vendor outage" in m["text"]]
    assert len(outage_alerts) == 1 and "crm vendor looks down" in outage_alerts[0]
    assert "HTTP 503" in outage_alerts[0]
    assert {a["status"] for a in after} == {"done"}, after
    assert hubspot[0].stats()["contacts"] == 13 and hubspot[0].stats()["sends"] == 13


async def test_scattered_failures_still_use_up_the_budget(
    runtime_for: Callable[..., Runtime],  # noqa: F811 - the fixture, imported above
    hubspot: tuple[HubSpotSimulator, str],
    clock: ManualClock,
    store: Store,
) -> None:
    """One action failing while others succeed is that action's problem: dead-lettered after
    its budget, as before (only an unbroken run of failures is the vendor's)."""
    runtime = runtime_for(WITHOUT_BROKEN_RULE, retry=RetryPolicy(max_attempts=3))
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "bad@example.com"))
        for n in range(3):
            hubspot[0].fail_next(503, path_prefix="/crm/v3/objects/contacts/batch/upsert")
            await runtime.dispatcher.run_until_idle()  # its attempt fails, then...
            await runtime.intake.accept(application(f"g{n}", f"g{n}", f"g{n}@example.com"))
            await runtime.dispatcher.run_until_idle()  # ...someone else's succeed
            clock.advance(timedelta(minutes=5))
        async with store.read() as conn:
            dead = await queries.dead_letters(conn)
    assert [d["action_type"] for d in dead] == ["crm.upsert_contact"]
    assert "retry budget spent after 3 attempts" in dead[0]["last_error"]
    assert hubspot[0].stats()["contacts"] == 3  # the others


ONLY_THE_UPSERT = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> CRM contact, and nothing else
    trigger: ats.application.created
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email}
"""


async def test_one_action_failing_alone_is_dead_lettered_with_an_alert_not_called_an_outage(
    runtime_for: Callable[..., Runtime],  # noqa: F811 - the fixture, imported above
    hubspot: tuple[HubSpotSimulator, str],
    slack: tuple[SlackSimulator, str],
    clock: ManualClock,
    store: Store,
) -> None:
    """The vendor answers 502 to this one action, and nobody else is calling it: that is
    the action's failure, and it must surface as a dead letter, not wait forever as an
    "outage" that is really one bad request."""
    hubspot[0].chaos = Chaos(outage=True)
    # more attempts than the suspect count (3): past it, a run of failures reads as the vendor's
    runtime = runtime_for(ONLY_THE_UPSERT, retry=RetryPolicy(max_attempts=6))
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "alone@example.com"))
        await _run_for(runtime, clock, minutes=30)  # many times the 6-attempt budget's backoff
        await runtime.alerts.deliver_due()
        async with store.read() as conn:
            dead = await queries.dead_letters(conn)
    assert [d["action_type"] for d in dead] == ["crm.upsert_contact"]
    assert "retry budget spent after 6 attempts" in dead[0]["last_error"]
    texts = [m["text"] for m in slack[0].messages]
    assert any("dead letter" in t and "c1" in t for t in texts), texts
    assert not any("vendor outage" in t for t in texts), texts


def test_a_run_of_failures_declares_the_outage_once_and_a_success_ends_it() -> None:
    health = VendorHealth(suspect=3, threshold=10, min_span=timedelta(seconds=20))
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    declared = [
        health.failed("crm", "HTTP 503", start + timedelta(seconds=3 * n), action=n % 4)
        for n in range(20)
    ]
    assert declared.count(True) == 1 and declared.index(True) == 9  # 10 failures over 27 s
    assert health.failing_since("crm") == start
    assert health.failing_since("ats") is None
    assert health.succeeded("crm") is True  # others waited on it: release them
    assert health.failing_since("crm") is None
    health.failed("crm", "HTTP 503", start, action=1)
    assert health.failing_since("crm") is None  # one failure is the action's, not the vendor's
    assert health.succeeded("crm") is False


def test_failures_in_a_burst_do_not_declare_an_outage_before_the_span() -> None:
    health = VendorHealth(threshold=10, min_span=timedelta(seconds=20))
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert not any(health.failed("crm", "HTTP 500", start, action=n % 4) for n in range(100))


def test_one_action_failing_alone_is_not_an_outage_however_long_it_lasts() -> None:
    health = VendorHealth(suspect=3, threshold=10, min_span=timedelta(seconds=20))
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    alone = [
        health.failed("crm", "HTTP 502", start + timedelta(minutes=n), action=7) for n in range(30)
    ]
    assert not any(alone) and health.failing_since("crm") is None  # its own budget is spent
    assert health.failed("crm", "HTTP 502", start + timedelta(minutes=30), action=8) is True
    assert health.failing_since("crm") == start  # a second action failing too: the vendor's


@pytest.mark.parametrize("elapsed", [0, 60, 600, 100_000])
def test_retries_space_out_as_the_outage_lengthens(elapsed: int) -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    since = now - timedelta(seconds=elapsed)
    delay = VendorHealth.spaced(timedelta(seconds=4), since, now, cap=timedelta(hours=1))
    assert timedelta(seconds=4) <= delay <= timedelta(hours=1)
    if 0 < elapsed <= 600:
        assert delay >= timedelta(seconds=elapsed * 0.5)
