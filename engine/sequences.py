"""Sequences: enrol, exit, reschedule: always inside the transaction of what caused them.

The ``enrollment_steps`` table is the source of truth for every timed step (APScheduler only
wakes the step runner). An enrolment computes each step's due time from its anchor (a date in
the enrolling event, or the enrolment time) plus the step's offset. A keyed sequence
(``key: interview.id``) enrolled again with the same key moves its pending steps instead of
adding new ones; an exit cancels pending steps in the same transaction as the event that
caused it, so nothing fires after an unsubscribe is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.clock import Clock
from engine.config.load import ConfigSet
from engine.config.model import ExitTrigger, Sequence
from engine.config.types import parse_duration
from engine.evaluate import Evaluator, compile_expression, truthy
from engine.expressions import parse_timestamp
from engine.identity import normalise_email
from engine.store import queries
from engine.store.tables import (
    enrollment_steps,
    enrollments,
    outbox,
)


@dataclass(frozen=True)
class _CompiledSequence:
    sequence: Sequence
    anchor: Evaluator | None
    key: Evaluator | None
    step_anchors: dict[str, Evaluator]
    exits: dict[str, list[Evaluator | None]]  # event type -> conditions (None = always)


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            return None
    return None


def _context(data: dict[str, Any]) -> dict[str, Any]:
    """What an enrolment keeps of an event for its steps to render from."""
    return {part: data[part] for part in CONTEXT_PARTS if isinstance(data.get(part), dict)}


CONTEXT_PARTS = ("candidate", "application", "interview", "contact")


def _new_enrolment(
    sequence: Sequence,
    candidate_id: str,
    key: str,
    email: str | None,
    exclusive: bool,
    data: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """An active enrolment's row, as ``enroll`` and ``enroll_many`` both write it."""
    return {
        "sequence_id": sequence.id,
        "candidate_id": candidate_id,
        "key": key,
        "email": email,
        "category": sequence.category,
        "exclusive": exclusive,
        "status": "active",
        "reason": None,
        "context": _context(data),
        "started_at": now,
    }


class Sequencer:
    """Enrolment bookkeeping for one config version."""

    def __init__(
        self,
        config: ConfigSet,
        clock: Clock,
        compiler: Callable[[str, Clock], Evaluator] = compile_expression,
    ) -> None:
        self.config = config
        self.clock = clock
        self.compiled: dict[str, _CompiledSequence] = {}
        for sequence in config.sequences.values():
            exits: dict[str, list[Evaluator | None]] = {}
            for exit_on in sequence.exit_on:
                if isinstance(exit_on, ExitTrigger):
                    condition = compiler(exit_on.condition, clock) if exit_on.condition else None
                    exits.setdefault(exit_on.event, []).append(condition)
                else:
                    exits.setdefault(exit_on, []).append(None)
            self.compiled[sequence.id] = _CompiledSequence(
                sequence=sequence,
                anchor=compiler(sequence.anchor, clock) if sequence.anchor else None,
                key=compiler(sequence.key, clock) if sequence.key else None,
                step_anchors={s.id: compiler(s.anchor, clock) for s in sequence.steps if s.anchor},
                exits=exits,
            )

    # -- what every event does ------------------------------------------------------------
    async def observe(
        self,
        conn: AsyncConnection,
        event_type: str,
        data: dict[str, Any],
        candidate_id: str | None,
        now: datetime,
    ) -> list[tuple[int, str]]:
        """Keep snapshots current, refresh enrolment contexts, apply ``exit_on``.

        Returns the (enrolment id, reason) of every enrolment the event ended.
        """
        await self._snapshot(conn, data, now)
        if not self.compiled:  # no sequence is configured: the loop below would skip every row
            return []
        email = normalise_email((data.get("candidate") or {}).get("email")) or normalise_email(
            (data.get("contact") or {}).get("email")
        )
        active = await queries.active_enrollments(conn, candidate_id, email)
        ended: list[tuple[int, str]] = []
        for row in active:
            compiled = self.compiled.get(row["sequence_id"])
            if compiled is None:
                continue
            same_key = self._key_matches(compiled, row, data)
            if same_key:
                await self._refresh_context(conn, row, data)
            conditions = compiled.exits.get(event_type)
            if not conditions or not same_key:
                continue
            if await self._exits(conn, compiled, conditions, event_type, data, row, now):
                reason = f"exit_on {event_type}"
                await self._end(conn, row["id"], "exited", reason, now)
                ended.append((int(row["id"]), reason))
        return ended

    async def _exits(
        self,
        conn: AsyncConnection,
        compiled: _CompiledSequence,
        conditions: Iterable[Evaluator | None],
        event_type: str,
        data: dict[str, Any],
        row: Any,
        now: datetime,
    ) -> bool:
        """Whether an ``exit_on`` of this event type holds. A condition that fails to evaluate
        is alerted and counts as false, as a rule's does: raising here failed the whole event,
        so its other decisions (a suppression) were refused on every redelivery."""
        sequence = compiled.sequence
        for condition in conditions:
            if condition is None:
                return True
            try:
                if truthy(condition(data)):
                    return True
            except Exception as exc:
                await queries.group_alert(
                    conn,
                    group_key=f"evaluation:{sequence.id}/exit_on",
                    kind="evaluation_error",
                    reason=f"exit_on {event_type} of sequence {sequence.id} failed: "
                    f"{type(exc).__name__}: {exc}",
                    candidate_id=row["candidate_id"],
                    rule_id=f"{sequence.id}/exit_on",
                    action_type=None,
                    now=now,
                    window_start=now - timedelta(minutes=10),
                )
        return False

    def _key_matches(self, compiled: _CompiledSequence, row: Any, data: dict[str, Any]) -> bool:
        """An event about one interview does not touch the reminders of another."""
        if compiled.key is None:
            return True
        try:
            value = compiled.key(data)
        except Exception:
            return True
        return value is None or str(value) == row["key"]

    async def _refresh_context(self, conn: AsyncConnection, row: Any, data: dict[str, Any]) -> None:
        context = {**row["context"], **_context(data)}
        if context != row["context"]:
            await queries.set_enrollment_context(conn, int(row["id"]), context)

    async def _snapshot(self, conn: AsyncConnection, data: dict[str, Any], now: datetime) -> None:
        candidate = data.get("candidate")
        if isinstance(candidate, dict) and candidate.get("id") and candidate.get("email"):
            await queries.save_snapshot(conn, str(candidate["id"]), candidate, now)
        application = data.get("application")
        job = application.get("job") if isinstance(application, dict) else None
        if isinstance(job, dict) and job.get("id"):
            await queries.save_job(conn, job, now)

    # -- enrol, exit ----------------------------------------------------------------------
    async def enroll(
        self,
        conn: AsyncConnection,
        sequence_id: str,
        start_at_step: str | None,
        data: dict[str, Any],
        candidate_id: str | None,
        email: str | None,
        now: datetime,
        due_now: list[int] | None = None,
    ) -> str:
        """Enrol (or reschedule); returns what happened, for the audit trail.

        A new enrolment with a step already due (Day 0) is added to ``due_now``, for the
        caller to fire in the same transaction (``StepRunner.fire_enrolled``).
        """
        compiled = self.compiled[sequence_id]
        sequence = compiled.sequence
        if candidate_id is None:
            return "not enrolled: the event names no candidate"
        key = ""
        if compiled.key is not None:
            value = compiled.key(data)
            if value is None:
                return f"not enrolled: key {sequence.key!r} is null in this event"
            key = str(value)
        state = await queries.enrolment_state(conn, sequence_id, candidate_id, key)
        active = state.active
        if active is None and state.completed is not None and compiled.key is not None:
            # a keyed enrolment whose steps have all gone out (the interview took place) and
            # is moved (a no-show rescheduled): it reopens when a step is due again
            reopened = await self._reopen(conn, compiled, state.completed, data, now)
            if reopened is not None:
                return reopened
        if active is not None:
            if compiled.key is not None:
                moved = await self._reschedule(conn, compiled, int(active["id"]), data, now)
                await self._refresh_context(conn, active, data)
                return f"rescheduled {moved} pending step(s)"
            if sequence.reenroll != "restart":
                return "already enrolled"
            await self._end(conn, int(active["id"]), "exited", "restarted", now)
        elif sequence.reenroll == "never" and state.enrolled_before:
            return "not enrolled: enrolled before and reenroll is 'never'"
        exclusive = sequence.category == "nurture" and not sequence.allow_concurrent
        if exclusive:
            # the one just ended for a restart no longer counts
            others = [r for r in state.exclusive if active is None or r["id"] != active["id"]]
            if others:
                return f"not enrolled: nurture sequence {others[0]['sequence_id']!r} is active"
        steps = sequence.steps
        if start_at_step is not None:
            steps = steps[[s.id for s in steps].index(start_at_step) :]
        due = {step.id: self._due(compiled, step.id, step.at, data, now) for step in steps}
        rows = [
            {"step_id": step, "occurrence": 0, "due_at": due_at, "status": "pending"}
            for step, due_at in due.items()
        ]
        row = _new_enrolment(sequence, candidate_id, key, email, exclusive, data, now)
        enrollment_id = await queries.insert_enrollment(conn, row, rows)
        if due_now is not None and any(due_at <= now for due_at in due.values()):
            due_now.append(enrollment_id)
        return f"enrolled ({len(rows)} step(s))"

    async def enroll_many(
        self,
        conn: AsyncConnection,
        sequence_id: str,
        items: Iterable[tuple[str, str | None, dict[str, Any]]],
        now: datetime,
    ) -> int:
        """Enrol many candidates at once (a backfill): ``(candidate_id, email, data)`` each.

        The same policies as ``enroll`` (one enrolment per candidate and key, ``reenroll``,
        one nurture sequence at a time), decided for the whole batch with one query each, and
        written with two multi-row INSERTs. Already-enrolled candidates are left as they are
        (no reschedule). Returns how many were enrolled.
        """
        compiled = self.compiled[sequence_id]
        sequence = compiled.sequence
        wanted: dict[tuple[str, str], tuple[str | None, dict[str, Any]]] = {}
        for candidate_id, email, data in items:
            key = ""
            if compiled.key is not None:
                value = compiled.key(data)
                if value is None:
                    continue
                key = str(value)
            wanted.setdefault((candidate_id, key), (email, data))
        if not wanted:
            return 0
        candidates = sorted({candidate for candidate, _ in wanted})
        existing = (
            await conn.execute(
                select(enrollments.c.candidate_id, enrollments.c.key, enrollments.c.status).where(
                    enrollments.c.sequence_id == sequence_id,
                    enrollments.c.candidate_id.in_(candidates),
                )
            )
        ).all()
        taken = {
            (str(c), str(k))
            for c, k, status in existing
            if status == "active" or sequence.reenroll == "never"
        }
        exclusive = sequence.category == "nurture" and not sequence.allow_concurrent
        busy: set[str] = set()
        if exclusive:
            others = await conn.execute(
                select(enrollments.c.candidate_id).where(
                    enrollments.c.candidate_id.in_(candidates),
                    enrollments.c.status == "active",
                    enrollments.c.exclusive.is_(True),
                    enrollments.c.sequence_id != sequence_id,
                )
            )
            busy = {str(c) for c in others.scalars()}
        chosen = [
            (candidate, key, email, data)
            for (candidate, key), (email, data) in wanted.items()
            if (candidate, key) not in taken and candidate not in busy
        ]
        if not chosen:
            return 0
        inserted = await conn.execute(
            enrollments.insert().returning(enrollments.c.id, sort_by_parameter_order=True),
            [
                {
                    **_new_enrolment(sequence, candidate, key, email, exclusive, data, now),
                    "ended_at": None,
                }
                for candidate, key, email, data in chosen
            ],
        )
        # without anchors every enrolment's steps are due at the same offsets from now:
        # compute them once instead of once per candidate
        anchored = compiled.anchor is not None or bool(compiled.step_anchors)
        fixed = {step.id: now + parse_duration(step.at) for step in sequence.steps}
        steps = [
            {
                "enrollment_id": int(enrollment_id),
                "step_id": step.id,
                "occurrence": 0,
                "due_at": (
                    self._due(compiled, step.id, step.at, data, now) if anchored else fixed[step.id]
                ),
                "status": "pending",
            }
            for enrollment_id, (_, _, _, data) in zip(inserted.scalars(), chosen, strict=True)
            for step in sequence.steps
        ]
        await conn.execute(enrollment_steps.insert(), steps)
        return len(chosen)

    def _due(
        self,
        compiled: _CompiledSequence,
        step_id: str,
        offset: str,
        data: dict[str, Any],
        now: datetime,
    ) -> datetime:
        evaluator = compiled.step_anchors.get(step_id) or compiled.anchor
        anchor = _as_time(evaluator(data)) if evaluator is not None else None
        return (anchor or now) + parse_duration(offset)

    async def _reopen(
        self,
        conn: AsyncConnection,
        compiled: _CompiledSequence,
        done: dict[str, Any],
        data: dict[str, Any],
        now: datetime,
    ) -> str | None:
        moved = await self._reschedule(conn, compiled, int(done["id"]), data, now)
        if not moved:  # the same times again: nothing is due again
            return None
        await conn.execute(
            update(enrollments)
            .where(enrollments.c.id == done["id"])
            .values(status="active", reason=None, ended_at=None)
        )
        await self._refresh_context(conn, done, data)  # the steps render the new time
        return f"rescheduled {moved} pending step(s)"

    async def _reschedule(
        self,
        conn: AsyncConnection,
        compiled: _CompiledSequence,
        enrollment_id: int,
        data: dict[str, Any],
        now: datetime,
    ) -> int:
        """Pending steps move to the new time. A step that already fired (or was skipped)
        for the old time is armed again when its new moment is still ahead: the reminder of
        an interview moved to next week must go out again, as a new occurrence (its own
        idempotency key), and the old firing's email, if still queued, names the old time."""
        rows = (
            (
                await conn.execute(
                    select(enrollment_steps)
                    .where(enrollment_steps.c.enrollment_id == enrollment_id)
                    .order_by(enrollment_steps.c.occurrence)
                )
            )
            .mappings()
            .all()
        )
        latest = {row["step_id"]: row for row in rows}  # each step's last occurrence
        steps = {s.id: s for s in compiled.sequence.steps}
        moved = 0
        for step_id, row in latest.items():
            step = steps.get(step_id)
            if step is None:
                continue
            due = self._due(compiled, step_id, step.at, data, now)
            if due == row["due_at"]:
                continue
            if row["status"] == "pending":
                if step.repeat is not None and row["occurrence"] != 0:
                    continue  # a repetition keeps its interval from the one before
                await conn.execute(
                    update(enrollment_steps)
                    .where(enrollment_steps.c.id == row["id"])
                    .values(due_at=due)
                )
            elif step.repeat is None and due > now:
                await conn.execute(
                    enrollment_steps.insert().values(
                        enrollment_id=enrollment_id,
                        step_id=step_id,
                        occurrence=int(row["occurrence"]) + 1,
                        due_at=due,
                        status="pending",
                    )
                )
                await queries.skip_queued_step(
                    conn,
                    enrollment_id,
                    f"{compiled.sequence.id}/{step_id}",
                    "superseded by a reschedule",
                    now,
                )
            else:
                continue
            moved += 1
        return moved

    @staticmethod
    def _whose(candidate_id: str | None, email: str | None) -> Any:
        """Enrolments of this candidate, or of this address when a CRM event has no link."""
        if candidate_id is not None:
            return enrollments.c.candidate_id == candidate_id
        if email is not None:
            return enrollments.c.email == email
        return None

    async def exit(
        self,
        conn: AsyncConnection,
        sequence_id: str,
        candidate_id: str | None,
        reason: str,
        now: datetime,
        email: str | None = None,
    ) -> int:
        who = self._whose(candidate_id, email)
        if who is None:
            return 0
        return await self._exit_where(conn, who, sequence_id, reason, now)

    async def exit_many(
        self,
        conn: AsyncConnection,
        sequence_id: str,
        candidate_ids: list[str] | None,
        reason: str,
        now: datetime,
    ) -> int:
        """End many candidates' enrolments at once (all of a sequence when ``None``): three
        set-based statements, whatever the count (10,000 steps cancel in well under 1 s)."""
        who = (
            enrollments.c.candidate_id.in_(candidate_ids)
            if candidate_ids is not None
            else enrollments.c.id.is_not(None)
        )
        return await self._exit_where(conn, who, sequence_id, reason, now)

    async def _exit_where(
        self, conn: AsyncConnection, who: Any, sequence_id: str, reason: str, now: datetime
    ) -> int:
        condition = and_(who, enrollments.c.status == "active")
        if sequence_id != "*":
            condition = and_(condition, enrollments.c.sequence_id == sequence_id)
        ended = await conn.execute(
            update(enrollments)
            .where(condition)
            .values(status="exited", reason=reason, ended_at=now)
            .returning(enrollments.c.id)
        )
        ids = [int(i) for i in ended.scalars()]
        await self._cancel_pending(conn, ids, reason, now)
        return len(ids)

    async def _end(
        self, conn: AsyncConnection, enrollment_id: int, status: str, reason: str, now: datetime
    ) -> None:
        await queries.end_enrollment(conn, enrollment_id, status, reason, now)

    async def _cancel_pending(
        self, conn: AsyncConnection, enrollment_ids: list[int], reason: str, now: datetime
    ) -> None:
        """Pending steps are cancelled, and so is a fired step's email a guardrail holds."""
        if not enrollment_ids:
            return
        await conn.execute(
            update(enrollment_steps)
            .where(
                enrollment_steps.c.enrollment_id.in_(enrollment_ids),
                enrollment_steps.c.status == "pending",
            )
            .values(status="cancelled", reason=reason)
        )
        await conn.execute(
            update(outbox)
            .where(
                outbox.c.enrollment_id.in_(enrollment_ids),
                outbox.c.status.in_(("pending", "deferred")),
            )
            .values(status="skipped", last_error=f"enrolment ended: {reason}", finished_at=now)
        )
