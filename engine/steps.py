"""The step runner: due steps become outbox actions, exactly once, in one transaction each.

Claiming, evaluating, queueing the action (key ``enrollment:step:occurrence``), marking the step
fired and writing the next occurrence of a repeating step all commit together; on PostgreSQL
the claimed rows are locked ``FOR UPDATE SKIP LOCKED``, so several engine processes never fire
a step twice, and a crash rolls the whole claim back (the transaction is the lease).

Overdue steps (after downtime, or past at enrolment) follow their misfire policy: ``send_late``
fires within ``grace`` and is skipped beyond it; ``skip`` fires only if it is less than one
minute late. A skipped step is recorded with its reason. At most ``batch`` steps are claimed
per tick, so a backlog drains spread out instead of as one burst.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from engine.clock import Clock
from engine.config.actions import ActionBase
from engine.config.load import ConfigSet
from engine.config.model import Misfire, Sequence, Step
from engine.config.types import parse_duration
from engine.evaluate import Evaluator, compile_expression, truthy
from engine.events import StepContext
from engine.local_actions import LocalActions, outbox_row
from engine.log_lines import LogLine
from engine.metrics import Metrics
from engine.store import queries, step_queries
from engine.store.prepared import savepoint
from engine.store.store import Store

log = logging.getLogger("nurture.steps")
SKIP_TOLERANCE = timedelta(minutes=1)
TICK_CHUNK = 32


@dataclass(frozen=True)
class StepOutcome:
    enrollment_id: int
    step_id: str
    occurrence: int
    status: str  # fired skipped cancelled
    reason: str | None = None
    action: str | None = None


@dataclass
class Fired:
    """Steps one transaction fired (their rows as claimed) and what happened to each."""

    rows: list[Any] = field(default_factory=list)
    outcomes: list[StepOutcome] = field(default_factory=list)


def _step_line(outcome: StepOutcome) -> dict[str, Any]:
    line = {
        "decision": f"step_{outcome.status}",
        "enrollment": outcome.enrollment_id,
        "step": outcome.step_id,
        "occurrence": outcome.occurrence,
    }
    return {**line, "reason": outcome.reason} if outcome.reason else line


class StepRunner:
    def __init__(
        self,
        store: Store,
        config: ConfigSet,
        clock: Clock,
        local: LocalActions,
        *,
        batch: int = 1000,
        compiler: Callable[[str, Clock], Evaluator] = compile_expression,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.metrics.declare("nurture_steps_total", "counter", "sequence steps by outcome")
        self.metrics.declare(
            "nurture_step_lag_seconds", "histogram", "fired steps: from due to committed"
        )
        self.config = config
        self.clock = clock
        self.local = local
        self.batch = batch
        self._compiler = compiler
        self._compiled: dict[str, Evaluator] = {}

    def _compile(self, text: str) -> Evaluator:
        if text not in self._compiled:
            self._compiled[text] = self._compiler(text, self.clock)
        return self._compiled[text]

    async def run_due(self, limit: int | None = None) -> list[StepOutcome]:
        """Fire up to ``limit`` (default ``batch``) due steps in one transaction; returns what
        happened to each.

        Reads are made once per batch (enrolments, snapshots) and writes go out as one
        statement per kind (step statuses, outbox rows, next occurrences, completions), so
        a tick of a thousand steps costs a handful of round trips, not thousands.
        """
        now = self.clock.now()
        async with self.store.transaction() as conn:
            due = await step_queries.due_steps(conn, now, self.batch if limit is None else limit)
            fired = await self._fire_rows(conn, due, now)
        self.report(fired)
        return fired.outcomes

    async def fire_enrolled(
        self, conn: AsyncConnection, enrollment_ids: list[int], now: datetime
    ) -> Fired:
        """Fire, inside the caller's transaction, the steps of these (just made) enrolments
        that are already due: the Day-0 welcome goes out with the application that caused
        it instead of waiting for the next tick. ``report`` it once that transaction
        commits; whatever this does not fire, the tick does."""
        if not enrollment_ids:
            return Fired()
        return await self._fire_rows(
            conn, await step_queries.due_steps_of(conn, enrollment_ids, now), now
        )

    async def _fire_rows(self, conn: AsyncConnection, due: list[Any], now: datetime) -> Fired:
        if not due:
            return Fired()
        tick = await _Tick.load(conn, due)
        outcomes = [await self._fire(conn, tick, row, now) for row in due]
        await tick.flush(conn, now)
        return Fired(due, outcomes)

    def report(self, fired: Fired) -> None:
        """Metrics and log lines for steps whose transaction has committed."""
        if not fired.outcomes:
            return
        committed = self.clock.now()
        logging_steps = log.isEnabledFor(logging.INFO)
        for row, outcome in zip(fired.rows, fired.outcomes, strict=True):
            self.metrics.inc("nurture_steps_total", status=outcome.status)
            if logging_steps:
                log.info(LogLine(_step_line(outcome)))
            if outcome.status == "fired":
                lag = (committed - row["due_at"]).total_seconds()
                self.metrics.observe("nurture_step_lag_seconds", max(lag, 0.0))

    async def run_tick(self) -> list[StepOutcome]:
        """What the timekeeper runs each second: up to ``batch`` due steps, in transactions
        of ``TICK_CHUNK`` with the event loop let go in between. On SQLite a transaction runs
        without yielding, and at about 0.2 ms per step (``bench_steps``) a full batch of
        1,000 in one held every webhook for some 200 ms."""
        outcomes: list[StepOutcome] = []
        while len(outcomes) < self.batch:
            chunk = await self.run_due(min(TICK_CHUNK, self.batch - len(outcomes)))
            outcomes += chunk
            if len(chunk) < TICK_CHUNK:
                break
            await asyncio.sleep(0)
        return outcomes

    async def run_until_idle(self, max_rounds: int = 10_000) -> list[StepOutcome]:
        outcomes: list[StepOutcome] = []
        for _ in range(max_rounds):
            batch = await self.run_due()
            if not batch:
                break
            outcomes.extend(batch)
        return outcomes

    @staticmethod
    def _set(
        tick: _Tick,
        row: Any,
        status: str,
        reason: str | None,
        now: datetime,
        action: str | None = None,
    ) -> StepOutcome:
        tick.step_updates.append(
            {
                "step_pk": row["id"],
                "new_status": status,
                "new_reason": reason,
                "new_fired": now if status == "fired" else None,
            }
        )
        tick.touched.add(int(row["enrollment_id"]))
        return StepOutcome(
            int(row["enrollment_id"]),
            row["step_id"],
            int(row["occurrence"]),
            status,
            reason,
            action,
        )

    async def _fire(
        self, conn: AsyncConnection, tick: _Tick, row: Any, now: datetime
    ) -> StepOutcome:
        enrollment = tick.enrollments.get(int(row["enrollment_id"]))
        if enrollment is None or enrollment["status"] != "active":
            return self._set(tick, row, "cancelled", "enrolment is no longer active", now)
        sequence = self.config.sequences.get(enrollment["sequence_id"])
        step = (
            next((s for s in sequence.steps if s.id == row["step_id"]), None) if sequence else None
        )
        if sequence is None or step is None:
            return self._set(tick, row, "skipped", "step removed from the sequence", now)
        self._schedule_next(tick, row, step)
        lateness = now - row["due_at"]
        misfire = step.misfire or sequence.misfire
        if self._missed(misfire, lateness):
            return self._set(
                tick,
                row,
                "skipped",
                f"missed by {lateness} ({misfire.policy}, grace {misfire.grace})",
                now,
            )
        try:
            context = await self._context(conn, tick, enrollment, row, _reads_roles(step))
            action: ActionBase | None = step.do
            if step.condition is not None and not truthy(self._compile(step.condition)(context)):
                action = step.otherwise
            fields = (
                {name: self._compile(text)(context) for name, text in action.fields.items()}
                if action is not None
                else {}
            )
        except Exception as exc:  # any failure of this step's data fails this step only
            reason = f"evaluation failed: {type(exc).__name__}: {exc}"
            await queries.group_alert(
                conn,
                group_key=f"step:{sequence.id}/{step.id}",
                kind="step_error",
                reason=f"step {step.id} of {sequence.id} failed: {reason}",
                candidate_id=enrollment["candidate_id"],
                rule_id=f"{sequence.id}/{step.id}",
                action_type=step.do.type,
                now=now,
                window_start=now - timedelta(minutes=10),
            )
            return self._set(tick, row, "failed", reason, now)
        if action is None:
            return self._set(tick, row, "skipped", "condition false, no otherwise", now)
        candidate = context.get("candidate") or {}
        queued = outbox_row(
            self.config,
            action_type=action.type,
            params=_params(action),
            fields=fields,
            rule_id=f"{sequence.id}/{step.id}",
            action_index=0,
            event_id=None,
            trigger=f"sequence:{sequence.id}",
            idempotency_key=step_key(enrollment, step.id, int(row["occurrence"])),
            ordering_key=enrollment["email"] or f"candidate:{enrollment['candidate_id']}",
            candidate_id=enrollment["candidate_id"],
            now=now,
            time_zone=candidate.get("time_zone"),
            send_window=_window(step, sequence),
            event={"source": "sequence", "id": f"{enrollment['id']}", "type": "step"},
            enrollment_id=int(enrollment["id"]),
        )
        await self.local.apply(conn, queued, context, enrollment["candidate_id"], now)
        tick.actions.append(queued)
        return self._set(
            tick, row, "fired", None, now, f"{action.type}:{queued['payload']['params']}"
        )

    @staticmethod
    def _missed(misfire: Misfire, lateness: timedelta) -> bool:
        if misfire.policy == "skip":
            return lateness > SKIP_TOLERANCE
        return lateness > parse_duration(misfire.grace)

    @staticmethod
    def _schedule_next(tick: _Tick, row: Any, step: Step) -> None:
        if step.repeat is None:
            return
        occurrence = int(row["occurrence"]) + 1
        if step.repeat.times is not None and occurrence >= step.repeat.times:
            return
        tick.next_steps.append(
            {
                "enrollment_id": row["enrollment_id"],
                "step_id": step.id,
                "occurrence": occurrence,
                "due_at": row["due_at"] + parse_duration(step.repeat.every),
                "status": "pending",
            }
        )

    async def _context(
        self, conn: AsyncConnection, tick: _Tick, enrollment: Any, row: Any, roles: bool
    ) -> dict[str, Any]:
        """The candidate's current data, as StepContext describes it (``matching_roles``
        looked up only when ``roles``: a query per step that most steps never read)."""
        context = dict(enrollment["context"])
        snapshot = tick.snapshots.get(enrollment["candidate_id"])
        if snapshot is not None:
            context["candidate"] = snapshot
        context.setdefault(
            "candidate", {"id": enrollment["candidate_id"], "email": enrollment["email"]}
        )
        if roles:
            job = (context.get("application") or {}).get("job") or {}
            # in a savepoint: a database error here fails this step alone (PostgreSQL would
            # otherwise refuse every later statement of the tick, and roll the tick back)
            async with savepoint(conn):
                context["matching_roles"] = await tick.roles(conn, job)
        context["enrollment"] = {
            "sequence": enrollment["sequence_id"],
            "key": enrollment["key"] or None,
            "started_at": enrollment["started_at"].isoformat(),
            "step": row["step_id"],
            "occurrence": int(row["occurrence"]),
        }
        return StepContext.model_validate(context).model_dump(mode="json")


@dataclass
class _Tick:
    """One batch: what it read once, and the writes it sends as one statement per kind."""

    enrollments: dict[int, Any]
    snapshots: dict[str, Any]
    step_updates: list[dict[str, Any]] = field(default_factory=list)
    next_steps: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    _roles: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    @classmethod
    async def load(cls, conn: AsyncConnection, due: list[Any]) -> _Tick:
        found = await step_queries.enrolments_by_id(
            conn, list({int(row["enrollment_id"]) for row in due})
        )
        by_id = {int(r["id"]): r for r in found}
        candidates = sorted({str(r["candidate_id"]) for r in found})
        return cls(by_id, await step_queries.snapshots_of(conn, candidates))

    async def roles(self, conn: AsyncConnection, job: dict[str, Any]) -> list[Any]:
        department = job.get("department")
        if not department:
            return []
        key = (str(department), str(job.get("id")))
        if key not in self._roles:
            self._roles[key] = await step_queries.open_roles(conn, *key)
        return self._roles[key]

    async def flush(self, conn: AsyncConnection, now: datetime) -> None:
        if self.actions:
            await queries.insert_actions(conn, self.actions)
        await step_queries.set_step_statuses(conn, self.step_updates)
        await step_queries.add_next_occurrences(conn, self.next_steps)
        await step_queries.complete_if_done(conn, list(self.touched), now)


def step_key(enrollment: Any, step_id: str, occurrence: int) -> str:
    """A step's send key (HubSpot's ``sendId``): the enrolment id makes it unique in this store,
    its start moment across stores. HubSpot answers a reused ``sendId`` 409 and we read that as
    "sent before", so a key made only of store-local ids would be silently swallowed when a
    second store (staging beside production on one portal, a reinstall, a move to PostgreSQL)
    reaches the same enrolment id."""
    started = enrollment["started_at"].astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{enrollment['id']}:{step_id}:{occurrence}:{started}"


def _reads_roles(step: Step) -> bool:
    """Whether any expression of the step names ``matching_roles`` (templates see only the
    fields the step maps, so its expressions are all that can)."""
    actions = [a for a in (step.do, step.otherwise) if a is not None]
    texts = [step.condition or "", *(t for a in actions for t in a.fields.values())]
    return any("matching_roles" in text for text in texts)


def _params(action: ActionBase) -> dict[str, Any]:
    params = getattr(action, "params", None)
    return params.model_dump(mode="json") if params is not None else {}


def _window(step: Step, sequence: Sequence) -> dict[str, Any] | None:
    window = step.send_window or sequence.send_window
    return window.model_dump(mode="json") if window is not None else None
