"""SQLite for SQLAlchemy's async engine without a thread hop per statement.

aiosqlite runs every statement on a helper thread and wakes the event loop for its answer:
about sixty loop turns and two thread switches per intake event, which capped the durable
pipeline near 150 events/s. SQLite itself answers an indexed insert in microseconds, and a
commit in WAL mode with ``synchronous=NORMAL`` writes no fsync (only checkpoints do), so this
driver runs statements directly on the loop's thread: each "await" completes at once.

It speaks the small part of aiosqlite's interface that SQLAlchemy's aiosqlite dialect uses
(``async_creator`` hands it over), so every query stays the same SQLAlchemy code on SQLite
and PostgreSQL.

What blocks the loop, and why that is bounded:
- statements: microseconds to a millisecond for the engine's indexed queries;
- a writer in another process (``nurture pause`` while the daemon runs): the engine's
  ``BEGIN IMMEDIATE`` waits up to ``busy_timeout``; such CLI transactions are milliseconds;
- WAL checkpoints (the only fsyncs): ``Store`` runs passive ones on a worker thread
  (``checkpoint``); SQLite's automatic one stays on at a high mark as the bound on the WAL,
  and finds little left to copy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

BUSY_TIMEOUT_MS = 10_000


class _Transactions:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's isolation-level setter
    uses directly: run the request now and resolve its future."""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()


class _CursorContext:
    """aiosqlite's ``connection.cursor()`` is awaited via ``__aenter__``."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def __aenter__(self) -> InlineCursor:
        return InlineCursor(self._connection.cursor())


class InlineConnection:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection  # the name aiosqlite uses; SQLAlchemy reaches for it
        # aiosqlite's "still open" marker: SQLAlchemy skips commit/rollback when it is None
        self._connection: sqlite3.Connection | None = connection
        self._tx = _Transactions()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> _CursorContext:
        return _CursorContext(self._conn)

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return InlineCursor(self._conn.execute(sql, parameters))

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        """Terminate: nothing runs elsewhere, so closing is all there is to do."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def connector(path: str) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine`` that opens ``path`` inline.

    ``isolation_level=None`` switches off the sqlite3 module's implicit BEGINs (which never
    cover a leading SAVEPOINT); ``Store`` issues BEGIN / BEGIN IMMEDIATE itself.
    """

    async def create() -> InlineConnection:
        connection = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,  # pooled connections may be closed by the GC elsewhere
            timeout=BUSY_TIMEOUT_MS / 1000,
            cached_statements=256,
        )
        return InlineConnection(connection)

    return create


def checkpoint(path: str) -> tuple[int, int, int]:
    """One passive WAL checkpoint on a connection of its own (run it on a worker thread):
    it copies what it can without waiting for, or blocking, the writer."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        connection.close()
