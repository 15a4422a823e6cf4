"""What a config change does to candidates already enrolled: the warnings of a live edit.

Steps are matched by id, so an edited sequence keeps every enrolled candidate on the step it
reached. A step (or a whole sequence) that the new config removes is skipped with a reason
when it comes due; this module says so before the change is applied, with counts.
"""

from __future__ import annotations

from sqlalchemy import func, select

from engine.config.load import ConfigSet
from engine.store.store import Store
from engine.store.tables import enrollment_steps, enrollments


async def live_edit_warnings(store: Store, config: ConfigSet) -> list[str]:
    """One sentence per (sequence, step) with pending work that the config no longer has."""
    query = (
        select(
            enrollments.c.sequence_id,
            enrollment_steps.c.step_id,
            func.count(func.distinct(enrollments.c.id)),
        )
        .join(enrollments, enrollments.c.id == enrollment_steps.c.enrollment_id)
        .where(enrollments.c.status == "active", enrollment_steps.c.status == "pending")
        .group_by(enrollments.c.sequence_id, enrollment_steps.c.step_id)
        .order_by(enrollments.c.sequence_id, enrollment_steps.c.step_id)
    )
    async with store.read() as conn:
        rows = (await conn.execute(query)).all()
    warnings = []
    for sequence_id, step_id, count in rows:
        sequence = config.sequences.get(sequence_id)
        who = f"{count} enrolled candidate{'s' if count != 1 else ''}"
        if sequence is None:
            warnings.append(
                f"sequence {sequence_id!r} is removed, but {who} still have step "
                f"{step_id!r} pending: it will be skipped"
            )
        elif step_id not in {step.id for step in sequence.steps}:
            warnings.append(
                f"step {step_id!r} is removed from sequence {sequence_id!r}, but "
                f"{who} are waiting on it: it will be skipped"
            )
    return warnings
