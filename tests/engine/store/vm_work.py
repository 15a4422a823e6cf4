"""How much work a statement costs SQLite, counted rather than timed (timings vary per machine;
this does not): used by the tests that hold a lookup's cost flat as history grows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.store.prepared import raw_sqlite
from engine.store.store import Store


async def vm_work(store: Store, lookup: Callable[[Any], Awaitable[object]]) -> int:
    """SQLite virtual-machine steps (in hundreds) that ``lookup(conn)`` takes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    async with store.transaction() as conn:
        raw = raw_sqlite(conn)
        assert raw is not None
        raw.set_progress_handler(count, 100)
        try:
            await lookup(conn)
        finally:
            raw.set_progress_handler(None, 0)
    return steps
