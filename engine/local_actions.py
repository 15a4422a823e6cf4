"""Actions that only touch our own store run inside the transaction that decided them.

``suppress``, ``sequence.enroll`` and ``sequence.exit`` are not vendor calls, so they need no
queue: running them at once means consent and exits take effect the moment the event is
accepted, and an enrolment exists in the same transaction as the event that caused it. Their
outbox rows are still written (as done) for the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from engine.config.load import ConfigSet
from engine.identity import normalise_email
from engine.sequences import Sequencer
from engine.store import queries

LOCAL_TYPES = frozenset({"suppress", "sequence.enroll", "sequence.exit"})


def outbox_row(
    config: ConfigSet,
    *,
    action_type: str,
    params: dict[str, Any],
    fields: dict[str, Any],
    rule_id: str,
    action_index: int,
    event_id: int | None,
    trigger: str,
    idempotency_key: str,
    ordering_key: str,
    candidate_id: str | None,
    now: datetime,
    time_zone: str | None,
    send_window: dict[str, Any] | None,
    event: dict[str, Any],
    enrollment_id: int | None = None,
) -> dict[str, Any]:
    """One outbox row; a candidate email carries its touch category and guardrail inputs."""
    category = None
    if action_type == "crm.send_email":
        template = config.templates.get(str(params.get("template")))
        category = template.category if template is not None else "nurture"
    return {
        "event_id": event_id,
        "rule_id": rule_id,
        "action_index": action_index,
        "action_type": action_type,
        "ordering_key": ordering_key,
        "candidate_id": candidate_id,
        "trigger": trigger,
        "payload": {
            "params": params,
            "fields": fields,
            "event": event,
            "guard": {"time_zone": time_zone, "send_window": send_window},
        },
        "idempotency_key": idempotency_key,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "touch_category": category,
        "enrollment_id": enrollment_id,
    }


class LocalActions:
    def __init__(self, sequencer: Sequencer) -> None:
        self.sequencer = sequencer

    async def apply(
        self,
        conn: AsyncConnection,
        row: dict[str, Any],
        data: dict[str, Any],
        candidate_id: str | None,
        now: datetime,
        due_now: list[int] | None = None,
    ) -> None:
        """Run a local action now and mark its row done (or dead); others are left queued.
        An enrolment with a step due at once is noted in ``due_now`` (``Sequencer.enroll``)."""
        kind = row["action_type"]
        if kind not in LOCAL_TYPES:
            return
        params = row["payload"]["params"]
        fields = row["payload"]["fields"]
        result: dict[str, Any]
        if kind == "suppress":
            email = normalise_email(fields.get("email"))
            if email is None:
                row.update(
                    status="dead",
                    last_error="field 'email' is not an email address",
                    finished_at=now,
                )
                return
            result = {"added": await queries.suppress(conn, email, str(params["reason"]), now)}
        elif kind == "sequence.enroll":
            email = normalise_email((data.get("candidate") or {}).get("email"))
            outcome = await self.sequencer.enroll(
                conn,
                str(params["sequence"]),
                params.get("start_at_step"),
                data,
                candidate_id,
                email,
                now,
                due_now,
            )
            result = {"outcome": outcome}
        else:
            email = normalise_email((data.get("candidate") or {}).get("email")) or (
                normalise_email((data.get("contact") or {}).get("email"))
            )
            ended = await self.sequencer.exit(
                conn, str(params["sequence"]), candidate_id, str(params["reason"]), now, email
            )
            result = {"exited": ended}
        row.update(status="done", attempts=1, finished_at=now, result=result)
