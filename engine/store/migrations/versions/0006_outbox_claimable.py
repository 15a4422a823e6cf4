"""Two partial indexes for the outbox claim: ``ix_outbox_claimable`` (the ids still waiting,
walked in order up to the claim's limit) and ``ix_outbox_active_order`` (a person's open
actions, probed once per candidate), so a claim no longer reads every due action.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# frozen here: a migration states what it did, whatever the tables module says later
CLAIMABLE_SQL = "status = 'pending' OR status = 'deferred'"
ACTIVE_SQL = "status = 'pending' OR status = 'running'"


def upgrade() -> None:
    op.create_index(
        "ix_outbox_claimable",
        "outbox",
        ["id"],
        sqlite_where=sa.text(CLAIMABLE_SQL),
        postgresql_where=sa.text(CLAIMABLE_SQL),
    )
    op.create_index(
        "ix_outbox_active_order",
        "outbox",
        ["ordering_key", "id"],
        sqlite_where=sa.text(ACTIVE_SQL),
        postgresql_where=sa.text(ACTIVE_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_active_order", table_name="outbox")
    op.drop_index("ix_outbox_claimable", table_name="outbox")
