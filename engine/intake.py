"""Intake: an event is stored, enriched, evaluated and its actions queued in ONE transaction.

``accept`` returns only after that transaction committed, so a 2xx to a vendor always means the
event and every decision about it are durable; a redelivery of the same ``(source, id)`` is
acknowledged and changes nothing. Evaluating inside the intake transaction (rather than in a
second pass) means no accepted event can ever wait unevaluated after a crash, and it halves
the commits per event.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.clock import Clock
from engine.evaluate import Decision, RuleSet
from engine.events import Event
from engine.store import queries
from engine.store.store import Store


def normalise_email(value: Any) -> str | None:
    """Lower-cased and trimmed; None for anything that is not a plausible address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if "@" in email and len(email) <= 320 else None


@dataclass(frozen=True)
class AlertSettings:
    group_window: timedelta = timedelta(minutes=10)
    error_rate_threshold: float = 0.02
    error_rate_window: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class Accepted:
    event_id: int | None
    duplicate: bool
    decisions: tuple[Decision, ...] = ()
    queued: int = 0


def ordering_key(event: Event, data: dict[str, Any]) -> str:
    """One person's actions run in order: keyed by email, which two ATS records share."""
    candidate = data.get("candidate") or {}
    contact = data.get("contact") or {}
    email = normalise_email(candidate.get("email")) or normalise_email(contact.get("email"))
    if email:
        return email
    if event.subject:
        return f"candidate:{event.subject}"
    return f"event:{event.source}:{event.id}"


class Intake:
    """Turns canonical events into durable decisions and queued actions."""

    def __init__(
        self, store: Store, rules: RuleSet, clock: Clock, alerts: AlertSettings | None = None
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.alerts = alerts or AlertSettings()

    async def accept(self, event: Event) -> Accepted:
        now = self.clock.now()
        data = copy.deepcopy(event.data)
        rules = self.rules  # one config version for the whole event, even across a reload
        async with self.store.transaction() as conn:
            event_id = await queries.insert_event(
                conn,
                {
                    "source": event.source,
                    "delivery_id": event.id,
                    "type": event.type,
                    "subject": event.subject,
                    "time": event.time,
                    "data": event.data,
                    "received_at": now,
                    "config_digest": rules.digest,
                },
            )
            if event_id is None:
                return Accepted(None, duplicate=True)
            subject = await self._enrich(conn, event, data)
            decisions = tuple(rules.evaluate(event.type, data))
            await queries.insert_firings(
                conn,
                [
                    {
                        "event_id": event_id,
                        "rule_id": d.rule_id,
                        "config_digest": rules.digest,
                        "matched": d.matched,
                        "error": d.error,
                        "created_at": now,
                    }
                    for d in decisions
                ],
            )
            key = ordering_key(event, data)
            rows = [
                {
                    "event_id": event_id,
                    "rule_id": d.rule_id,
                    "action_index": a.index,
                    "action_type": a.type,
                    "ordering_key": key,
                    "candidate_id": subject,
                    "trigger": event.type,
                    "payload": {
                        "params": a.params,
                        "fields": a.fields,
                        "event": {"source": event.source, "id": event.id, "type": event.type},
                    },
                    "idempotency_key": f"{event.source}|{event.id}|{d.rule_id}|{a.index}",
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for d in decisions
                if d.matched
                for a in d.actions
            ]
            for row in rows:
                if row["action_type"] == "suppress":
                    await self._suppress_now(conn, row, now)
            queued = await queries.insert_actions(conn, rows)
            for decision in decisions:
                if decision.error is not None:
                    await queries.group_alert(
                        conn,
                        group_key=f"evaluation:{decision.rule_id}",
                        kind="evaluation_error",
                        reason=f"rule {decision.rule_id} failed on event "
                        f"{event.source}/{event.id}: {decision.error}",
                        candidate_id=subject,
                        rule_id=decision.rule_id,
                        action_type=None,
                        now=now,
                        window_start=now - self.alerts.group_window,
                    )
        return Accepted(event_id, duplicate=False, decisions=decisions, queued=queued)

    async def _suppress_now(self, conn: Any, row: dict[str, Any], now: Any) -> None:
        """Consent takes effect the moment the event is accepted, not when a queue gets to it:
        the suppression is written in the intake transaction and the action is recorded done."""
        email = normalise_email(row["payload"]["fields"].get("email"))
        if email is None:
            row.update(
                status="dead", last_error="field 'email' is not an email address", finished_at=now
            )
            return
        added = await queries.suppress(conn, email, str(row["payload"]["params"]["reason"]), now)
        row.update(status="done", attempts=1, finished_at=now, result={"added": added})

    async def _enrich(self, conn: Any, event: Event, data: dict[str, Any]) -> str | None:
        """Fill what vendors leave out; returns the candidate id the event is about."""
        application = data.get("application")
        if event.type.startswith("ats.application.") and isinstance(application, dict):
            previous = await queries.swap_stage(
                conn, str(application.get("id")), application.get("stage"), self.clock.now()
            )
            if event.type == "ats.application.stage_changed" and not application.get(
                "previous_stage"
            ):
                application["previous_stage"] = previous
        if event.type.startswith("crm.") and not data.get("candidate"):
            email = normalise_email((data.get("contact") or {}).get("email"))
            link = await queries.link_for_email(conn, email) if email else None
            if link is not None and link["candidate_id"]:
                data["candidate"] = {"id": link["candidate_id"], "email": email}
        candidate = data.get("candidate") or {}
        return event.subject or (str(candidate["id"]) if candidate.get("id") else None)
