"""Alert delivery: due alerts go to every target; a failed delivery is retried, not lost.

Alerts are recorded (and grouped) in the same transaction as the failure they report; this
module only delivers them. A message names the candidate record id, the rule, the action and
the reason, and for a grouped storm the count and some of the candidate ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from engine.clock import Clock
from engine.errors import AdapterError
from engine.log_lines import EMAIL
from engine.ports import AlertPort
from engine.store import queries
from engine.store.store import Store


def render_alert(alert: Any) -> tuple[str, str]:
    """(subject, text) of one alert row."""
    count = int(alert["count"])
    subject = f"[nurture] {alert['kind'].replace('_', ' ')}"
    if count > 1:
        subject += f" x{count}"
    lines = [str(alert["reason"])]
    if alert["candidate_id"]:
        lines.append(f"candidate: {alert['candidate_id']}")
    if alert["rule_id"]:
        lines.append(f"rule: {alert['rule_id']}")
    if alert["action_type"]:
        lines.append(f"action: {alert['action_type']}")
    if count > 1:
        samples = ", ".join(alert["samples"])
        lines.append(
            f"{count} occurrences between {alert['first_at']:%Y-%m-%d %H:%M} and "
            f"{alert['last_at']:%H:%M} UTC; candidates include: {samples}"
        )
    lines.append("see `nurture dlq list`; `nurture dlq replay` re-drives after a fix")
    # a vendor's message often quotes the address ("Email address x@y is invalid"); an alert
    # names the candidate by record id and goes to a channel, so addresses are redacted as in
    # the logs (the dead letter keeps the full text for `nurture dlq list`)
    return subject, EMAIL.sub("<email>", "\n".join(lines))


class AlertSender:
    def __init__(
        self,
        store: Store,
        targets: Sequence[AlertPort],
        clock: Clock,
        retry_base: timedelta = timedelta(seconds=30),
    ) -> None:
        self.store = store
        self.targets = targets
        self.clock = clock
        self.retry_base = retry_base

    async def deliver_due(self) -> int:
        """Send every due alert to every target; returns how many were delivered."""
        async with self.store.read() as conn:
            due = await queries.due_alerts(conn, self.clock.now())
        delivered = 0
        for alert in due:
            subject, text = render_alert(alert)
            errors = []
            for target in self.targets:
                try:
                    await target.send_alert(subject, text)
                except AdapterError as exc:
                    errors.append(f"{target.name}: {exc}")
            attempts = int(alert["attempts"]) + 1
            now = self.clock.now()
            async with self.store.transaction() as conn:
                if errors and len(errors) == len(self.targets):
                    retry_at = now + self.retry_base * min(2 ** (attempts - 1), 64)
                    await queries.mark_alert(
                        conn,
                        alert["id"],
                        sent=False,
                        now=now,
                        attempts=attempts,
                        retry_at=retry_at,
                        error="; ".join(errors),
                    )
                else:  # one target reached is enough for a human to know
                    await queries.mark_alert(
                        conn,
                        alert["id"],
                        sent=True,
                        now=now,
                        attempts=attempts,
                        error="; ".join(errors) or None,
                    )
                    delivered += 1
        return delivered
