"""The step runner's statements, prepared (``prepared.py``): a Core statement costs about
100 us to build and run, and the step runner fires in the intake transaction (Day 0) as well as
on every tick.

A list parameter is one JSON array read through ``json_each`` on SQLite, so the statement's
text does not change with the list's length; PostgreSQL takes an expanding ``IN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store.prepared import Prepared, any_of, exactly_once
from engine.store.queries import STEP_COLUMNS, insert_for
from engine.store.tables import candidate_snapshots, enrollment_steps, enrollments, jobs

_STEP_ORDER = (enrollment_steps.c.due_at, enrollment_steps.c.id)


def _due(dialect: str) -> Any:
    query = (
        select(enrollment_steps)
        .where(
            enrollment_steps.c.status == "pending",
            enrollment_steps.c.due_at <= bindparam("now"),
        )
        .order_by(*_STEP_ORDER)
        .limit(bindparam("most"))
    )
    # on PostgreSQL several runners share the table: a claimed row is skipped by the others
    return query.with_for_update(skip_locked=True) if dialect == "postgresql" else query


_DUE = Prepared(_due)
_DUE_OF = Prepared(
    lambda d: (
        select(enrollment_steps)
        .where(
            any_of(enrollment_steps.c.enrollment_id, "enrolments", d),
            enrollment_steps.c.status == "pending",
            enrollment_steps.c.due_at <= bindparam("now"),
        )
        .order_by(*_STEP_ORDER)
    ),
    # without statistics SQLite would walk every due step (a backlog after downtime) for each
    # intake group instead of the few steps of its new enrolments
    sqlite_sql=lambda sql: exactly_once(
        sql,
        "FROM enrollment_steps \n",
        "FROM enrollment_steps INDEXED BY ix_enrollment_steps_enrollment_id \n",
    ),
)


def _enrolments(dialect: str) -> Any:
    query = (
        select(enrollments)
        .where(any_of(enrollments.c.id, "enrolments", dialect))
        .order_by(enrollments.c.id)
    )
    # locked in id order on PostgreSQL: firings of one enrolment take turns, so the last one
    # sees the others and completes it; the order keeps two runners from deadlocking
    return query.with_for_update() if dialect == "postgresql" else query


_ENROLMENTS = Prepared(_enrolments)
_SNAPSHOTS = Prepared(
    lambda d: select(candidate_snapshots.c.candidate_id, candidate_snapshots.c.candidate).where(
        any_of(candidate_snapshots.c.candidate_id, "candidates", d)
    )
)
_OPEN_ROLES = Prepared(
    lambda d: (
        select(jobs.c.job)
        .where(
            jobs.c.status == "open",
            jobs.c.department == bindparam("department"),
            jobs.c.job_id != bindparam("except_job"),
        )
        .order_by(jobs.c.updated_at.desc())
        .limit(3)
    )
)
# parameter names differ from the columns they set: SQLAlchemy reserves those
_SET_STATUS = Prepared(
    lambda d: (
        update(enrollment_steps)
        .where(enrollment_steps.c.id == bindparam("step_pk"))
        .values(
            status=bindparam("new_status"),
            reason=bindparam("new_reason"),
            fired_at=bindparam("new_fired"),
        )
    )
)
_NEXT_OCCURRENCE = Prepared(
    lambda d: insert_for(d, enrollment_steps).on_conflict_do_nothing(
        index_elements=["enrollment_id", "step_id", "occurrence"]
    ),
    STEP_COLUMNS,
)
_COMPLETE_IF_DONE = Prepared(
    lambda d: (
        update(enrollments)
        .where(
            enrollments.c.id == bindparam("enrolment"),
            enrollments.c.status == "active",
            ~select(enrollment_steps.c.id)
            .where(
                enrollment_steps.c.enrollment_id == enrollments.c.id,
                enrollment_steps.c.status == "pending",
            )
            .exists(),
        )
        .values(status="completed", reason="all steps done", ended_at=bindparam("ended_now"))
    )
)


async def due_steps(conn: AsyncConnection, now: datetime, most: int) -> list[dict[str, Any]]:
    """Up to ``most`` pending steps due at ``now``, the longest due first."""
    return await _DUE.mappings(conn, {"now": now, "most": most})


async def due_steps_of(
    conn: AsyncConnection, enrollment_ids: Sequence[int], now: datetime
) -> list[dict[str, Any]]:
    """The pending steps of these enrolments that are due at ``now``."""
    return await _DUE_OF.mappings(conn, {"enrolments": list(enrollment_ids), "now": now})


async def enrolments_by_id(
    conn: AsyncConnection, enrollment_ids: Sequence[int]
) -> list[dict[str, Any]]:
    return await _ENROLMENTS.mappings(conn, {"enrolments": sorted(enrollment_ids)})


async def snapshots_of(conn: AsyncConnection, candidate_ids: Sequence[str]) -> dict[str, Any]:
    rows = await _SNAPSHOTS.rows(conn, {"candidates": list(candidate_ids)})
    return {str(candidate_id): candidate for candidate_id, candidate in rows}


async def open_roles(conn: AsyncConnection, department: str, except_job: str) -> list[Any]:
    """Up to three open roles of the department, newest first, other than ``except_job``."""
    rows = await _OPEN_ROLES.rows(conn, {"department": department, "except_job": except_job})
    return [job for (job,) in rows]


async def set_step_statuses(conn: AsyncConnection, updates: Sequence[dict[str, Any]]) -> None:
    """Rows of ``step_pk``, ``new_status``, ``new_reason``, ``new_fired``."""
    await _SET_STATUS.run_many(conn, updates)


async def add_next_occurrences(conn: AsyncConnection, steps: Sequence[dict[str, Any]]) -> None:
    await _NEXT_OCCURRENCE.run_many(conn, steps)


async def complete_if_done(
    conn: AsyncConnection, enrollment_ids: Sequence[int], now: datetime
) -> None:
    """Mark completed those of these active enrolments that have no pending step left."""
    await _COMPLETE_IF_DONE.run_many(
        conn, [{"enrolment": i, "ended_now": now} for i in sorted(enrollment_ids)]
    )
