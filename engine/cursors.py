"""Durable poller cursors, kept in the store so a restart resumes where polling stopped."""

from __future__ import annotations

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
