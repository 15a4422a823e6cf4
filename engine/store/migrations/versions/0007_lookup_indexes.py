"""Two lookups that read whole tables: the active enrolments of an address (a CRM event about
a contact no candidate is linked to) scanned every enrolment, and the sync error rate (after
each dead letter) read every done action through the status index. Both grew with the
history a long-running daemon keeps: at 200,000 rows, 24 ms and 32 ms on SQLite.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_enrollments_email", "enrollments", ["email", "status"])
    op.create_index("ix_outbox_trigger_finished", "outbox", ["trigger", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_trigger_finished", table_name="outbox")
    op.drop_index("ix_enrollments_email", table_name="enrollments")
