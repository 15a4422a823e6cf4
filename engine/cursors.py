"""Durable poller state, kept in the store so a restart resumes where polling stopped.

A poller keeps its cursors here (``get`` / ``set``), and, when a vendor list shows only the
current state of a record, a small per-record memory under a name prefix (``under`` /
``delete``: the Greenhouse interview poller remembers each upcoming interview's times to tell a
reschedule or a cancellation from a first sighting). ``stage`` reads the stage the engine last
saw for an application, the same memory that fills ``application.previous_stage``, so a
poller reports a stage change only when the engine has not seen that stage yet.
"""

from __future__ import annotations

from typing import Any

from engine.clock import Clock
from engine.store import queries
from engine.store.store import Store


class StoreCursors:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def get(self, name: str) -> str | None:
        async with self.store.read() as conn:
            return await queries.get_cursor(conn, name)

    async def set(self, name: str, value: str) -> None:
        async with self.store.transaction() as conn:
            await queries.set_cursor(conn, name, value, self.clock.now())

    async def under(self, prefix: str) -> dict[str, str]:
        """Every saved value whose name starts with ``prefix``."""
        async with self.store.read() as conn:
            return await queries.cursors_under(conn, prefix)

    async def delete(self, name: str) -> None:
        async with self.store.transaction() as conn:
            await queries.delete_cursor(conn, name)

    async def stage(self, application_id: str) -> dict[str, Any] | None:
        """The stage the engine last saw for the application (None when never seen)."""
        async with self.store.read() as conn:
            return await queries.remembered_stage(conn, application_id)
