"""The invariants, checked at the simulators (the vendors' side) and in the daemon's store.

``Snapshot.read(store)`` takes what the daemon recorded; each check compares it, the vendors'
records (``GET /state`` of the vendors process) and the poster's acknowledgements, and returns
a ``Check``: whether it held and, when not, the first few offending items.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from engine.store.store import Store
from engine.store.tables import (
    alerts,
    enrollment_steps,
    enrollments,
    inbox,
    outbox,
    suppressions,
)
from tests.proof.poster import Outcome
from tests.proof.traffic import Mix

FINISHED = ("done", "skipped")
WAITING = ("pending", "running", "deferred")


@dataclass
class Check:
    held: bool
    detail: str = ""

    @classmethod
    def of(cls, problems: list[str], what: str) -> Check:
        if not problems:
            return cls(True)
        shown = "; ".join(problems[:5])
        return cls(False, f"{len(problems)} {what}: {shown}")


@dataclass
class Snapshot:
    events: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, id) -> row id
    actions: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    suppressed: dict[str, datetime] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def read(cls, store: Store) -> Snapshot:
        snap = cls()
        async with store.read() as conn:
            rows = await conn.execute(select(inbox.c.source, inbox.c.delivery_id, inbox.c.id))
            snap.events = {(r[0], r[1]): int(r[2]) for r in rows}
            snap.actions = [
                dict(r)
                for r in (
                    await conn.execute(
                        select(
                            outbox.c.id,
                            outbox.c.event_id,
                            outbox.c.rule_id,
                            outbox.c.action_type,
                            outbox.c.candidate_id,
                            outbox.c.idempotency_key,
                            outbox.c.status,
                            outbox.c.attempts,
                            outbox.c.next_attempt_at,
                            outbox.c.last_error,
                            outbox.c.enrollment_id,
                            outbox.c.finished_at,
                        )
                    )
                ).mappings()
            ]
            snap.steps = [
                dict(r)
                for r in (
                    await conn.execute(
                        select(
                            enrollment_steps.c.id,
                            enrollment_steps.c.step_id,
                            enrollment_steps.c.occurrence,
                            enrollment_steps.c.due_at,
                            enrollment_steps.c.status,
                            enrollment_steps.c.reason,
                            enrollments.c.sequence_id,
                            enrollments.c.candidate_id,
                            enrollments.c.email,
                        ).join(enrollments, enrollments.c.id == enrollment_steps.c.enrollment_id)
                    )
                ).mappings()
            ]
            snap.suppressed = {
                str(r[0]): r[1]
                for r in await conn.execute(select(suppressions.c.email, suppressions.c.created_at))
            }
            snap.alerts = [dict(r) for r in (await conn.execute(select(alerts))).mappings()]
        return snap

    def status_counts(self) -> Counter[str]:
        return Counter(a["status"] for a in self.actions)


def event_key(outcome: Outcome) -> tuple[str, str]:
    """The (source, id) the daemon stores an acknowledged delivery under."""
    delivery = outcome.delivery
    if delivery.source == "hubspot":
        import json

        item = json.loads(delivery.body)[0]
        return "crm/hubspot", f"{item['portalId']}:{item['eventId']}"
    return f"ats/{delivery.source}", delivery.id


def every_accepted_event_processed(
    acknowledged: Iterable[Outcome],
    snap: Snapshot,
    allowed_dead: Callable[[dict[str, Any]], bool] = lambda _action: False,
) -> Check:
    """Each 2xx-acknowledged delivery is stored and each of its actions finished."""
    problems = []
    by_event: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for action in snap.actions:
        if action["event_id"] is not None:
            by_event[int(action["event_id"])].append(action)
    for outcome in acknowledged:
        if (
            outcome.delivery.kind == "dropped"
            and outcome.accepted
            and outcome.accepted.status == 202
        ):
            continue  # an action nurture does not map: acknowledged, deliberately not stored
        row = snap.events.get(event_key(outcome))
        if row is None:
            problems.append(f"{outcome.delivery.id} acknowledged but not stored")
            continue
        for action in by_event.get(row, []):
            if action["status"] in FINISHED or (
                action["status"] == "dead" and allowed_dead(action)
            ):
                continue
            problems.append(
                f"{outcome.delivery.id}: {action['action_type']} is {action['status']}"
                f" ({action['last_error']})"
            )
    return Check.of(problems, "accepted events not fully processed")


def one_contact_per_person(state: dict[str, Any], mix: Mix) -> Check:
    per_email: dict[str, int] = state["hubspot"]["contacts_per_email"]
    problems = [
        f"{e}: {per_email.get(e, 0)} contacts"
        for e in mix.expected_contacts
        if per_email.get(e, 0) != 1
    ]
    problems += [f"{e} must have no contact" for e in mix.dropped_emails if per_email.get(e)]
    problems += [f"{e}: {n} contacts" for e, n in per_email.items() if n > 1]
    return Check.of(sorted(set(problems)), "people without exactly one CRM contact")


def no_email_twice(state: dict[str, Any], mix: Mix, snap: Snapshot) -> tuple[Check, int]:
    """No person got one template more often than they have ATS records, and every send the
    CRM accepted is a send the store queued (so no key was invented twice). Returns the check
    and how many repeated requests the CRM absorbed by ``sendId``."""
    sends: dict[str, dict[str, Any]] = state["hubspot"]["sends"]
    queued = {a["idempotency_key"] for a in snap.actions if a["action_type"] == "crm.send_email"}
    problems = [f"sendId {key} was never queued" for key in sends if key not in queued]
    per_template: Counter[tuple[str, Any]] = Counter(
        (str(s["to"]).lower(), s["email_id"]) for s in sends.values()
    )
    for (to, email_id), count in per_template.items():
        if count > max(1, mix.records.get(to, 0)):
            problems.append(f"{to} got email {email_id} {count} times")
    absorbed = sum(max(0, int(s["requests"]) - 1) for s in sends.values())
    return Check.of(problems, "emails sent twice"), absorbed


def every_done_send_reached_the_crm(state: dict[str, Any], snap: Snapshot) -> Check:
    sends = state["hubspot"]["sends"]
    problems = [
        f"{a['idempotency_key']} is done in the store but not at the CRM"
        for a in snap.actions
        if a["action_type"] == "crm.send_email"
        and a["status"] == "done"
        and a["idempotency_key"] not in sends
    ]
    return Check.of(problems, "sends lost between store and CRM")


def no_due_step_missed(snap: Snapshot, now: datetime, tolerance: timedelta) -> Check:
    """Every step due before ``now - tolerance`` fired (or was cancelled by an exit or skipped
    for a reason other than lateness), and the action it queued is not still waiting."""
    cutoff = now - tolerance
    problems = []
    for step in snap.steps:
        where = f"{step['sequence_id']}/{step['step_id']} of {step['candidate_id']}"
        if step["status"] == "pending" and step["due_at"] < cutoff:
            problems.append(f"{where} due {step['due_at']:%m-%d %H:%M} still pending")
        elif step["status"] == "skipped" and str(step["reason"] or "").startswith("missed by"):
            problems.append(f"{where} skipped: {step['reason']}")
        elif step["status"] == "failed":
            problems.append(f"{where} failed: {step['reason']}")
    for action in snap.actions:
        if (
            action["enrollment_id"] is not None
            and action["status"] in WAITING
            and action["next_attempt_at"] < cutoff
        ):
            problems.append(
                f"step action {action['idempotency_key']} {action['status']} since "
                f"{action['next_attempt_at']:%m-%d %H:%M} ({action['last_error']})"
            )
    return Check.of(problems, "due steps missed")


def nothing_after_unsubscribe(
    unsubscribes: Iterable[Outcome], state: dict[str, Any], snap: Snapshot
) -> tuple[Check, int]:
    """No email reached the CRM after the daemon acknowledged the person's unsubscribe, and the
    address is on the suppression list. Returns the check and how many unsubscribes it covered."""
    acked = {
        o.delivery.email: o.accepted.ended for o in unsubscribes if o.accepted and o.delivery.email
    }
    problems = [
        f"{email} acknowledged but not suppressed"
        for email in acked
        if email not in snap.suppressed
    ]
    for send_id, send in state["hubspot"]["sends"].items():
        at = acked.get(str(send["to"]).lower())
        if at is not None and send["at"] > at:
            problems.append(
                f"{send_id} to {send['to']} {send['at'] - at:.3f} s after the unsubscribe"
            )
    return Check.of(problems, "emails after an accepted unsubscribe"), len(acked)
