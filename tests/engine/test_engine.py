"""The durable engine end to end: intake -> rules -> outbox -> loopback HubSpot and Slack.

Every test runs on SQLite and on PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.slack.client import SlackWebhook
from adapters.slack.simulator import SlackSimulator
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.events import Event
from engine.intake import AlertSettings
from engine.outbox import RetryPolicy
from engine.runtime import Runtime
from engine.store import queries
from engine.store.store import Store

CONFIG = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> contact + welcome email
    trigger: ats.application.created
    condition: "candidate.email != `null`"
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email, firstname: candidate.first_name,
                 ats_candidate_id: candidate.id}
      - action: crm.send_email
        params: {template: welcome}
        fields: {to: candidate.email, first_name: candidate.first_name}
  - id: interview-stage-tag
    description: stage tag
    trigger: ats.application.stage_changed
    condition: "application.stage.name == 'Interview Scheduled'"
    actions:
      - action: crm.update_contact
        fields: {email: candidate.email, recruiting_stage: application.stage.name,
                 previous_stage: application.previous_stage.name}
  - id: broken-rule
    description: fails at evaluation on every application (length of a boolean)
    trigger: ats.application.created
    condition: "length(candidate.can_email) > `0`"
    actions:
      - action: crm.update_contact
        fields: {email: candidate.email}
  - id: unsubscribe
    description: unsubscribe -> suppression
    trigger: crm.contact.unsubscribed
    actions:
      - action: suppress
        params: {reason: unsubscribed}
        fields: {email: contact.email}
templates:
  - id: welcome
    subject: "Hi {first_name}"
    crm_email_id: "100001"
    category: transactional  # an application receipt: no frequency cap, no quiet hours
    variables: [first_name]
"""

TIMEOUT = 10
WITHOUT_BROKEN_RULE = CONFIG.replace(
    CONFIG[CONFIG.index("  - id: broken-rule") : CONFIG.index("  - id: unsubscribe")], ""
)


def application(
    delivery: str,
    candidate: str,
    email: str,
    *,
    name: str = "Maya",
    stage: str = "Application Review",
    kind: str = "created",
) -> Event:
    return Event(
        id=delivery,
        source="ats/greenhouse",
        type=f"ats.application.{kind}",
        time="2026-03-02T09:00:00Z",
        subject=candidate,
        data={
            "candidate": {"id": candidate, "first_name": name, "email": email},
            "application": {
                "id": f"app-{candidate}",
                "status": "active",
                "stage": {"name": stage},
                "job": {"id": "j1", "title": "Engineer"},
            },
        },
    )


@pytest.fixture
def runtime_for(
    store: Store,
    clock: ManualClock,
    crm: HubSpotClient,
    alert_target: SlackWebhook,
    make_config: Callable[[str], ConfigSet],
) -> Callable[..., Runtime]:
    def build(text: str = CONFIG, **kwargs: Any) -> Runtime:
        kwargs.setdefault("rng", random.Random(7))
        return Runtime.build(store, make_config(text), clock, crm, [alert_target], **kwargs)

    return build


async def test_accept_commits_event_decisions_and_actions_together(
    runtime_for: Callable[..., Runtime], store: Store
) -> None:
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        accepted = await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        assert accepted.event_id is not None and not accepted.duplicate
        assert accepted.queued == 2
        async with store.read() as conn:
            trail = await queries.audit(conn, accepted.event_id)
    assert {(f["rule_id"], f["matched"]) for f in trail["firings"]} == {
        ("application-to-crm", True),
        ("broken-rule", False),
    }
    assert [a["action_type"] for a in trail["actions"]] == ["crm.upsert_contact", "crm.send_email"]
    assert trail["actions"][0]["payload"]["fields"]["email"] == "maya@example.com"
    assert trail["actions"][1]["idempotency_key"] == "ats/greenhouse|d1|application-to-crm|1"


async def test_redelivered_webhook_is_acknowledged_and_changes_nothing(
    runtime_for: Callable[..., Runtime], store: Store, hubspot: tuple[HubSpotSimulator, str]
) -> None:
    runtime = runtime_for()
    event = application("d1", "c1", "maya@example.com")
    async with asyncio.timeout(TIMEOUT):
        first = await runtime.intake.accept(event)
        again = await runtime.intake.accept(event)
        await runtime.dispatcher.run_until_idle()
    assert not first.duplicate and again.duplicate and again.queued == 0
    assert hubspot[0].stats()["contacts"] == 1
    assert hubspot[0].stats()["sends"] == 1


async def test_concurrent_duplicate_applicants_give_exactly_one_contact(
    runtime_for: Callable[..., Runtime], hubspot: tuple[HubSpotSimulator, str]
) -> None:
    """Two applications of one person (two ATS records, one email) at the same moment."""
    simulator = hubspot[0]
    simulator.search_delay = 60  # HubSpot search is eventually consistent
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(
            runtime.intake.accept(application("d1", "c1", "maya@example.com")),
            runtime.intake.accept(application("d2", "c2", " Maya@Example.com ")),
        )
        outcomes = await runtime.dispatcher.run_until_idle()
    assert {o.status for o in outcomes} == {"done"}
    assert simulator.stats()["contacts"] == 1
    assert simulator.stats()["create_requests"] == 0  # upserts by email: HubSpot looks it up
    assert simulator.state.batch_upserts == [["maya@example.com"], ["maya@example.com"]]
    assert simulator.stats()["sends"] == 2  # one welcome per application, both to Maya


async def test_create_after_a_crash_before_the_link_finds_the_existing_contact(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    crm: HubSpotClient,
) -> None:
    """The contact exists in HubSpot but we never recorded it, and search cannot see it yet."""
    simulator = hubspot[0]
    simulator.search_delay = 60
    existing = simulator.add_contact("maya@example.com")
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        outcomes = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in outcomes] == ["done", "done"]
    assert simulator.stats()["contacts"] == 1
    assert simulator.state.contacts[existing]["firstname"] == "Maya"


async def test_an_upsert_whose_batch_failed_is_retried_and_then_stores_the_link(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    clock: ManualClock,
    store: Store,
) -> None:
    """The batch request carrying the upsert fails as a whole: the action waits for its retry
    with no link learned; the retry creates the contact and stores the link with its outcome."""
    simulator = hubspot[0]
    simulator.fail_next(503, path_prefix="/crm/v3/objects/contacts/batch/upsert")
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        first = await runtime.dispatcher.run_once()
        assert [o.status for o in first] == ["pending"]
        assert await queries.contact_id_now(store, "maya@example.com") is None
        clock.advance(timedelta(hours=1))
        rest = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in rest] == ["done", "done"]
    assert simulator.stats()["contacts"] == 1
    (contact_id,) = simulator.state.contacts
    assert await queries.contact_id_now(store, "maya@example.com") == contact_id


async def test_a_handler_called_outside_the_outbox_stores_its_link_itself(
    runtime_for: Callable[..., Runtime], clock: ManualClock, store: Store
) -> None:
    """Inside the outbox a link waits for the outcome's transaction; a direct call (no outcome
    to record) writes it at once rather than losing it."""
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        now = clock.now()
        async with store.transaction() as conn:
            [job] = await queries.claim_actions(conn, now, now + timedelta(minutes=2), 10)
        result = await runtime.dispatcher.handlers["crm.upsert_contact"](job)
    assert await queries.contact_id_now(store, "maya@example.com") == result["contact_id"]


async def test_429_with_retry_after_is_waited_out_then_succeeds(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    clock: ManualClock,
    store: Store,
) -> None:
    simulator = hubspot[0]
    simulator.fail_next(429, retry_after=30, path_prefix="/crm/v3/objects/contacts/batch/upsert")
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        accepted = await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        first = await runtime.dispatcher.run_once()
        assert [o.status for o in first] == ["pending"]
        assert accepted.event_id is not None
        async with store.read() as conn:
            upsert = (await queries.audit(conn, accepted.event_id))["actions"][0]
        assert upsert["attempts"] == 0 and "HTTP 429" in upsert["last_error"]  # pacing: kept
        assert upsert["next_attempt_at"] >= clock.now() + timedelta(seconds=30)
        clock.advance(timedelta(seconds=29))
        assert await runtime.dispatcher.run_once() == []  # not before Retry-After
        clock.advance(timedelta(minutes=5))
        rest = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in rest] == ["done", "done"]
    assert simulator.stats()["contacts"] == 1


async def test_a_vendor_that_throttles_without_saying_how_long_is_asked_ever_less_often(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    clock: ManualClock,
    store: Store,
) -> None:
    """A 429 without Retry-After (a daily limit, say) is not an attempt, so it waited the
    first backoff step, 1-3 s, every time: a day of that is tens of thousands of requests
    per queued action. Now the wait grows with the run of 429s, as an outage's retries do."""
    simulator = hubspot[0]
    upserts = "/crm/v3/objects/contacts/batch/upsert"
    simulator.fail_next(429, times=10**6, path_prefix=upserts)
    runtime = runtime_for()
    began = clock.now()
    gaps: list[timedelta] = []
    async with asyncio.timeout(TIMEOUT):
        accepted = await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        assert accepted.event_id is not None
        for _ in range(100):  # at most: the assertion below, not the timeout, tells
            if clock.now() - began >= timedelta(hours=2):
                break
            await runtime.dispatcher.run_once()
            async with store.read() as conn:
                upsert = (await queries.audit(conn, accepted.event_id))["actions"][0]
            assert upsert["status"] == "pending" and upsert["attempts"] == 0
            gaps.append(upsert["next_attempt_at"] - clock.now())
            clock.set(upsert["next_attempt_at"])
    # 1-3 s apart, two hours of it would be about 3,600 requests
    assert len(gaps) < 60 and simulator.stats()["requests"] == len(gaps), simulator.stats()
    assert gaps[0] <= timedelta(seconds=3) and gaps[-1] >= timedelta(minutes=20)


async def test_an_absurd_retry_after_is_capped_at_a_day_not_a_crash(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    clock: ManualClock,
    store: Store,
) -> None:
    """A Retry-After of 300,000 years overflowed the retry date: the batch raised, its outcomes
    were never recorded and the action sat "running" until its lease ran out, then again."""
    simulator = hubspot[0]
    simulator.fail_next(
        429, retry_after=10**13, path_prefix="/crm/v3/objects/contacts/batch/upsert"
    )
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        accepted = await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        first = await runtime.dispatcher.run_once()
        assert [o.status for o in first] == ["pending"]
        assert accepted.event_id is not None
        async with store.read() as conn:
            upsert = (await queries.audit(conn, accepted.event_id))["actions"][0]
        assert upsert["status"] == "pending"
        assert upsert["next_attempt_at"] <= clock.now() + timedelta(days=1)
        clock.advance(timedelta(days=1, seconds=1))
        rest = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in rest] == ["done", "done"]


async def test_retries_survive_a_restart(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    clock: ManualClock,
) -> None:
    hubspot[0].fail_next(503, times=2)
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        assert [o.status for o in await runtime.dispatcher.run_once()] == ["pending"]
        restarted = runtime_for()  # a new engine on the same store: nothing held in memory
        clock.advance(timedelta(hours=1))
        outcomes = await restarted.dispatcher.run_until_idle()
        clock.advance(timedelta(hours=1))
        outcomes += await restarted.dispatcher.run_until_idle()
    assert [o.status for o in outcomes][-2:] == ["done", "done"]


async def test_permanent_400_goes_to_dead_letter_with_an_alert_naming_the_candidate(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    slack: tuple[SlackSimulator, str],
    store: Store,
) -> None:
    hubspot[0].reject_email("bad@example.com")
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "gh-4711", "bad@example.com"))
        outcomes = await runtime.dispatcher.run_until_idle()
        assert outcomes[0].status == "dead"
        assert await runtime.alerts.deliver_due() >= 1
        async with store.read() as conn:
            dead = await queries.dead_letters(conn)
    assert [(d["candidate_id"], d["action_type"]) for d in dead] == [
        ("gh-4711", "crm.upsert_contact")
    ]
    assert "refused this contact: VALIDATION_ERROR" in dead[0]["last_error"]
    texts = [m["text"] for m in slack[0].messages]
    dead_alert = next(t for t in texts if "dead letter" in t)
    assert "candidate: gh-4711" in dead_alert and "VALIDATION_ERROR" in dead_alert
    assert "rule: application-to-crm" in dead_alert and "action: crm.upsert_contact" in dead_alert


async def test_alerts_name_the_candidate_by_id_and_never_quote_an_email_address(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    slack: tuple[SlackSimulator, str],
    store: Store,
) -> None:
    """HubSpot's refusal quotes the address it refused; the alert goes to a shared channel."""
    hubspot[0].reject_email("bad@example.com")
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "gh-4711", "bad@example.com"))
        await runtime.dispatcher.run_until_idle()
        assert await runtime.alerts.deliver_due() >= 1
        async with store.read() as conn:
            dead = await queries.dead_letters(conn)
    assert "bad@example.com" in dead[0]["last_error"]  # kept for `nurture dlq list`
    texts = [m["text"] for m in slack[0].messages]
    dead_alert = next(t for t in texts if "dead letter" in t)
    assert "candidate: gh-4711" in dead_alert and "INVALID_EMAIL" in dead_alert
    assert not [t for t in texts if "@" in t], texts


async def test_replay_after_the_fix_completes_the_dead_letter(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    store: Store,
    clock: ManualClock,
) -> None:
    hubspot[0].reject_email("bad@example.com")
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "bad@example.com"))
        await runtime.dispatcher.run_until_idle()
        hubspot[0].state.rejected_emails.clear()  # the data was fixed at the vendor
        async with store.transaction() as conn:
            assert await queries.replay(conn, clock.now(), None) == 1
        outcomes = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in outcomes] == ["done"]
    assert hubspot[0].stats()["contacts"] == 1


async def test_pause_keeps_work_waiting_durably_and_resume_runs_it(
    runtime_for: Callable[..., Runtime],
    store: Store,
    clock: ManualClock,
    hubspot: tuple[HubSpotSimulator, str],
) -> None:
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        async with store.transaction() as conn:
            await queries.pause(conn, "*", clock.now())
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        assert await runtime.dispatcher.run_until_idle() == []
        async with store.transaction() as conn:
            await queries.resume(conn, "*")
            await queries.pause(conn, "application-to-crm", clock.now())
        assert await runtime_for().dispatcher.run_until_idle() == []  # still paused, one rule
        async with store.transaction() as conn:
            await queries.resume(conn, "application-to-crm")
        outcomes = await runtime_for().dispatcher.run_until_idle()
    assert [o.status for o in outcomes] == ["done", "done"]
    assert hubspot[0].stats()["sends"] == 1


async def test_evaluation_error_is_recorded_alerted_and_other_rules_still_run(
    runtime_for: Callable[..., Runtime],
    store: Store,
    slack: tuple[SlackSimulator, str],
) -> None:
    config = CONFIG.replace(
        "length(candidate.can_email) > `0`", "length(candidate.can_email) > `0` || `true`"
    )
    runtime = runtime_for(config)
    async with asyncio.timeout(TIMEOUT):
        accepted = await runtime.intake.accept(application("d1", "c7", "maya@example.com"))
        await runtime.alerts.deliver_due()
    broken = next(d for d in accepted.decisions if d.rule_id == "broken-rule")
    assert broken.error is not None and "length" in broken.error
    assert accepted.queued == 2  # application-to-crm still queued its actions
    message = slack[0].messages[0]["text"]
    assert "evaluation error" in message and "broken-rule" in message and "c7" in message


async def test_one_persons_actions_run_in_order_while_others_proceed(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    clock: ManualClock,
) -> None:
    hubspot[0].fail_next(503, path_prefix="/crm/v3/objects/contacts/batch/upsert")
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        await runtime.intake.accept(application("d2", "c2", "jonas@example.com"))
        first = await runtime.dispatcher.run_until_idle()
        # Maya's upsert waits for its retry; her email must wait behind it; Jonas is done
        assert sorted(o.status for o in first) == ["done", "done", "pending"]
        assert hubspot[0].stats()["sends"] == 1
        clock.advance(timedelta(hours=1))
        rest = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in rest] == ["done", "done"]
    assert hubspot[0].stats()["sends"] == 2


async def test_unsubscribed_address_gets_no_email_checked_at_send_time(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
) -> None:
    runtime = runtime_for()
    unsubscribe = Event(
        id="u1",
        source="crm/hubspot",
        type="crm.contact.unsubscribed",
        time="2026-03-02T09:00:00Z",
        data={
            "contact": {"email": "maya@example.com"},
            "subscription": {"occurred_at": "2026-03-02T09:00:00Z"},
        },
    )
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        await runtime.intake.accept(unsubscribe)  # arrives before the queued email runs
        outcomes = await runtime.dispatcher.run_until_idle()
    assert sorted(o.status for o in outcomes) == ["done", "skipped"]  # suppress ran at intake
    assert hubspot[0].stats()["sends"] == 0


async def test_previous_stage_is_remembered_for_stage_changes(
    runtime_for: Callable[..., Runtime],
    store: Store,
    hubspot: tuple[HubSpotSimulator, str],
) -> None:
    runtime = runtime_for()
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        moved = await runtime.intake.accept(
            application(
                "d2", "c1", "maya@example.com", stage="Interview Scheduled", kind="stage_changed"
            )
        )
        await runtime.dispatcher.run_until_idle()
        assert moved.event_id is not None
        async with store.read() as conn:
            trail = await queries.audit(conn, moved.event_id)
    fields = trail["actions"][0]["payload"]["fields"]
    assert fields["previous_stage"] == "Application Review"
    contact = next(iter(hubspot[0].state.contacts.values()))
    assert contact["recruiting_stage"] == "Interview Scheduled"


async def test_a_rejection_without_a_stage_is_at_the_stage_last_seen(
    runtime_for: Callable[..., Runtime], store: Store
) -> None:
    """Ashby archives into an "Archived" stage and cannot say where from; the engine can."""
    runtime = runtime_for(
        """\
version: 1
rules:
  - id: rejected-after-final-round
    description: rejected at the final round
    trigger: ats.application.rejected
    condition: "application.stage.name == 'Final Round'"
    actions:
      - action: suppress
        params: {reason: manual}
        fields: {email: candidate.email}
"""
    )
    rejected = application("d3", "c1", "maya@example.com", kind="rejected")
    rejected.data["application"].update(status="rejected", stage=None)
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        await runtime.intake.accept(
            application("d2", "c1", "maya@example.com", stage="Final Round", kind="stage_changed")
        )
        outcome = await runtime.intake.accept(rejected)
        async with store.read() as conn:
            remembered = await queries.remembered_stage(conn, "app-c1")
    assert [d.matched for d in outcome.decisions] == [True]
    assert remembered is not None and remembered["name"] == "Final Round"  # still remembered


async def test_an_alert_storm_becomes_one_alert_and_one_follow_up_with_a_count(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    slack: tuple[SlackSimulator, str],
    clock: ManualClock,
) -> None:
    # a storm of refusals (an outage is the vendor's failure and keeps the budget: test_outage)
    hubspot[0].fail_next(400, times=10_000)
    runtime = runtime_for(WITHOUT_BROKEN_RULE, retry=RetryPolicy(max_attempts=1))

    async def fail(first: int, count: int) -> list[str]:
        for n in range(first, first + count):
            await runtime.intake.accept(application(f"d{n}", f"c{n}", f"p{n}@example.com"))
        await runtime.dispatcher.run_until_idle()
        await runtime.alerts.deliver_due()
        return [m["text"] for m in slack[0].messages if "upsert_contact" in m["text"]]

    async with asyncio.timeout(TIMEOUT):
        storm = await fail(0, 30)  # each person's upsert and welcome email fail: two groups
        assert len(storm) == 1 and "dead letter x30" in storm[0]
        assert "candidates include: c" in storm[0]
        later = await fail(30, 5)  # still inside the group window: held for one follow-up
        assert len(later) == 1
        clock.advance(timedelta(minutes=11))
        await runtime.alerts.deliver_due()
    dead_alerts = [m["text"] for m in slack[0].messages if "upsert_contact" in m["text"]]
    assert len(dead_alerts) == 2 and "dead letter x5" in dead_alerts[1]


async def test_sync_error_rate_above_threshold_alerts_once_per_trigger(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    slack: tuple[SlackSimulator, str],
) -> None:
    hubspot[0].reject_email("p0@example.com")
    runtime = runtime_for(alerts=AlertSettings(error_rate_threshold=0.02))
    async with asyncio.timeout(TIMEOUT):
        for n in range(10):
            await runtime.intake.accept(application(f"d{n}", f"c{n}", f"p{n}@example.com"))
        await runtime.dispatcher.run_until_idle()
        await runtime.alerts.deliver_due()
    rate_alerts = [m["text"] for m in slack[0].messages if "error rate" in m["text"]]
    assert len(rate_alerts) == 1
    assert "ats.application.created" in rate_alerts[0]


async def test_alert_delivery_is_retried_when_slack_fails(
    runtime_for: Callable[..., Runtime],
    hubspot: tuple[HubSpotSimulator, str],
    slack: tuple[SlackSimulator, str],
    clock: ManualClock,
) -> None:
    hubspot[0].reject_email("bad@example.com")
    slack[0].fail_next(500, times=2)  # the dead-letter alert and the error-rate alert
    runtime = runtime_for(WITHOUT_BROKEN_RULE)
    async with asyncio.timeout(TIMEOUT):
        await runtime.intake.accept(application("d1", "c1", "bad@example.com"))
        await runtime.dispatcher.run_until_idle()
        assert await runtime.alerts.deliver_due() == 0
        clock.advance(timedelta(minutes=5))
        assert await runtime.alerts.deliver_due() >= 1
    assert any("dead letter" in m["text"] for m in slack[0].messages)


async def test_events_accepted_together_commit_together_and_a_bad_one_fails_alone(
    runtime_for: Callable[..., Runtime], store: Store
) -> None:
    runtime = runtime_for()
    broken = application("d-bad", "c9", "x@example.com")
    broken = broken.model_copy(
        update={
            "data": {
                **broken.data,
                "application": {"id": "a9", "status": "active", "stage": "not-an-object"},
            }
        }
    )
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(
            runtime.intake.accept(application("d1", "c1", "maya@example.com")),
            runtime.intake.accept(broken),
            runtime.intake.accept(application("d2", "c2", "jonas@example.com")),
            return_exceptions=True,
        )
        async with store.read() as conn:
            stored = await queries.event_by_delivery(conn, "ats/greenhouse", "d-bad")
            good = await queries.event_by_delivery(conn, "ats/greenhouse", "d2")
    assert isinstance(results[1], AttributeError)
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)
    assert stored is None and good is not None  # the bad event left nothing behind


DEFERRAL_CONFIG = """\
version: 1
rules:
  - id: nurture-email
    description: a nurture email (held by quiet hours at night)
    trigger: ats.application.created
    actions:
      - action: crm.send_email
        params: {template: newsletter}
        fields: {to: candidate.email, first_name: candidate.first_name}
  - id: stage-tag
    description: a contact update queued after it
    trigger: ats.application.stage_changed
    actions:
      - action: crm.update_contact
        fields: {email: candidate.email, recruiting_stage: application.stage.name}
templates:
  - id: newsletter
    subject: "News for {first_name}"
    crm_email_id: "200"
    variables: [first_name]
"""


async def test_a_deferred_email_does_not_hold_back_the_persons_other_actions(
    store: Store,
    clock: ManualClock,
    crm: HubSpotClient,
    alert_target: SlackWebhook,
    make_config: Callable[[str], ConfigSet],
    hubspot: tuple[HubSpotSimulator, str],
) -> None:
    """Quiet hours defer a nurture email; the contact update queued after it still runs."""
    clock.set(clock.now().replace(hour=22))  # 22:00 UTC: inside the default quiet hours
    runtime = Runtime.build(
        store, make_config(DEFERRAL_CONFIG), clock, crm, [alert_target], rng=random.Random(1)
    )
    async with asyncio.timeout(TIMEOUT):
        hubspot[0].add_contact("maya@example.com")
        await runtime.intake.accept(application("d1", "c1", "maya@example.com"))
        await runtime.intake.accept(
            application(
                "d2", "c1", "maya@example.com", stage="Interview Scheduled", kind="stage_changed"
            )
        )
        outcomes = await runtime.dispatcher.run_until_idle()
        assert sorted(o.status for o in outcomes) == ["deferred", "done"]
        assert hubspot[0].stats()["sends"] == 0
        contact = next(iter(hubspot[0].state.contacts.values()))
        assert contact["recruiting_stage"] == "Interview Scheduled"
        clock.set(clock.now().replace(hour=8, minute=0) + timedelta(days=1))
        later = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in later] == ["done"]  # sent when quiet hours end, not dropped
    assert hubspot[0].stats()["sends"] == 1
