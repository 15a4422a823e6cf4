"""Alerts reach an SMTP mailbox, naming the candidate, rule, action and reason."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from adapters.smtp.client import SmtpAlertTarget
from adapters.smtp.simulator import SmtpSimulator
from engine.alerting import AlertSender
from engine.clock import ManualClock
from engine.store import queries
from engine.store.store import Store


async def test_a_dead_letter_alert_is_emailed_to_the_ops_mailbox(
    store: Store, clock: ManualClock
) -> None:
    now = clock.now()
    async with store.transaction() as conn:
        await queries.group_alert(
            conn,
            group_key="dead:r:crm.upsert_contact",
            kind="dead_letter",
            reason="crm.upsert_contact for rule r failed: hubspot: HTTP 400: Email is invalid",
            candidate_id="gh-4711",
            rule_id="r",
            action_type="crm.upsert_contact",
            now=now,
            window_start=now - timedelta(minutes=10),
        )
    with SmtpSimulator(starttls=False) as mailbox:
        target = SmtpAlertTarget(
            "ops-mail",
            "127.0.0.1",
            mailbox.port,
            "nurture@example.com",
            ["ops@example.com"],
            starttls=False,
        )
        async with asyncio.timeout(10):
            assert await AlertSender(store, [target], clock).deliver_due() == 1
        assert len(mailbox.messages) == 1
        message = mailbox.messages[0]
    assert message.rcpt_tos == ("ops@example.com",)
    assert message.subject == "[nurture] dead letter"
    for part in (
        "candidate: gh-4711",
        "rule: r",
        "action: crm.upsert_contact",
        "HTTP 400: Email is invalid",
    ):
        assert part in message.body
    async with store.read() as conn:
        assert [a["status"] for a in await queries.all_alerts(conn)] == ["sent"]
