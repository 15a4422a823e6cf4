"""Intake: an event is stored, enriched, evaluated and its actions queued in ONE transaction.

``accept`` returns only after that transaction committed, so a 2xx to a vendor always means the
event and every decision about it are durable; a redelivery of the same ``(source, id)`` is
acknowledged and changes nothing. Evaluating inside the intake transaction (rather than in a
second pass) means no accepted event can ever wait unevaluated after a crash, and it halves
the commits per event.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.clock import Clock
from engine.config.load import ConfigSet
from engine.errors import StoreError
from engine.evaluate import RuleSet
from engine.events import Event
from engine.identity import normalise_email, ordering_key
from engine.local_actions import LocalActions, outbox_row
from engine.sequences import Sequencer
from engine.steps import Fired, StepRunner
from engine.store import queries
from engine.store.prepared import savepoint
from engine.store.store import Store
from engine.webhook_handler import Accepted

log = logging.getLogger("nurture.intake")


def plain_copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): 10x ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {k: plain_copy(v) for k, v in value.items()}
    if kind is list:
        return [plain_copy(v) for v in value]
    return copy.deepcopy(value) if kind not in _SCALARS else value


_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class AlertSettings:
    group_window: timedelta = timedelta(minutes=10)
    error_rate_threshold: float = 0.02
    error_rate_window: timedelta = timedelta(days=1)


class Intake:
    """Turns canonical events into durable decisions and queued actions."""

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        clock: Clock,
        alerts: AlertSettings | None = None,
        *,
        config: ConfigSet,
        sequencer: Sequencer,
        steps: StepRunner | None = None,
        max_group: int = 64,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.alerts = alerts or AlertSettings()
        self.config = config
        self.sequencer = sequencer
        self.steps = steps  # fires Day-0 steps in the enrolling transaction; None: the tick does
        self.local = LocalActions(sequencer)
        self.max_group = max_group
        self._waiting: list[tuple[Event, str | None, asyncio.Future[Accepted]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def accept(self, event: Event, replay_key: str | None = None) -> Accepted:
        """Store, evaluate and queue one event; returns once all of it is committed.

        Events arriving together share one transaction (group commit): a single writer takes
        every event waiting at that moment, runs each in its own savepoint (one bad event
        fails alone) and commits once. Each caller still returns only after that commit.
        Steps the group's enrolments made due at once (the Day-0 welcome) fire in the same
        transaction, so the first touch is queued with the event that earned it.
        ``replay_key`` is the digest of what the sender signed, for senders whose delivery id
        is not signed: the same signed delivery under another id is then a duplicate too.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Accepted] = loop.create_future()
        self._waiting.append((event, replay_key, waiter))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_groups())
        return await waiter

    async def _write_groups(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
            results: list[tuple[asyncio.Future[Accepted], Accepted | BaseException]] = []
            due_now: list[int] = []
            try:
                async with self.store.transaction() as conn:
                    for event, replay_key, waiter in group:
                        try:
                            async with savepoint(conn):
                                accepted = await self._accept_in(conn, event, due_now, replay_key)
                                results.append((waiter, accepted))
                        except Exception as exc:  # this event fails; the others commit
                            results.append((waiter, exc))
                    fired = await self._fire_due(conn, due_now)
            except BaseException as exc:  # the commit itself failed: nobody was accepted
                for _, _, waiter in group:
                    if not waiter.done():
                        waiter.set_exception(
                            exc
                            if isinstance(exc, Exception)
                            else StoreError(f"intake interrupted: {exc!r}")
                        )
                if not isinstance(exc, Exception):
                    raise
                continue
            if self.steps is not None:
                self.steps.report(fired)
            for waiter, outcome in results:
                if waiter.done():
                    continue
                if isinstance(outcome, BaseException):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)

    async def _fire_due(self, conn: Any, due_now: list[int]) -> Fired:
        """Fire the group's Day-0 steps; if that fails, they stay pending for the tick and
        the events still commit."""
        if self.steps is None or not due_now:
            return Fired()
        try:
            async with savepoint(conn):
                return await self.steps.fire_enrolled(conn, due_now, self.clock.now())
        except Exception:
            log.exception("firing due steps at enrolment failed; the step tick will")
            return Fired()

    async def _accept_in(
        self, conn: Any, event: Event, due_now: list[int], replay_key: str | None = None
    ) -> Accepted:
        now = self.clock.now()
        data = plain_copy(event.data)
        rules = self.rules  # one config version for the whole event, even across a reload
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
                "replay_key": replay_key,
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
        await self.sequencer.observe(conn, event.type, data, subject, now)
        key = ordering_key(event, data)
        time_zone = (data.get("candidate") or {}).get("time_zone")
        rows = [
            outbox_row(
                self.config,
                action_type=a.type,
                params=a.params,
                fields=a.fields,
                rule_id=d.rule_id,
                action_index=a.index,
                event_id=event_id,
                trigger=event.type,
                idempotency_key=f"{event.source}|{event.id}|{d.rule_id}|{a.index}",
                ordering_key=key,
                candidate_id=subject,
                now=now,
                time_zone=time_zone,
                send_window=None,
                event={"source": event.source, "id": event.id, "type": event.type},
            )
            for d in decisions
            if d.matched
            for a in d.actions
        ]
        for row in rows:
            await self.local.apply(conn, row, data, subject, now, due_now)
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

    async def _enrich(self, conn: Any, event: Event, data: dict[str, Any]) -> str | None:
        """Fill what vendors leave out; returns the candidate id the event is about."""
        application = data.get("application")
        if (
            event.type == "ats.application.rejected"
            and isinstance(application, dict)
            and application.get("stage") is None
        ):
            # the vendor cannot say where it was rejected (Ashby archives into an "Archived"
            # stage): it was the stage last seen, which stays remembered
            remembered = await queries.remembered_stage(conn, str(application.get("id")))
            application["stage"] = remembered
        elif event.type.startswith("ats.application.") and isinstance(application, dict):
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
