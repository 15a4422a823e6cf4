"""Drop ``enrollment_steps.lease_until``: a step is claimed and fired in one transaction,
which is its lease, so the column was never written.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollment_steps") as batch:
        batch.drop_column("lease_until")


def downgrade() -> None:
    with op.batch_alter_table("enrollment_steps") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
