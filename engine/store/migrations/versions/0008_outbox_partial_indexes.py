"""Two outbox indexes hold only the rows their one query reads: the sync error rate reads
finished actions, the frequency cap reads done nurture email. Every action used to enter
both when it was queued (and the error-rate one again when it finished); a transaction of
the daemon wrote about 4 of its 29 WAL pages for them.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# frozen here: a migration states what it did, whatever the tables module says later
FINISHED_SQL = "finished_at IS NOT NULL"
TOUCH_SQL = "status = 'done' AND touch_category = 'nurture'"


def upgrade() -> None:
    op.drop_index("ix_outbox_trigger_finished", table_name="outbox")
    op.create_index(
        "ix_outbox_trigger_finished",
        "outbox",
        ["trigger", "finished_at"],
        sqlite_where=sa.text(FINISHED_SQL),
        postgresql_where=sa.text(FINISHED_SQL),
    )
    op.drop_index("ix_outbox_order", table_name="outbox")
    op.create_index(
        "ix_outbox_touches",
        "outbox",
        ["ordering_key", "finished_at"],
        sqlite_where=sa.text(TOUCH_SQL),
        postgresql_where=sa.text(TOUCH_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_touches", table_name="outbox")
    op.create_index("ix_outbox_order", "outbox", ["ordering_key", "id"])
    op.drop_index("ix_outbox_trigger_finished", table_name="outbox")
    op.create_index("ix_outbox_trigger_finished", "outbox", ["trigger", "finished_at"])
