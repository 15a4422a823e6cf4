"""Candidate email over SMTP (``mail.via: smtp``) against the aiosmtpd simulator.

Real SMTP with STARTTLS and AUTH on loopback, the real store on both backends, a ManualClock.
A crash is reproduced by running the pieces a crashed worker would have run (claim, send)
and then not recording the outcome, so the next worker finds what a restart would find.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.slack.client import SlackWebhook
from adapters.slack.simulator import SlackSimulator
from adapters.smtp.mail import SmtpMailer, mailer_from_config
from adapters.smtp.simulator import SmtpSimulator
from engine.clock import ManualClock
from engine.config.daemon import Smtp
from engine.config.load import ConfigSet
from engine.events import Event
from engine.links import LinkSigner
from engine.mail import TemplateError, message_id, render
from engine.runtime import Runtime
from engine.store import mail_sends, queries
from engine.store.store import Store
from engine.store.tables import mail_sends as mail_sends_table
from engine.store.tables import outbox

TIMEOUT = 10
SENDER = "careers@acme.example"
USER, PASSWORD = "careers@acme.example", "relay-pass-0123"
SIGNER = LinkSigner(b"link-secret-0123456789", "https://nurture.acme.example")

CONFIG = """\
version: 1
rules:
  - id: silver
    description: not selected -> the nurture sequence
    trigger: ats.application.rejected
    actions:
      - {action: sequence.enroll, params: {sequence: silver}}
  - id: more
    description: a profile update -> a second nurture sequence
    trigger: ats.candidate.updated
    actions:
      - {action: sequence.enroll, params: {sequence: silver-more}}
  - id: receipt
    description: application -> receipt (transactional)
    trigger: ats.application.created
    actions:
      - action: crm.send_email
        params: {template: receipt}
        fields: {to: candidate.email, first_name: candidate.first_name}
sequences:
  - id: silver
    description: one nurture email with a signed keep-me-posted link
    steps:
      - id: day-0
        at: 0d
        do:
          action: crm.send_email
          params: {template: keep-posted}
          fields: {to: candidate.email, first_name: candidate.first_name}
  - id: silver-more
    description: another nurture email, for the frequency cap
    steps:
      - id: day-0
        at: 0d
        do:
          action: crm.send_email
          params: {template: keep-posted}
          fields: {to: candidate.email, first_name: candidate.first_name}
templates:
  - id: keep-posted
    subject: "Shall we keep you posted, {first_name}?"
    body: |
      Hi {first_name},
      one click and we keep you posted: {keep_me_posted_url}
      Not rendered: {first_name.__class__} {first_name[0]} {{first_name}}
    crm_email_id: "100024"
    category: nurture
    variables: [first_name]
    links: [keep-me-posted]
  - id: receipt
    subject: "We received your application, {first_name}"
    body: "Thank you, {first_name}."
    crm_email_id: "100001"
    category: transactional
    variables: [first_name]
"""


@pytest.fixture
def smtp() -> Iterator[SmtpSimulator]:
    with SmtpSimulator(starttls=True, username=USER, password=PASSWORD) as server:
        yield server


@pytest.fixture
def mailer(smtp: SmtpSimulator) -> SmtpMailer:
    relay = Smtp(
        host=smtp.host,
        port=smtp.port,
        username_env="SMTP_USER",
        password_env="SMTP_PASSWORD",
        sender=SENDER,
    )
    env = {"SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD}
    return mailer_from_config(relay, env, tls_context=smtp.client_tls_context())


@pytest.fixture
def engine(
    store: Store,
    clock: ManualClock,
    crm: HubSpotClient,
    alert_target: SlackWebhook,
    mailer: SmtpMailer,
    make_config: Callable[[str], ConfigSet],
) -> Runtime:
    return Runtime.build(
        store,
        make_config(CONFIG),
        clock,
        crm,
        [alert_target],
        rng=random.Random(7),
        links=SIGNER,
        consent=crm,
        mail=mailer,
    )


def event(kind: str, delivery: str, email: str = "maya@example.com") -> Event:
    """ats.application.<kind>, or ats.candidate.updated for kind "updated"."""
    data: dict[str, Any] = {"candidate": {"id": "c1", "first_name": "Maya", "email": email}}
    if kind != "updated":
        status = "rejected" if kind == "rejected" else "active"
        data["application"] = {
            "id": "app-c1",
            "status": status,
            "job": {"id": "j1", "title": "Engineer"},
        }
    return Event(
        id=delivery,
        source="ats/greenhouse",
        type="ats.candidate.updated" if kind == "updated" else f"ats.application.{kind}",
        time="2026-03-02T09:00:00Z",
        subject="c1",
        data=data,
    )


async def run(engine: Runtime) -> list[str]:
    """Fire due steps and run due actions; the statuses of the actions that ran."""
    statuses: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        for _ in range(20):
            fired = await engine.steps.run_due()
            ran = await engine.dispatcher.run_once()
            statuses += [o.status for o in ran]
            if not fired and not ran:
                break
    return statuses


async def sends(store: Store) -> list[dict[str, Any]]:
    async with store.read() as conn:
        rows = await conn.execute(select(mail_sends_table))
        return [dict(r) for r in rows.mappings().all()]


async def email_result(store: Store) -> dict[str, Any]:
    """The recorded result of the one crm.send_email action."""
    async with store.read() as conn:
        query = select(outbox.c.result).where(outbox.c.action_type == "crm.send_email")
        [result] = (await conn.execute(query)).scalars().all()
    assert isinstance(result, dict)
    return result


# -- delivery ------------------------------------------------------------------------------


async def test_a_sequence_step_is_delivered_over_smtp_with_subject_body_and_signed_link(
    engine: Runtime, smtp: SmtpSimulator, hubspot: tuple[HubSpotSimulator, str], store: Store
) -> None:
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["done"]

    [msg] = smtp.messages
    assert msg.tls and msg.authenticated_as == USER
    assert (msg.mail_from, msg.rcpt_tos) == (SENDER, ("maya@example.com",))
    assert msg.subject == "Shall we keep you posted, Maya?"
    lines = msg.body.splitlines()
    assert lines[0] == "Hi Maya,"
    url = lines[1].removeprefix("one click and we keep you posted: ")
    claim = SIGNER.verify(url.split("/l/", 1)[1], engine.dispatcher.clock.now())
    assert (claim.name, claim.candidate_id, claim.email) == (
        "keep-me-posted",
        "c1",
        msg.rcpt_tos[0],
    )
    assert (claim.sequence, claim.step) == ("silver", "day-0")
    # sandboxed: only {name} of a declared variable is replaced, nothing is evaluated
    assert lines[2] == "Not rendered: {first_name.__class__} {first_name[0]} {Maya}"
    [row] = await sends(store)
    assert row["status"] == "sent" and msg.headers["Message-ID"] == row["message_id"]
    assert row["message_id"] == message_id(row["idempotency_key"])
    assert hubspot[0].stats()["sends"] == 0  # nothing went through HubSpot's single-send
    assert hubspot[0].state.status_requests == ["maya@example.com"]  # one consent GET


async def test_transactional_mail_goes_over_smtp_too_without_a_consent_check(
    engine: Runtime, smtp: SmtpSimulator, hubspot: tuple[HubSpotSimulator, str]
) -> None:
    await engine.intake.accept(event("created", "d1"))
    assert await run(engine) == ["done"]
    [msg] = smtp.messages
    assert (msg.subject, msg.body.strip()) == (
        "We received your application, Maya",
        "Thank you, Maya.",
    )
    assert hubspot[0].state.status_requests == []


async def test_smtp_4xx_is_retried_and_the_email_arrives_once(
    engine: Runtime, smtp: SmtpSimulator, clock: ManualClock, store: Store
) -> None:
    smtp.fail_next(451, "4.3.0 try again later", stage="DATA")
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["pending"]
    assert smtp.messages == []
    assert [r["status"] for r in await sends(store)] == ["refused"]  # known not delivered

    clock.advance(timedelta(minutes=5))
    assert await run(engine) == ["done"]
    assert len(smtp.messages) == 1 and smtp.duplicate_message_ids() == {}
    [row] = await sends(store)
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_smtp_5xx_is_dead_lettered_with_an_alert(
    engine: Runtime,
    smtp: SmtpSimulator,
    slack: tuple[SlackSimulator, str],
    store: Store,
) -> None:
    smtp.fail_next(550, "5.1.1 mailbox unavailable", stage="RCPT")
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["dead"]
    assert await engine.alerts.deliver_due() >= 1

    async with store.read() as conn:
        [dead] = await queries.dead_letters(conn)
    assert "550" in dead["last_error"] and "mailbox unavailable" in dead["last_error"]
    alert = next(m["text"] for m in slack[0].messages if "dead letter" in m["text"])
    assert "candidate: c1" in alert and "action: crm.send_email" in alert and "550" in alert
    assert smtp.messages == []


async def test_a_retry_after_a_crash_after_the_send_does_not_send_twice(
    engine: Runtime, smtp: SmtpSimulator, clock: ManualClock, store: Store
) -> None:
    await engine.intake.accept(event("rejected", "d1"))
    async with asyncio.timeout(TIMEOUT):
        await engine.steps.run_due()
        # a worker claims the email and sends it, then dies before recording the outcome
        now = clock.now()
        async with store.transaction() as conn:
            [job] = await queries.claim_actions(conn, now, now + timedelta(minutes=2), 10)
        await engine.dispatcher.handlers["crm.send_email"](job)
        assert len(smtp.messages) == 1

        clock.advance(timedelta(minutes=3))  # the lease runs out; another worker retries
        outcomes = await engine.dispatcher.run_until_idle()
    assert [o.status for o in outcomes] == ["done"]
    assert len(smtp.messages) == 1 and smtp.duplicate_message_ids() == {}
    assert (await email_result(store))["status"] == "ALREADY_SENT"


async def test_the_remaining_window_resends_with_the_same_message_id_and_says_so(
    engine: Runtime, smtp: SmtpSimulator, mailer: SmtpMailer, clock: ManualClock, store: Store
) -> None:
    """A crash between the relay's 250 and our commit of "sent": at least once, honestly."""
    await engine.intake.accept(event("rejected", "d1"))
    async with asyncio.timeout(TIMEOUT):
        await engine.steps.run_due()
        now = clock.now()
        async with store.transaction() as conn:
            [job] = await queries.claim_actions(conn, now, now + timedelta(minutes=2), 10)
            ident = message_id(job.idempotency_key)
            await mail_sends.start(conn, job.idempotency_key, ident, "maya@example.com", now)
        # what the crashed worker got out before dying: the relay accepted it
        await mailer.send_mail("maya@example.com", "s", "t", ident)

        clock.advance(timedelta(minutes=3))
        outcomes = await engine.dispatcher.run_until_idle()
    assert [o.status for o in outcomes] == ["done"]
    assert smtp.duplicate_message_ids() == {ident: 2}
    assert (await email_result(store))["resent_after_unknown_outcome"] is True


# -- guardrails are the CRM path's -----------------------------------------------------------


async def test_a_suppressed_address_gets_no_smtp_mail(
    engine: Runtime, smtp: SmtpSimulator, store: Store, clock: ManualClock
) -> None:
    async with store.transaction() as conn:
        await queries.suppress(conn, "maya@example.com", "do_not_contact", clock.now())
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["skipped"]
    assert smtp.messages == [] and await sends(store) == []


async def test_quiet_hours_and_the_frequency_cap_defer_smtp_mail(
    engine: Runtime, smtp: SmtpSimulator, clock: ManualClock
) -> None:
    clock.advance(timedelta(hours=12))  # 21:00 UTC: quiet hours (20:00-08:00 by default)
    await engine.intake.accept(event("rejected", "d1"))
    assert await run(engine) == ["deferred"]
    assert smtp.messages == []

    clock.advance(timedelta(hours=11))  # 08:00 the next day
    assert await run(engine) == ["done"]
    assert len(smtp.messages) == 1

    # a second nurture email within 48 h waits for the frequency cap (1 per 48 h)
    await engine.intake.accept(event("updated", "d2"))
    assert await run(engine) == ["deferred"]
    assert len(smtp.messages) == 1
    clock.advance(timedelta(hours=48))
    assert await run(engine) == ["done"]
    assert len(smtp.messages) == 2 and smtp.duplicate_message_ids() == {}


# -- rendering and ids -----------------------------------------------------------------------


def test_render_replaces_declared_names_only_and_never_twice() -> None:
    text = "{a} {a.b} {a[0]} {a!r} {b} {{a}}"
    assert render(text, {"a": "x{b}"}, {"a", "b"}) == "x{b} {a.b} {a[0]} {a!r}  {x{b}}"
    with pytest.raises(TemplateError, match=r"\{c\} is not a declared variable"):
        render("{c}", {"c": "secret"}, {"a"})


def test_message_ids_are_stable_distinct_and_valid() -> None:
    step_key, event_key = "12:day-7:0", "ats/greenhouse|d1|welcome|1"
    assert message_id(step_key) == "<12%3Aday-7%3A0@nurture>"
    assert message_id(event_key) == "<ats/greenhouse|d1|welcome|1@nurture>"
    assert message_id("a:b") != message_id("a%3Ab")  # escaping keeps keys apart
    long = message_id("x" * 400)
    assert long.startswith("<sha256.") and len(long) < 100
    assert message_id("x" * 400) == long
