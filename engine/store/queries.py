"""Every read and write the engine makes, as functions over one connection.

Taking the connection as an argument lets a caller compose several of them into one
transaction (an event, its rule firings and its outbox actions commit together or not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store.tables import (
    alerts,
    application_stages,
    identity_links,
    inbox,
    outbox,
    pauses,
    poll_cursors,
    rule_firings,
    suppressions,
)

OUTBOX_DEFAULTS: dict[str, Any] = {
    "finished_at": None,
    "result": None,
    "last_error": None,
    "lease_until": None,
}
ACTIVE = ("pending", "running")
"""Statuses that hold back a person's later actions. A "deferred" action (a guardrail said
"not now": quiet hours, the frequency cap) waits for its time without blocking the rest."""
CLAIMABLE = ("pending", "deferred")


def _insert(conn: AsyncConnection, table: Any) -> Any:
    dialect = conn.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# -- inbox --------------------------------------------------------------------------------


async def insert_event(conn: AsyncConnection, row: dict[str, Any]) -> int | None:
    """Store an event; None when (source, delivery_id) is already there (a redelivery)."""
    statement = (
        _insert(conn, inbox)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["source", "delivery_id"])
        .returning(inbox.c.id)
    )
    return (await conn.execute(statement)).scalar_one_or_none()


async def event_by_delivery(conn: AsyncConnection, source: str, delivery_id: str) -> Any:
    query = select(inbox).where(inbox.c.source == source, inbox.c.delivery_id == delivery_id)
    return (await conn.execute(query)).mappings().first()


# -- application stages (Greenhouse sends only the new stage) --------------------------------


async def swap_stage(
    conn: AsyncConnection, application_id: str, stage: dict[str, Any] | None, now: datetime
) -> dict[str, Any] | None:
    """Remember the application's current stage; return the one remembered before."""
    query = select(application_stages).where(application_stages.c.application_id == application_id)
    before = (await conn.execute(query)).mappings().first()
    values = {
        "stage_id": (stage or {}).get("id"),
        "stage_name": (stage or {}).get("name"),
        "updated_at": now,
    }
    statement = _insert(conn, application_stages).values(application_id=application_id, **values)
    await conn.execute(
        statement.on_conflict_do_update(index_elements=["application_id"], set_=values)
    )
    if before is None or before["stage_name"] is None:
        return None
    return {"id": before["stage_id"], "name": before["stage_name"]}


async def remembered_stage(conn: AsyncConnection, application_id: str) -> dict[str, Any] | None:
    """The stage ``swap_stage`` last remembered for the application (None if never seen)."""
    query = select(application_stages).where(application_stages.c.application_id == application_id)
    row = (await conn.execute(query)).mappings().first()
    if row is None or row["stage_name"] is None:
        return None
    return {"id": row["stage_id"], "name": row["stage_name"]}


# -- identity links -------------------------------------------------------------------------


async def link_for_email(conn: AsyncConnection, email: str) -> Any:
    query = select(identity_links).where(identity_links.c.email == email)
    return (await conn.execute(query)).mappings().first()


async def save_link(
    conn: AsyncConnection, email: str, contact_id: str, candidate_id: str | None, now: datetime
) -> None:
    values: dict[str, Any] = {"contact_id": contact_id, "updated_at": now}
    if candidate_id is not None:
        values["candidate_id"] = candidate_id
    statement = _insert(conn, identity_links).values(email=email, **values)
    await conn.execute(statement.on_conflict_do_update(index_elements=["email"], set_=values))


# -- suppression ---------------------------------------------------------------------------


async def suppress(conn: AsyncConnection, email: str, reason: str, now: datetime) -> bool:
    """Add to the suppression list; False if already there (the first reason is kept)."""
    statement = (
        _insert(conn, suppressions)
        .values(email=email, reason=reason, created_at=now)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(suppressions.c.email)
    )
    return (await conn.execute(statement)).scalar_one_or_none() is not None


async def suppression_reason(conn: AsyncConnection, email: str) -> str | None:
    query = select(suppressions.c.reason).where(suppressions.c.email == email)
    return (await conn.execute(query)).scalar_one_or_none()


# -- rule firings and the outbox -------------------------------------------------------------


async def insert_firings(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(rule_firings.insert(), list(rows))


async def insert_actions(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Queue actions; one whose idempotency key exists already is skipped, not doubled."""
    if not rows:
        return 0
    statement = (
        _insert(conn, outbox)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(outbox.c.id)
    )
    # one multi-row statement; every row names every column (local actions add a few)
    result = await conn.execute(statement, [{**OUTBOX_DEFAULTS, **row} for row in rows])
    return len(result.all())


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: int | None
    rule_id: str
    action_type: str
    candidate_id: str | None
    trigger: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int
    ordering_key: str


async def release_expired_leases(conn: AsyncConnection, now: datetime) -> int:
    statement = (
        update(outbox)
        .where(outbox.c.status == "running", outbox.c.lease_until < now)
        .values(status="pending", lease_until=None)
    )
    return (await conn.execute(statement)).rowcount or 0


async def release_claims(conn: AsyncConnection, ids: list[int]) -> int:
    """Give back actions this process claimed but will not finish (a shutdown past its grace)."""
    statement = (
        update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.status == "running")
        .values(status="pending", lease_until=None)
    )
    return (await conn.execute(statement)).rowcount or 0


async def claim_actions(
    conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int
) -> list[Claimed]:
    """Claim due actions, at most one per ordering key: a candidate's actions run in order.

    An action is eligible when no earlier action of its ordering key is still pending or
    running, its rule is not paused and nothing is paused globally. On PostgreSQL the rows are
    locked with SKIP LOCKED so several engine processes never claim the same action.
    """
    earlier = outbox.alias("earlier")
    blocked = exists().where(
        earlier.c.ordering_key == outbox.c.ordering_key,
        earlier.c.id < outbox.c.id,
        earlier.c.status.in_(ACTIVE),
    )
    paused = exists().where(or_(pauses.c.scope == "*", pauses.c.scope == outbox.c.rule_id))
    candidates = (
        select(outbox.c.id)
        .where(
            outbox.c.status.in_(CLAIMABLE),
            outbox.c.next_attempt_at <= now,
            ~blocked,
            ~paused,
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=outbox)
    ids = list((await conn.execute(candidates)).scalars())
    if not ids:
        return []
    statement = (
        update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.status.in_(CLAIMABLE))
        .values(status="running", lease_until=lease_until)
        .returning(
            outbox.c.id,
            outbox.c.event_id,
            outbox.c.rule_id,
            outbox.c.action_type,
            outbox.c.candidate_id,
            outbox.c.trigger,
            outbox.c.payload,
            outbox.c.idempotency_key,
            outbox.c.attempts,
            outbox.c.ordering_key,
        )
    )
    rows = (await conn.execute(statement)).mappings().all()
    return sorted((Claimed(**dict(row)) for row in rows), key=lambda c: c.id)


async def finish_action(
    conn: AsyncConnection,
    action_id: int,
    *,
    status: str,
    now: datetime,
    attempts: int,
    next_attempt_at: datetime | None = None,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "attempts": attempts,
        "lease_until": None,
        "last_error": error,
    }
    if status in CLAIMABLE:
        assert next_attempt_at is not None
        values["next_attempt_at"] = next_attempt_at
    else:
        values["finished_at"] = now
        values["result"] = result
    await conn.execute(update(outbox).where(outbox.c.id == action_id).values(**values))


async def next_due_at(conn: AsyncConnection) -> datetime | None:
    query = select(func.min(outbox.c.next_attempt_at)).where(outbox.c.status.in_(CLAIMABLE))
    value: datetime | None = (await conn.execute(query)).scalar_one_or_none()
    return value


async def touches_since(
    conn: AsyncConnection, ordering_key: str, since: datetime
) -> list[datetime]:
    """When this person was sent nurture email since ``since`` (the frequency cap)."""
    query = (
        select(outbox.c.finished_at)
        .where(
            outbox.c.ordering_key == ordering_key,
            outbox.c.touch_category == "nurture",
            outbox.c.status == "done",
            outbox.c.finished_at > since,  # at exactly since + per the oldest has aged out
        )
        .order_by(outbox.c.finished_at)
    )
    return list((await conn.execute(query)).scalars())


async def status_counts(conn: AsyncConnection) -> dict[str, int]:
    query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
    return {str(row[0]): int(row[1]) for row in await conn.execute(query)}


async def outcome_counts(conn: AsyncConnection, trigger: str, since: datetime) -> tuple[int, int]:
    """(done, dead) actions of one trigger finished since ``since``: the sync error rate."""
    query = (
        select(outbox.c.status, func.count())
        .where(
            outbox.c.trigger == trigger,
            outbox.c.finished_at >= since,
            outbox.c.status.in_(("done", "dead")),
        )
        .group_by(outbox.c.status)
    )
    counts: dict[str, int] = {str(row[0]): int(row[1]) for row in await conn.execute(query)}
    return int(counts.get("done", 0)), int(counts.get("dead", 0))


async def dead_letters(conn: AsyncConnection) -> list[Any]:
    query = select(outbox).where(outbox.c.status == "dead").order_by(outbox.c.id)
    return list((await conn.execute(query)).mappings().all())


async def replay(conn: AsyncConnection, now: datetime, action_id: int | None) -> int:
    """Send dead letters (one, or all when ``action_id`` is None) back to the queue."""
    condition = outbox.c.status == "dead"
    if action_id is not None:
        condition = and_(condition, outbox.c.id == action_id)
    statement = (
        update(outbox)
        .where(condition)
        .values(status="pending", attempts=0, next_attempt_at=now, finished_at=None)
    )
    return (await conn.execute(statement)).rowcount or 0


# -- pauses ----------------------------------------------------------------------------------


async def pause(conn: AsyncConnection, scope: str, now: datetime) -> None:
    statement = _insert(conn, pauses).values(scope=scope, paused_at=now)
    await conn.execute(statement.on_conflict_do_nothing(index_elements=["scope"]))


async def resume(conn: AsyncConnection, scope: str) -> int:
    return (await conn.execute(delete(pauses).where(pauses.c.scope == scope))).rowcount or 0


async def paused_scopes(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(select(pauses.c.scope).order_by(pauses.c.scope))).scalars())


# -- audit -----------------------------------------------------------------------------------


async def audit(conn: AsyncConnection, event_id: int) -> dict[str, Any]:
    """What happened to one event: its rules, their conditions' results, its actions."""
    event = (await conn.execute(select(inbox).where(inbox.c.id == event_id))).mappings().first()
    firings = (
        (
            await conn.execute(
                select(rule_firings)
                .where(rule_firings.c.event_id == event_id)
                .order_by(rule_firings.c.id)
            )
        )
        .mappings()
        .all()
    )
    actions = (
        (
            await conn.execute(
                select(outbox).where(outbox.c.event_id == event_id).order_by(outbox.c.id)
            )
        )
        .mappings()
        .all()
    )
    return {
        "event": dict(event) if event else None,
        "firings": [dict(f) for f in firings],
        "actions": [dict(a) for a in actions],
    }


# -- alerts ----------------------------------------------------------------------------------


async def group_alert(
    conn: AsyncConnection,
    *,
    group_key: str,
    kind: str,
    reason: str,
    candidate_id: str | None,
    rule_id: str | None,
    action_type: str | None,
    now: datetime,
    window_start: datetime,
    max_samples: int = 10,
) -> int:
    """Record an alert, folding it into an open one of the same group within the window.

    The first alert of a group is due at once; the ones after it fold into a single follow-up
    that carries the count and is due when the window closes: a storm is one message, not
    hundreds.
    """
    if conn.dialect.name == "postgresql":  # concurrent failures of one group: one row, not many
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(group_key))))
    query = (
        select(alerts)
        .where(alerts.c.group_key == group_key, alerts.c.first_at >= window_start)
        .order_by(alerts.c.id.desc())
        .limit(1)
    )
    current = (await conn.execute(query)).mappings().first()
    if current is not None and current["status"] == "pending":
        samples = list(current["samples"])
        if candidate_id and candidate_id not in samples and len(samples) < max_samples:
            samples.append(candidate_id)
        await conn.execute(
            update(alerts)
            .where(alerts.c.id == current["id"])
            .values(count=current["count"] + 1, last_at=now, samples=samples)
        )
        return int(current["id"])
    due = now if current is None else current["first_at"] + (now - window_start)
    row = {
        "group_key": group_key,
        "kind": kind,
        "candidate_id": candidate_id,
        "rule_id": rule_id,
        "action_type": action_type,
        "reason": reason,
        "count": 1,
        "first_at": now,
        "last_at": now,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": due,
        "last_error": None,
        "samples": [candidate_id] if candidate_id else [],
    }
    result = await conn.execute(alerts.insert().values(**row).returning(alerts.c.id))
    return int(result.scalar_one())


async def due_alerts(conn: AsyncConnection, now: datetime, limit: int = 20) -> list[Any]:
    query = (
        select(alerts)
        .where(alerts.c.status == "pending", alerts.c.next_attempt_at <= now)
        .order_by(alerts.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings().all())


async def mark_alert(
    conn: AsyncConnection,
    alert_id: int,
    *,
    sent: bool,
    now: datetime,
    attempts: int,
    retry_at: datetime | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"attempts": attempts, "last_error": error}
    if sent:
        values["status"] = "sent"
    else:
        values["next_attempt_at"] = retry_at or now
    await conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))


async def all_alerts(conn: AsyncConnection) -> list[Any]:
    return list((await conn.execute(select(alerts).order_by(alerts.c.id))).mappings().all())


# -- poller cursors ----------------------------------------------------------------------------


async def get_cursor(conn: AsyncConnection, name: str) -> str | None:
    query = select(poll_cursors.c.value).where(poll_cursors.c.name == name)
    value: str | None = (await conn.execute(query)).scalar_one_or_none()
    return value


async def set_cursor(conn: AsyncConnection, name: str, value: str, now: datetime) -> None:
    values = {"value": value, "updated_at": now}
    statement = _insert(conn, poll_cursors).values(name=name, **values)
    await conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


async def cursors_under(conn: AsyncConnection, prefix: str) -> dict[str, str]:
    """Every cursor whose name starts with ``prefix`` (a poller's per-record memory)."""
    query = select(poll_cursors.c.name, poll_cursors.c.value).where(
        poll_cursors.c.name.startswith(prefix, autoescape=True)
    )
    return {row.name: row.value for row in await conn.execute(query)}


async def delete_cursor(conn: AsyncConnection, name: str) -> None:
    await conn.execute(delete(poll_cursors).where(poll_cursors.c.name == name))
