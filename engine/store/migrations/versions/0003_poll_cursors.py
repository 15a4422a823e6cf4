"""Durable cursors of the vendor pollers (HubSpot engagement, ATS change polling); the
enrolment of an outbox action, so an exit can skip a step's email still waiting on a guardrail.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_cursors",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=400), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column(
                "enrollment_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch.create_index(op.f("ix_outbox_enrollment_id"), ["enrollment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index(op.f("ix_outbox_enrollment_id"))
        batch.drop_column("enrollment_id")
    op.drop_table("poll_cursors")
