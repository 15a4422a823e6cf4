"""Sequences: enrollments, enrollment steps (the source of truth for timed steps), candidate
snapshots and jobs for step context; the touch category of outbox sends (frequency cap).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidate_snapshots",
        sa.Column("candidate_id", sa.String(length=200), nullable=False),
        sa.Column("candidate", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("candidate_id"),
    )
    op.create_table(
        "enrollment_steps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "enrollment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("step_id", sa.String(length=100), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("enrollment_id", "step_id", "occurrence", name="uq_step_occurrence"),
    )
    op.create_index(
        op.f("ix_enrollment_steps_enrollment_id"),
        "enrollment_steps",
        ["enrollment_id"],
        unique=False,
    )
    op.create_index("ix_steps_due", "enrollment_steps", ["status", "due_at"], unique=False)
    op.create_table(
        "enrollments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sequence_id", sa.String(length=100), nullable=False),
        sa.Column("candidate_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_enrollments_candidate", "enrollments", ["candidate_id", "status"], unique=False
    )
    op.create_index(
        "uq_enrollments_active",
        "enrollments",
        ["sequence_id", "candidate_id", "key"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(length=200), nullable=False),
        sa.Column("job", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("department", sa.String(length=300), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.add_column("outbox", sa.Column("touch_category", sa.String(length=20), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "touch_category")
    op.drop_table("jobs")
    op.drop_index(
        "uq_enrollments_active",
        table_name="enrollments",
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_index("ix_enrollments_candidate", table_name="enrollments")
    op.drop_table("enrollments")
    op.drop_index("ix_steps_due", table_name="enrollment_steps")
    op.drop_index(op.f("ix_enrollment_steps_enrollment_id"), table_name="enrollment_steps")
    op.drop_table("enrollment_steps")
    op.drop_table("candidate_snapshots")
