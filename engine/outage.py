"""Vendor outages as the outbox sees them: an unbroken run of calls failing as unavailable.

A failure (5xx, timeout, refused connection; a 429 is the vendor pacing us, not an outage)
with no success since the ``suspect``-th failure in a row, the run spanning more than one
action, is the vendor's, not the action's (one action failing alone, with nobody else calling
the vendor, is that action's problem: it spends its budget and is dead-lettered with an alert):
it does not use up the action's retry budget, and retries space out as the run lengthens
instead of hammering the vendor at a fixed rate. ``threshold`` failures in a row spanning at
least ``min_span`` declare an outage: one alert (grouped, so a long outage stays one message).
The first success ends the run and makes every action that waited on it due at once. A vendor
is keyed by action family (``crm``, ``ats``, ``notify``, ``http``). The state lives in memory:
after a restart the next run of failures counts from zero (and an alert folds into its group).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store.tables import outbox

WAITED = "the vendor is failing every call; not counted as an attempt"


def family(action_type: str) -> str:
    return action_type.split(".", 1)[0]


@dataclass
class _Streak:
    failures: int = 0
    since: datetime | None = None
    down_since: datetime | None = None  # declared: the alert went out
    last_error: str = ""
    actions: set[int] = field(default_factory=set)  # which failed, up to two: shared or alone

    @property
    def shared(self) -> bool:
        return len(self.actions) > 1


class VendorHealth:
    def __init__(
        self, suspect: int = 3, threshold: int = 10, min_span: timedelta = timedelta(seconds=20)
    ) -> None:
        self.suspect, self.threshold, self.min_span = suspect, threshold, min_span
        self._streaks: dict[str, _Streak] = {}
        self._throttled: dict[str, datetime] = {}  # vendor -> its first 429 of an unbroken run

    def failed(self, key: str, error: str, now: datetime, action: int) -> bool:
        """Note one unavailable answer to ``action``; True when it is the one that declares
        the outage."""
        streak = self._streaks.setdefault(key, _Streak())
        streak.failures += 1
        streak.since = streak.since or now
        streak.last_error = error
        if len(streak.actions) < 2:
            streak.actions.add(action)
        if streak.down_since is not None or not streak.shared:
            return False
        if streak.failures >= self.threshold and now - streak.since >= self.min_span:
            streak.down_since = now
            return True
        return False

    def succeeded(self, key: str) -> bool:
        """Note one answer; True when it ends a run of failures others waited on."""
        streak = self._streaks.pop(key, None)
        return streak is not None and streak.shared and streak.failures > self.suspect

    def throttled(self, key: str, now: datetime) -> datetime:
        """Note a 429; when the vendor's unbroken run of them began."""
        return self._throttled.setdefault(key, now)

    def unthrottled(self, key: str) -> None:
        """Any answer but a 429 ends the run."""
        self._throttled.pop(key, None)

    def failing_since(self, key: str) -> datetime | None:
        """When the current run of failures began, once it is long enough to be the vendor's."""
        streak = self._streaks.get(key)
        if streak is None or not streak.shared or streak.failures <= self.suspect:
            return None
        return streak.since

    def describe(self, key: str, now: datetime) -> str:
        streak = self._streaks[key]
        span = int((now - (streak.since or now)).total_seconds())
        return (
            f"{streak.failures} calls in a row failed over {span} s "
            f"(last: {streak.last_error[:300]})"
        )

    @staticmethod
    def spaced(delay: timedelta, since: datetime, now: datetime, cap: timedelta) -> timedelta:
        """Retries wait at least about as long as the vendor has been failing, so a backlog
        does not hammer it at a fixed rate however long the outage lasts."""
        outage = (now - since) * random.uniform(0.5, 1.5)
        return min(max(delay, outage), max(delay, cap))


async def release(conn: AsyncConnection, key: str, now: datetime) -> int:
    """The vendor answers again: every action that waited for it is due now."""
    statement = (
        update(outbox)
        .where(
            outbox.c.status == "pending",
            outbox.c.action_type.like(f"{key}.%"),
            outbox.c.last_error.like(f"%{WAITED}%"),
            outbox.c.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
    )
    return (await conn.execute(statement)).rowcount or 0
