"""Outbox workers: run queued actions through their handlers, with retries that survive restarts.

A batch is claimed under a lease (one action per person at a time, so each person's actions
run in order while different people run in parallel, up to ``concurrency``). Each outcome is
committed on its own: done, skipped (a guardrail said no), retried later (exponential backoff
with jitter, never sooner than the vendor's Retry-After) or dead-lettered (a permanent error or
the retry budget spent), which raises an alert naming the candidate, rule, action and reason.
A 429 is the vendor pacing us and failures while a vendor is down (``engine.outage``) are the
vendor's: neither uses up an action's retry budget.
A crash leaves claimed actions "running"; their lease expires and they run again, and the
idempotency key makes that second run harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.clock import Clock
from engine.errors import AdapterError
from engine.identity import IdentityLink, learning
from engine.intake import AlertSettings
from engine.log_lines import LogLine
from engine.metrics import Metrics
from engine.outage import WAITED, VendorHealth, family, release
from engine.store import queries
from engine.store.queries import Claimed
from engine.store.store import STORE_DOWN, Store

log = logging.getLogger("nurture.outbox")
# Actions in flight at once. Each waits mostly on its vendor, and the loop is shared with
# intake: with 32, a slot's claim-call-record cycle queued behind intake long enough that
# the outbox fell behind the events accepted (bench_pipeline: accepted 2,150/s, completed
# 1,650/s, end-to-end p99 500 ms); with 64 the two keep pace (1,810/s, p99 39 ms).
CONCURRENCY = 64


class ActionSkipped(Exception):
    """A guardrail decided the action must not run (e.g. the address is suppressed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ActionDeferred(Exception):
    """A guardrail says "not now": run again at ``until``; this is not a failed attempt."""

    def __init__(self, until: datetime, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


class ActionFailed(Exception):
    """A permanent failure found by the engine itself (bad data, no handler)."""


Handler = Callable[[Claimed], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 10
    # the longest Retry-After honoured: HubSpot's daily limit resets within a day, and a
    # vendor's absurd value (years) must not park an action for ever or overflow the date
    max_retry_after: timedelta = timedelta(days=1)

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> timedelta:
        """Exponential backoff with full jitter in [50%, 150%], at least ``retry_after``
        (itself at most ``max_retry_after``)."""
        exponential = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** (attempts - 1))
        seconds = exponential * rng.uniform(0.5, 1.5)
        if retry_after is not None:
            seconds = max(seconds, min(retry_after, self.max_retry_after.total_seconds()))
        return timedelta(seconds=seconds)


@dataclass(frozen=True)
class _Write:
    job: Claimed
    status: str  # done skipped deferred pending dead
    attempts: int
    error: str | None = None
    result: dict[str, Any] | None = None
    next_attempt_at: datetime | None = None
    outage: str | None = None  # this failure declared the vendor down: the alert's reason
    recovered: bool = False  # this answer ended the vendor's outage
    links: tuple[IdentityLink, ...] = ()  # learned on the way, whatever the outcome


_OUTCOME_LEVEL = {"dead": logging.ERROR, "pending": logging.WARNING}


def _log_outcome(write: _Write) -> None:
    """A line per recorded outcome, carrying its event's stored id (``event``) like the
    intake's lines; a sequence step's action has no event, and its ``key`` begins with the
    enrolment's id, as the ``step_fired`` line that queued it says."""
    level = _OUTCOME_LEVEL.get(write.status, logging.INFO)
    if not log.isEnabledFor(level):
        return
    job = write.job
    line = LogLine(
        decision=f"action_{'retry' if write.status == 'pending' else write.status}",
        event=job.event_id,
        action_id=job.id,
        rule=job.rule_id,
        action=job.action_type,
        key=job.idempotency_key,
        attempt=write.attempts,
    )
    if write.error is not None:
        line["error"] = write.error
    log.log(level, line)


@dataclass(frozen=True)
class Outcome:
    action_id: int
    status: str  # done skipped pending dead
    error: str | None = None


class Dispatcher:
    """Claims due actions and runs them."""

    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Handler],
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        alerts: AlertSettings | None = None,
        concurrency: int = CONCURRENCY,
        lease: timedelta = timedelta(minutes=2),
        rng: random.Random | None = None,
        health: VendorHealth | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.metrics.declare("nurture_actions_total", "counter", "recorded action outcomes")
        self.handlers = handlers
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.alerts = alerts or AlertSettings()
        self.concurrency = concurrency
        self.lease = lease
        self.rng = rng or random.Random()
        self.health = health or VendorHealth()
        self.in_flight: set[int] = set()  # claimed by this process, outcome not yet recorded
        self._unanswered: list[datetime] = []  # leases of claims whose commit never answered

    async def claim(self, limit: int, *, sweep: bool = True) -> tuple[list[Claimed], datetime]:
        """Claim up to ``limit`` due actions under a lease; returns them and the lease's end.

        A claim whose transaction fails may still have committed (PostgreSQL ran the COMMIT
        and the connection broke before its answer came back): those actions would sit
        "running", holding back each person's later actions, until the lease ran out. Each
        failed claim's lease end is kept, and the next claim that commits first hands back
        whatever is still running under it and was not started here.
        """
        now = self.clock.now()
        lease_until = now + self.lease
        try:
            async with self.store.transaction() as conn:
                if self._unanswered:
                    await queries.release_unanswered_claims(
                        conn, self._unanswered, sorted(self.in_flight)
                    )
                if sweep:
                    await queries.release_expired_leases(conn, now)
                claimed = await queries.claim_actions(conn, now, lease_until, limit)
        except BaseException:  # an expired lease is the sweep's: keep only the live ones
            self._unanswered = [*(u for u in self._unanswered if u > now), lease_until]
            raise
        self._unanswered.clear()
        self.in_flight.update(job.id for job in claimed)
        return claimed, lease_until

    async def run_once(self, limit: int = 64) -> list[Outcome]:
        """Claim one batch and run it to completion; returns what happened to each action."""
        claimed, lease_until = await self.claim(limit)
        if not claimed:
            return []
        gate = asyncio.Semaphore(self.concurrency)

        async def run(job: Claimed) -> _Write:
            async with gate:
                return await self._run(job)

        writes = list(await asyncio.gather(*(run(job) for job in claimed)))
        outcomes = await self._record_within_lease(writes, lease_until)
        self.in_flight.difference_update(job.id for job in claimed)
        return outcomes

    async def _record_within_lease(
        self, writes: list[_Write], lease_until: datetime
    ) -> list[Outcome]:
        """Record the batch; while the store is unreachable, keep trying as long as our lease
        holds. The outcomes are facts (the vendor calls happened); giving up would leave the
        batch claimed until the lease expires and then run it all again."""
        pause = 0.25
        while True:
            try:
                return await self._record(writes)
            except STORE_DOWN as exc:
                if self.clock.now() + timedelta(seconds=pause) >= lease_until:
                    raise
                log.warning(
                    json.dumps(
                        {"decision": "record_retry", "error": f"{type(exc).__name__}: {exc}"}
                    )
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def release_in_flight(self) -> int:
        """Hand back what this process claimed and will not finish (it was cancelled), so a
        restart runs it at once instead of after the lease. A handler cut off mid-call may
        have reached the vendor already; the idempotency key makes the second run harmless."""
        ids = sorted(self.in_flight)
        self.in_flight.clear()
        if not ids:
            return 0
        async with self.store.transaction() as conn:
            return await queries.release_claims(conn, ids)

    async def run_until_idle(self, max_batches: int = 10_000) -> list[Outcome]:
        """Run batches until nothing is due now (tests and the one-shot runner use this)."""
        outcomes: list[Outcome] = []
        for _ in range(max_batches):
            batch = await self.run_once()
            if not batch:
                break
            outcomes.extend(batch)
        return outcomes

    async def run_forever(
        self, stop: asyncio.Event, wake: asyncio.Event, idle: float = 0.5
    ) -> None:
        """The worker loop ``nurture run`` and ``nurture ingest`` use: ``outbox_stream.Stream``
        on this dispatcher (claims as slots free up, records outcomes as they arrive)."""
        from engine.outbox_stream import Stream  # it builds on this module

        await Stream(lambda: self, idle).run(stop, wake)

    async def _run(self, job: Claimed) -> _Write:
        """Run one action; returns the outcome to record (recorded for the whole batch), with
        the identity links it learned on the way, stored in that same transaction."""
        with learning() as learned:
            write = await self._attempt(job)
        return replace(write, links=tuple(learned)) if learned else write

    async def _attempt(self, job: Claimed) -> _Write:
        handler = self.handlers.get(job.action_type)
        error: str
        retry_after: float | None = None
        permanent = unavailable = False
        vendor = family(job.action_type)
        try:
            if handler is None:
                raise ActionFailed(f"no handler for action type {job.action_type!r} in this build")
            result = await handler(job)
        except ActionSkipped as skipped:
            return _Write(job, "skipped", job.attempts + 1, error=skipped.reason)
        except ActionDeferred as deferred:  # not an attempt: the guardrail said "later"
            return _Write(
                job,
                "deferred",
                job.attempts,
                error=f"deferred: {deferred.reason}",
                next_attempt_at=deferred.until,
            )
        except ActionFailed as failed:
            error, permanent = str(failed), True
        except AdapterError as exc:
            error, permanent, retry_after = str(exc), not exc.retryable, exc.retry_after
            if exc.correlation_id:
                error += f" (correlation id {exc.correlation_id})"
            # 5xx, timeouts, refused connections; a 429 or a 4xx is an answer: the vendor is up
            unavailable = exc.retryable and exc.status not in (409, 429)
            recovered = not unavailable and self.health.succeeded(vendor)
            if exc.status == 429:  # the vendor pacing us, not a failure: wait as told
                return self._paced(job, error, retry_after, vendor, recovered)
            self.health.unthrottled(vendor)
            if recovered:
                return self._retry_later(
                    job, error, retry_after, permanent=permanent, recovered=True
                )
        except STORE_DOWN as exc:  # our own store, mid-handler: not the action's fault
            return _Write(
                job,
                "pending",
                job.attempts,
                error=f"store unreachable, not counted as an attempt: {type(exc).__name__}: {exc}",
                next_attempt_at=self.clock.now()
                + self.retry.delay(max(job.attempts, 1), None, self.rng),
            )
        except Exception as exc:  # a bug in a handler: surface it, never loop on it
            error, permanent = f"{type(exc).__name__}: {exc}", True
        else:
            recovered = self.health.succeeded(vendor)
            self.health.unthrottled(vendor)
            return _Write(job, "done", job.attempts + 1, result=result, recovered=recovered)
        now = self.clock.now()
        began = unavailable and self.health.failed(vendor, error, now, job.id)
        failing_since = self.health.failing_since(vendor) if unavailable else None
        if failing_since is not None:  # the vendor's failure, not the action's: budget kept
            delay = VendorHealth.spaced(
                self.retry.delay(job.attempts + 1, retry_after, self.rng),
                failing_since,
                now,
                self.retry.cap,
            )
            return _Write(
                job,
                "pending",
                job.attempts,
                error=f"{error} ({WAITED})",
                next_attempt_at=now + delay,
                outage=self.health.describe(vendor, now) if began else None,
            )
        return self._retry_later(job, error, retry_after, permanent=permanent)

    def _paced(
        self, job: Claimed, error: str, retry_after: float | None, vendor: str, recovered: bool
    ) -> _Write:
        """A 429: the wait it asks for, or, told nothing (a daily limit, say), about as long as
        the vendor has been refusing, not 1-3 s again all day. Not an attempt."""
        now = self.clock.now()
        since = self.health.throttled(vendor, now)
        delay = self.retry.delay(max(job.attempts, 1), retry_after, self.rng)
        if retry_after is None:
            delay = VendorHealth.spaced(delay, since, now, self.retry.cap)
        return _Write(
            job,
            "pending",
            job.attempts,
            error=f"{error} (rate limited; not counted as an attempt)",
            next_attempt_at=now + delay,
            recovered=recovered,
        )

    def _retry_later(
        self,
        job: Claimed,
        error: str,
        retry_after: float | None,
        *,
        permanent: bool = False,
        recovered: bool = False,
    ) -> _Write:
        attempts = job.attempts + 1
        if permanent or attempts >= self.retry.max_attempts:
            if not permanent:
                error = f"retry budget spent after {attempts} attempts: {error}"
            return _Write(job, "dead", attempts, error=error, recovered=recovered)
        due = self.clock.now() + self.retry.delay(attempts, retry_after, self.rng)
        return _Write(
            job, "pending", attempts, error=error, next_attempt_at=due, recovered=recovered
        )

    async def _record(self, writes: list[_Write]) -> list[Outcome]:
        """One transaction for a batch's outcomes (a crash before it re-runs the batch, which
        the idempotency keys make harmless); dead letters raise their alerts in it too."""
        now = self.clock.now()
        async with self.store.transaction() as conn:
            for write in writes:
                for link in write.links:
                    await queries.save_link(
                        conn, link.email, link.contact_id, link.candidate_id, now
                    )
                await queries.finish_action(
                    conn,
                    write.job.id,
                    status=write.status,
                    now=now,
                    attempts=write.attempts,
                    next_attempt_at=write.next_attempt_at,
                    error=write.error,
                    result=write.result,
                )
                if write.status == "dead":
                    await self._alert_dead(conn, write.job, write.error or "failed", now)
                if write.outage is not None:
                    await self._alert_outage(conn, write.job, write.outage, now)
            for vendor in sorted({family(w.job.action_type) for w in writes if w.recovered}):
                released = await release(conn, vendor, now)
                log.info(json.dumps({"decision": "vendor_back", "family": vendor, "due": released}))
        for write in writes:  # committed: "pending" is a retry, "dead" a dead letter
            self.metrics.inc(
                "nurture_actions_total", type=write.job.action_type, outcome=write.status
            )
            _log_outcome(write)
        return [Outcome(w.job.id, w.status, w.error) for w in writes]

    async def _alert_outage(self, conn: Any, job: Claimed, description: str, now: Any) -> None:
        vendor = family(job.action_type)
        log.warning(json.dumps({"decision": "vendor_down", "family": vendor}))
        await queries.group_alert(
            conn,
            group_key=f"outage:{vendor}",
            kind="vendor_outage",
            reason=f"the {vendor} vendor looks down: {description}. Its actions wait, keep "
            "their retry budget and run as soon as it answers again; nothing is dropped",
            candidate_id=None,
            rule_id=None,
            action_type=None,
            now=now,
            window_start=now - self.alerts.group_window,
        )

    async def _alert_dead(self, conn: Any, job: Claimed, error: str, now: Any) -> None:
        window = now - self.alerts.group_window
        await queries.group_alert(
            conn,
            group_key=f"dead:{job.rule_id}:{job.action_type}",
            kind="dead_letter",
            reason=f"{job.action_type} for rule {job.rule_id} failed: {error}",
            candidate_id=job.candidate_id,
            rule_id=job.rule_id,
            action_type=job.action_type,
            now=now,
            window_start=window,
        )
        since = now - self.alerts.error_rate_window
        done, dead = await queries.outcome_counts(conn, job.trigger, since)
        if dead / (done + dead) > self.alerts.error_rate_threshold:
            day = since.strftime("%Y-%m-%d")
            await queries.group_alert(
                conn,
                group_key=f"error-rate:{job.trigger}:{day}",
                kind="error_rate",
                reason=f"sync error rate for {job.trigger} is {dead / (done + dead):.1%} "
                f"({dead} of {done + dead} actions failed in the last "
                f"{self.alerts.error_rate_window}), above "
                f"{self.alerts.error_rate_threshold:.0%}",
                candidate_id=job.candidate_id,
                rule_id=None,
                action_type=None,
                now=now,
                window_start=since,
            )
