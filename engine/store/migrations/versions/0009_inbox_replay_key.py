"""The inbox remembers what was signed for a sender that signs the body only and names the
delivery in an unsigned header (Greenhouse): a captured delivery could be replayed under a new
id as a new event. A unique (source, replay_key) refuses it as a duplicate.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# frozen here: a migration states what it did, whatever the tables module says later
KEYED_SQL = "replay_key IS NOT NULL"


def upgrade() -> None:
    op.add_column("inbox", sa.Column("replay_key", sa.String(length=80), nullable=True))
    op.create_index(
        "uq_inbox_replay",
        "inbox",
        ["source", "replay_key"],
        unique=True,
        sqlite_where=sa.text(KEYED_SQL),
        postgresql_where=sa.text(KEYED_SQL),
    )


def downgrade() -> None:
    op.drop_index("uq_inbox_replay", table_name="inbox")
    op.drop_column("inbox", "replay_key")
