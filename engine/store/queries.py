"""Every read and write the engine makes, as functions over one connection.

Taking the connection as an argument lets a caller compose several of them into one
transaction (an event, its rule firings and its outbox actions commit together or not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store.prepared import Prepared, any_of, exactly_once, raw_sqlite
from engine.store.tables import (
    ACTIVE,
    CLAIMABLE,
    TOUCH_SQL,
    alerts,
    application_stages,
    candidate_snapshots,
    enrollment_steps,
    enrollments,
    identity_links,
    inbox,
    jobs,
    outbox,
    pauses,
    poll_cursors,
    rule_firings,
    suppressions,
)

if TYPE_CHECKING:
    from engine.store.store import Store

OUTBOX_DEFAULTS: dict[str, Any] = {
    "finished_at": None,
    "result": None,
    "last_error": None,
    "lease_until": None,
}


def _insert(conn: AsyncConnection, table: Any) -> Any:
    return insert_for(conn.dialect.name, table)


def insert_for(dialect: str, table: Any) -> Any:
    """The dialect's own INSERT, which has ON CONFLICT (built once per ``Prepared``)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# The statements every event or action runs, built once (see engine.store.prepared).
_INBOX_COLUMNS = [c.name for c in inbox.columns if c.name != "id"]
_INSERT_EVENT = Prepared(
    lambda d: (
        # either key taken (the delivery id, or what was signed) is a redelivery or a replay
        insert_for(d, inbox).on_conflict_do_nothing().returning(inbox.c.id)
    ),
    _INBOX_COLUMNS,
)
_STAGE_OF = Prepared(
    lambda d: select(application_stages.c.stage_id, application_stages.c.stage_name).where(
        application_stages.c.application_id == bindparam("application_id")
    )
)
_STAGE_VALUES = ["application_id", "stage_id", "stage_name", "updated_at"]
_SAVE_STAGE = Prepared(
    lambda d: (statement := insert_for(d, application_stages)).on_conflict_do_update(
        index_elements=["application_id"],
        set_={k: statement.excluded[k] for k in _STAGE_VALUES[1:]},
    ),
    _STAGE_VALUES,
)
_LINK_FOR_EMAIL = Prepared(
    lambda d: select(identity_links).where(identity_links.c.email == bindparam("email"))
)
_CONTACT_FOR_EMAIL = Prepared(
    lambda d: select(identity_links.c.contact_id).where(
        identity_links.c.email == bindparam("email")
    )
)
_SUPPRESSION_REASON = Prepared(
    lambda d: select(suppressions.c.reason).where(suppressions.c.email == bindparam("email"))
)
_FIRING_COLUMNS = [c.name for c in rule_firings.columns if c.name != "id"]
_INSERT_FIRING = Prepared(lambda d: rule_firings.insert(), _FIRING_COLUMNS)
_OUTBOX_COLUMNS = [c.name for c in outbox.columns if c.name != "id"]
_INSERT_ACTION = Prepared(
    lambda d: (
        insert_for(d, outbox)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(outbox.c.id)
    ),
    _OUTBOX_COLUMNS,
)
_RETRY_LATER = ["status", "attempts", "lease_until", "last_error", "next_attempt_at"]
_FINISHED = ["status", "attempts", "lease_until", "last_error", "finished_at", "result"]


def _upsert(table: Any, key: str) -> Prepared:
    """INSERT ... ON CONFLICT (key) DO UPDATE every other column."""
    columns = [c.name for c in table.columns]

    def build(dialect: str) -> Any:
        statement = insert_for(dialect, table)
        return statement.on_conflict_do_update(
            index_elements=[key], set_={c: statement.excluded[c] for c in columns if c != key}
        )

    return Prepared(build, columns)


def _save_link(columns: list[str]) -> Prepared:
    def build(dialect: str) -> Any:
        statement = insert_for(dialect, identity_links)
        return statement.on_conflict_do_update(
            index_elements=["email"],
            set_={c: statement.excluded[c] for c in columns if c != "email"},
        )

    return Prepared(build, columns)


_SAVE_LINK = _save_link(["email", "contact_id", "candidate_id", "updated_at"])
_SAVE_LINK_KEEPING_CANDIDATE = _save_link(["email", "contact_id", "updated_at"])
_SAVE_SNAPSHOT = _upsert(candidate_snapshots, "candidate_id")
_SAVE_JOB = _upsert(jobs, "job_id")
_JOB_OF = Prepared(
    lambda d: select(jobs.c.job, jobs.c.status, jobs.c.department, jobs.c.updated_at).where(
        jobs.c.job_id == bindparam("job_id")
    )
)


def _active_by(column: Any) -> Prepared:
    return Prepared(
        lambda d: select(enrollments).where(
            column == bindparam("who"), enrollments.c.status == "active"
        )
    )


_ACTIVE_OF_CANDIDATE = _active_by(enrollments.c.candidate_id)
_ACTIVE_OF_EMAIL = _active_by(enrollments.c.email)


# What an enrolment decision reads, in one statement: the candidate's active enrolments (one
# of them may be this sequence and key; any exclusive one blocks a nurture sequence) and every
# earlier enrolment in this sequence and key (``reenroll: never``)
_ENROLMENTS_FOR_DECISION = Prepared(
    lambda d: select(enrollments).where(
        enrollments.c.candidate_id == bindparam("candidate_id"),
        or_(
            enrollments.c.status == "active",
            and_(
                enrollments.c.sequence_id == bindparam("sequence_id"),
                enrollments.c.key == bindparam("key"),
            ),
        ),
    )
)
_ENROLMENT_COLUMNS = [
    "sequence_id", "candidate_id", "key", "email", "category", "exclusive", "status", "reason",
    "context", "started_at",
]  # fmt: skip
_INSERT_ENROLMENT = Prepared(
    lambda d: enrollments.insert().returning(enrollments.c.id), _ENROLMENT_COLUMNS
)
STEP_COLUMNS = ["enrollment_id", "step_id", "occurrence", "due_at", "status"]
_INSERT_STEP = Prepared(lambda d: enrollment_steps.insert(), STEP_COLUMNS)


_END_ENROLMENT = Prepared(
    lambda d: (
        update(enrollments)
        .where(enrollments.c.id == bindparam("enrolment"))
        .values(
            status=bindparam("end_status"),
            reason=bindparam("end_reason"),
            ended_at=bindparam("ended_now"),
        )
    )
)
_CANCEL_STEPS_OF = Prepared(
    lambda d: (
        update(enrollment_steps)
        .where(
            enrollment_steps.c.enrollment_id == bindparam("enrolment"),
            enrollment_steps.c.status == "pending",
        )
        .values(status="cancelled", reason=bindparam("end_reason"))
    )
)


def _skip_queued(*where: Any) -> Prepared:
    """Skip an enrolment's actions still queued (pending or deferred), with a note."""
    return Prepared(
        lambda d: (
            update(outbox)
            .where(
                outbox.c.enrollment_id == bindparam("enrolment"),
                _status_in(outbox, ("pending", "deferred")),
                *where,
            )
            .values(
                status="skipped",
                last_error=bindparam("skip_note"),
                finished_at=bindparam("ended_now"),
            )
        )
    )


_SKIP_ACTIONS_OF = _skip_queued()
_SKIP_STEP_ACTIONS_OF = _skip_queued(outbox.c.rule_id == bindparam("step_rule"))
_SET_CONTEXT = Prepared(
    lambda d: (
        update(enrollments)
        .where(enrollments.c.id == bindparam("enrolment"))
        .values(context=bindparam("new_context", type_=enrollments.c.context.type))
    )
)


def _finish(names: list[str]) -> Prepared:
    return Prepared(
        lambda d: (
            update(outbox)
            .where(outbox.c.id == bindparam("action_id"))
            .values({n: bindparam(n) for n in names})
        )
    )


_FINISH_ACTION = {True: _finish(_RETRY_LATER), False: _finish(_FINISHED)}


# -- inbox --------------------------------------------------------------------------------


async def insert_event(conn: AsyncConnection, row: dict[str, Any]) -> int | None:
    """Store an event; None when (source, delivery_id) is already there (a redelivery), or
    (source, replay_key): the same signed delivery under another, unsigned, id (a replay)."""
    values = {"config_digest": None, "subject": None, "replay_key": None, **row}
    rows = await _INSERT_EVENT.rows(conn, values)
    return int(rows[0][0]) if rows else None


async def event_by_delivery(conn: AsyncConnection, source: str, delivery_id: str) -> Any:
    query = select(inbox).where(inbox.c.source == source, inbox.c.delivery_id == delivery_id)
    return (await conn.execute(query)).mappings().first()


# -- application stages (Greenhouse sends only the new stage) --------------------------------


async def swap_stage(
    conn: AsyncConnection, application_id: str, stage: dict[str, Any] | None, now: datetime
) -> dict[str, Any] | None:
    """Remember the application's current stage; return the one remembered before."""
    before = await _STAGE_OF.rows(conn, {"application_id": application_id})
    stage_id = (stage or {}).get("id")
    await _SAVE_STAGE.run(
        conn,
        {
            "application_id": application_id,
            "stage_id": None if stage_id is None else str(stage_id),
            "stage_name": (stage or {}).get("name"),
            "updated_at": now,
        },
    )
    if not before or before[0][1] is None:
        return None
    return {"id": before[0][0], "name": before[0][1]}


async def save_snapshot(
    conn: AsyncConnection, candidate_id: str, candidate: dict[str, Any], now: datetime
) -> None:
    """The candidate as last seen (sequence steps render from it)."""
    values = {"candidate_id": candidate_id, "candidate": candidate, "updated_at": now}
    await _SAVE_SNAPSHOT.run(conn, values)


JOB_REFRESH = timedelta(hours=1)


async def save_job(conn: AsyncConnection, job: dict[str, Any], now: datetime) -> None:
    """The job as last seen (Sequence B's Day 60 looks for a matching open role).

    Every event names its job, and a handful of jobs are in every event: rewriting the row
    each time made two processes' intake transactions wait for (and deadlock on) each other's
    row locks. So an unchanged job is only read, and rewritten at most every ``JOB_REFRESH``
    to keep ``updated_at`` a useful "recently seen"."""
    values = {
        "job_id": str(job["id"]),
        "job": job,
        "status": job.get("status"),
        "department": job.get("department"),
        "updated_at": now,
    }
    stored = await _JOB_OF.rows(conn, {"job_id": values["job_id"]})
    if stored:
        old_job, status, department, updated_at = stored[0]
        unchanged = (old_job, status, department) == (job, values["status"], values["department"])
        if unchanged and now - updated_at < JOB_REFRESH:
            return
    await _SAVE_JOB.run(conn, values)


async def active_enrollments(
    conn: AsyncConnection, candidate_id: str | None, email: str | None
) -> list[dict[str, Any]]:
    """Active enrolments of this candidate, or of this address when no candidate is known."""
    if candidate_id is not None:
        return await _ACTIVE_OF_CANDIDATE.mappings(conn, {"who": candidate_id})
    if email is not None:
        return await _ACTIVE_OF_EMAIL.mappings(conn, {"who": email})
    return []


@dataclass(frozen=True)
class EnrolmentState:
    """What ``enroll`` decides on for one candidate, sequence and key."""

    active: dict[str, Any] | None  # the active enrolment in this sequence and key
    enrolled_before: bool  # in this sequence and key, ever
    exclusive: list[dict[str, Any]]  # active enrolments in exclusive (nurture) sequences
    completed: dict[str, Any] | None  # the latest that completed, in this sequence and key


async def enrolment_state(
    conn: AsyncConnection, sequence_id: str, candidate_id: str, key: str
) -> EnrolmentState:
    values = {"sequence_id": sequence_id, "candidate_id": candidate_id, "key": key}
    rows = await _ENROLMENTS_FOR_DECISION.mappings(conn, values)
    same = [r for r in rows if r["sequence_id"] == sequence_id and r["key"] == key]
    active = next((r for r in same if r["status"] == "active"), None)
    exclusive = [r for r in rows if r["status"] == "active" and r["exclusive"]]
    completed = max(
        (r for r in same if r["status"] == "completed"), key=lambda r: r["id"], default=None
    )
    return EnrolmentState(active, bool(same), exclusive, completed)


async def insert_enrollment(
    conn: AsyncConnection, row: dict[str, Any], steps: Sequence[dict[str, Any]]
) -> int:
    """An enrolment and its pending steps; returns the enrolment's id."""
    enrollment_id = int((await _INSERT_ENROLMENT.rows(conn, row))[0][0])
    await _INSERT_STEP.run_many(conn, [{**step, "enrollment_id": enrollment_id} for step in steps])
    return enrollment_id


async def end_enrollment(
    conn: AsyncConnection, enrollment_id: int, status: str, reason: str, now: datetime
) -> None:
    """End one enrolment: its pending steps are cancelled, and so is a fired step's email
    that a guardrail still holds (pending or deferred in the outbox)."""
    # parameter names differ from the columns they set: SQLAlchemy reserves those
    values = {"enrolment": enrollment_id, "end_reason": reason, "ended_now": now}
    await _END_ENROLMENT.run(conn, {**values, "end_status": status})
    await _CANCEL_STEPS_OF.run(conn, values)
    await _SKIP_ACTIONS_OF.run(conn, {**values, "skip_note": f"enrolment ended: {reason}"})


async def skip_queued_step(
    conn: AsyncConnection, enrollment_id: int, step_rule: str, note: str, now: datetime
) -> None:
    """Skip what one step of an enrolment still has queued (``step_rule``: sequence/step)."""
    values = {"enrolment": enrollment_id, "step_rule": step_rule, "skip_note": note}
    await _SKIP_STEP_ACTIONS_OF.run(conn, {**values, "ended_now": now})


async def set_enrollment_context(
    conn: AsyncConnection, enrollment_id: int, context: dict[str, Any]
) -> None:
    await _SET_CONTEXT.run(conn, {"enrolment": enrollment_id, "new_context": context})


async def remembered_stage(conn: AsyncConnection, application_id: str) -> dict[str, Any] | None:
    """The stage ``swap_stage`` last remembered for the application (None if never seen)."""
    query = select(application_stages).where(application_stages.c.application_id == application_id)
    row = (await conn.execute(query)).mappings().first()
    if row is None or row["stage_name"] is None:
        return None
    return {"id": row["stage_id"], "name": row["stage_name"]}


# -- identity links -------------------------------------------------------------------------


async def link_for_email(conn: AsyncConnection, email: str) -> Any:
    found = await _LINK_FOR_EMAIL.mappings(conn, {"email": email})
    return found[0] if found else None


async def save_link(
    conn: AsyncConnection, email: str, contact_id: str, candidate_id: str | None, now: datetime
) -> None:
    values = {"email": email, "contact_id": contact_id, "updated_at": now}
    if candidate_id is None:  # keep the candidate a link already names
        await _SAVE_LINK_KEEPING_CANDIDATE.run(conn, values)
    else:
        await _SAVE_LINK.run(conn, {**values, "candidate_id": candidate_id})


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


async def suppression_reason_now(store: Store, email: str) -> str | None:
    """``suppression_reason`` outside a transaction, as cheaply as the backend allows."""
    raw = store.reader()
    if raw is not None:
        found = _SUPPRESSION_REASON.rows_on(raw, store.engine.dialect, {"email": email})
        return str(found[0][0]) if found else None
    async with store.read() as conn:
        return await suppression_reason(conn, email)


async def contact_id_now(store: Store, email: str) -> str | None:
    """The CRM contact id our identity link remembers for this address, if any."""
    raw = store.reader()
    if raw is not None:
        found = _CONTACT_FOR_EMAIL.rows_on(raw, store.engine.dialect, {"email": email})
    else:
        async with store.read() as conn:
            found = await _CONTACT_FOR_EMAIL.rows(conn, {"email": email})
    return str(found[0][0]) if found else None


async def suppression_reason(conn: AsyncConnection, email: str) -> str | None:
    found = await _SUPPRESSION_REASON.rows(conn, {"email": email})
    return str(found[0][0]) if found else None


# -- rule firings and the outbox -------------------------------------------------------------


async def insert_firings(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await _INSERT_FIRING.run_many(conn, [{"error": None, **row} for row in rows])


async def insert_actions(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Queue actions; one whose idempotency key exists already is skipped, not doubled."""
    if not rows:
        return 0
    if raw_sqlite(conn) is not None:  # one prepared statement per row: microseconds each
        queued = 0
        for row in rows:
            queued += len(await _INSERT_ACTION.rows(conn, {**OUTBOX_DEFAULTS, **row}))
        return queued
    statement = _INSERT_ACTION.statement(conn.dialect.name)
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


async def release_unanswered_claims(
    conn: AsyncConnection, leases: list[datetime], started: list[int]
) -> int:
    """Give back actions still running under these leases (claims whose commit never
    answered), except those this process ``started``: nobody runs them until the lease ends."""
    statement = (
        update(outbox)
        .where(
            outbox.c.status == "running",
            outbox.c.lease_until.in_(leases),
            outbox.c.id.not_in(started),
        )
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


def _status_in(table: Any, statuses: tuple[str, ...]) -> Any:
    """``status IN (...)`` as plain comparisons: ``in_()`` renders an expanding parameter,
    which a statement compiled once (``Prepared``) cannot carry."""
    return or_(*(table.c.status == status for status in statuses))


def _claimable(table: Any) -> Any:
    return _status_in(table, CLAIMABLE)


def _status_literally(table: Any, statuses: tuple[str, ...]) -> Any:
    """``status IN (...)`` as literal terms, the predicate of a partial index: a database uses
    one only where it can see that the query implies it, which bound values hide from it."""
    return or_(*(table.c.status == literal_column(f"'{status}'") for status in statuses))


def _waiting_after() -> tuple[Any, ...]:
    """Claimable, due, and after id ``after``: what both claim statements walk."""
    return (
        _status_literally(outbox, CLAIMABLE),
        outbox.c.next_attempt_at <= bindparam("now"),
        outbox.c.id > bindparam("after"),
    )


def _claimable_ids(dialect: str) -> Any:
    earlier = outbox.alias("earlier")
    blocked = exists().where(
        earlier.c.ordering_key == outbox.c.ordering_key,
        earlier.c.id < outbox.c.id,
        _status_literally(earlier, ACTIVE),
    )
    paused = exists().where(or_(pauses.c.scope == "*", pauses.c.scope == outbox.c.rule_id))
    candidates = (
        select(outbox.c.id)
        .where(*_waiting_after(), outbox.c.id <= bindparam("upto"), ~blocked, ~paused)
        .order_by(outbox.c.id)
        .limit(bindparam("limit", type_=Integer))
    )
    if dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=outbox)
    return candidates


def _window_end(dialect: str) -> Any:
    """How many of the next ``window`` claimable, due actions after ``after`` there are, and
    the id of the last: an ordered walk of ``ix_outbox_claimable`` that stops at ``window``."""
    window = (
        select(outbox.c.id)
        .where(*_waiting_after())
        .order_by(outbox.c.id)
        .limit(bindparam("window", type_=Integer))
        .subquery()
    )
    return select(func.count(), func.max(window.c.id)).select_from(window)


def _claimable_index(sql: str) -> str:
    return exactly_once(
        sql, "FROM outbox \nWHERE", "FROM outbox INDEXED BY ix_outbox_claimable \nWHERE"
    )


# A claim walks the waiting actions in id order (``ix_outbox_claimable``) and stops at its
# limit, each action's "is an earlier one of this person still open?" one probe of
# ``ix_outbox_active_order``: it costs the same with 50,000 actions waiting as with 50. Asked
# for all of them at once, both databases read and sorted every due action first: 70 ms per
# claim on SQLite at 50,000, and on PostgreSQL 35-45 s before its statistics caught up
# (110-300 ms after). SQLite's planner, without statistics, picks the wider indexes, so
# ``INDEXED BY`` names these; PostgreSQL's keeps its sort unless the id range is bounded, so
# there the walk goes a window of ``CLAIM_WINDOW`` at a time.
CLAIM_WINDOW = 512
_CLAIMED_COLUMNS = [outbox.c[f.name] for f in fields(Claimed)]
_WINDOW_END = Prepared(_window_end, sqlite_sql=_claimable_index)
_CLAIMABLE_IDS = Prepared(
    _claimable_ids,
    sqlite_sql=lambda sql: exactly_once(
        _claimable_index(sql),
        "FROM outbox AS earlier \n",
        "FROM outbox AS earlier INDEXED BY ix_outbox_active_order \n",
    ),
)
_GLOBAL_PAUSE = Prepared(lambda d: select(pauses.c.scope).where(pauses.c.scope == "*"))
# The ids as one list parameter (``any_of``): one statement per claim, whatever its size. On
# SQLite, NOT INDEXED keeps the planner from walking ``ix_outbox_due`` for the statuses (every
# waiting action) instead of looking the few ids up by rowid.
_CLAIM_MANY = Prepared(
    lambda d: (
        update(outbox)
        .where(any_of(outbox.c.id, "ids", d), _claimable(outbox))
        .values(status="running", lease_until=bindparam("lease_until"))
        .returning(*_CLAIMED_COLUMNS)
    ),
    sqlite_sql=lambda sql: exactly_once(sql, "UPDATE outbox SET", "UPDATE outbox NOT INDEXED SET"),
)


_NO_UPPER_BOUND = 2**62


async def _claimable_in_windows(conn: AsyncConnection, now: datetime, limit: int) -> list[int]:
    """PostgreSQL's planner reads and sorts every due action unless the range is bounded: so
    a window at a time, up to ``limit`` ids."""
    if await _GLOBAL_PAUSE.rows(conn, {}):
        return []
    ids: list[int] = []
    after = 0
    while len(ids) < limit:
        window = {"now": now, "after": after, "window": CLAIM_WINDOW}
        seen, upto = (await _WINDOW_END.rows(conn, window))[0]
        if not seen:
            break
        wanted = {"now": now, "after": after, "upto": upto, "limit": limit - len(ids)}
        ids += [row[0] for row in await _CLAIMABLE_IDS.rows(conn, wanted)]
        if seen < CLAIM_WINDOW:  # that was the last of them
            break
        after = upto
    return ids


async def claim_actions(
    conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int
) -> list[Claimed]:
    """Claim due actions, at most one per ordering key: a candidate's actions run in order.

    An action is eligible when no earlier action of its ordering key is still pending or
    running, its rule is not paused and nothing is paused globally. On PostgreSQL the rows are
    locked with SKIP LOCKED so several engine processes never claim the same action.
    """
    if raw_sqlite(conn) is not None:  # an ordered walk that stops at the limit: one statement
        values = {"now": now, "after": 0, "upto": _NO_UPPER_BOUND, "limit": limit}
        ids = [row[0] for row in await _CLAIMABLE_IDS.rows(conn, values)]
    else:
        ids = await _claimable_in_windows(conn, now, limit)
    if not ids:
        return []
    rows = await _CLAIM_MANY.rows(conn, {"ids": ids, "lease_until": lease_until})
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


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
        "action_id": action_id,
        "status": status,
        "attempts": attempts,
        "lease_until": None,
        "last_error": error,
    }
    later = status in CLAIMABLE
    if later:
        assert next_attempt_at is not None
        values["next_attempt_at"] = next_attempt_at
    else:
        values["finished_at"] = now
        values["result"] = result
    await _FINISH_ACTION[later].run(conn, values)


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
            # the index's own predicate (ix_outbox_touches), as text: bound values hide it
            text(TOUCH_SQL),
            outbox.c.finished_at > since,  # at exactly since + per the oldest has aged out
        )
        .order_by(outbox.c.finished_at)
    )
    return list((await conn.execute(query)).scalars())


async def status_counts(conn: AsyncConnection) -> dict[str, int]:
    query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
    return {str(row[0]): int(row[1]) for row in await conn.execute(query)}


OPEN = ("pending", "deferred", "running", "dead")


async def open_action_counts(conn: AsyncConnection) -> dict[str, int]:
    """Actions per open status (a dead letter waits for a replay): a range of ``ix_outbox_due``
    each, however much done history the outbox holds. Every open status is named, 0 too."""
    query = (
        select(outbox.c.status, func.count())
        .where(outbox.c.status.in_(OPEN))
        .group_by(outbox.c.status)
    )
    counts = {str(row[0]): int(row[1]) for row in await conn.execute(query)}
    return {status: counts.get(status, 0) for status in OPEN}


async def pending_steps(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """(steps pending, the earliest due time among them)."""
    query = select(func.count(), func.min(enrollment_steps.c.due_at)).where(
        enrollment_steps.c.status == "pending"
    )
    count, earliest = (await conn.execute(query)).one()
    return int(count), earliest


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
