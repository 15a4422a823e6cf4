"""Alembic environment: always run programmatically by ``engine.store.migrate`` with a live
connection (``config.attributes['connection']``), never from an alembic.ini."""

from __future__ import annotations

from alembic import context

from engine.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
