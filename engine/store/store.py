"""The durable store: one async SQLAlchemy engine, SQLite (default) or PostgreSQL.

``Store.open(url)`` migrates to the newest schema this code knows and refuses a database whose
schema is newer (written by a later nurture). Alembic is loaded only when a migration runs: a
store already at ``HEAD_REVISION`` is opened without it (the daemon migrates in a child
process, ``engine.store.migrate``, so it never holds Alembic's memory).

Every multi-row change goes through ``transaction()``; on SQLite that also takes the one
process-wide write lock and begins with ``BEGIN IMMEDIATE``, because SQLite allows one writer
and a "database is locked" error must never reach a caller. SQLite statements run inline on
the loop (``inline_sqlite``), and WAL checkpoints, the only fsyncs, run on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic_core
from sqlalchemy import Connection, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from engine.errors import StoreError
from engine.store import inline_sqlite
from engine.store.prepared import raw_sqlite

if TYPE_CHECKING:
    from alembic.config import Config

# What "the store cannot be reached" looks like from here: the driver's errors, the socket's,
# and a pool that hands out no connection in time. One list, so a new one is learned once.
UNREACHABLE = (OperationalError, DBAPIError, OSError, PoolTimeout)
STORE_DOWN = (StoreError, *UNREACHABLE)  # and our own word for it

WAL_BOUND_PAGES = 4000
# the newest migration's revision (test_store checks that it is Alembic's head)
HEAD_REVISION = "0009"
_MIGRATIONS = Path(__file__).parent / "migrations"


def json_text(value: Any) -> str:
    """The text of a JSON column. pydantic-core's encoder takes a quarter of ``json.dumps``'s
    time (a 1.5 KB event: 5 us against 20), and the daemon writes four or five such values per
    event; UTF-8 is kept as it is rather than escaped."""
    return pydantic_core.to_json(value).decode()


def json_value(text: str | bytes) -> Any:
    return pydantic_core.from_json(text)


def async_url(url: str) -> str:
    """Accept plain ``sqlite:///x.db`` / ``postgresql://...`` and pick the async drivers."""
    if url.startswith("sqlite://") and "+" not in url.split("://")[0]:
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The head as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()  # type: ignore[arg-type]
    assert head is not None
    return head


class Store:
    """Owns the database engine; the query functions live in ``engine.store.queries``."""

    CHECKPOINT_EVERY = 256  # SQLite commits between two background WAL checkpoints

    def __init__(self, engine: AsyncEngine, sqlite_path: str | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._writer = engine.execution_options(nurture_write=True)
        self._write_lock = asyncio.Lock()
        self._sqlite_path = sqlite_path
        self._commits = 0
        self._reader: sqlite3.Connection | None = None
        self._write_connection: AsyncConnection | None = None
        self._checkpoint: asyncio.Task[Any] | None = None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, schema: str | None = None) -> Store:
        """Connect (and migrate). ``schema`` (or ``?search_path=`` in a PostgreSQL URL) puts
        the tables in that PostgreSQL schema."""
        parsed = make_url(async_url(url))
        if "search_path" in parsed.query:
            schema = str(parsed.query["search_path"])
            parsed = parsed.difference_update_query(["search_path"])
        target = parsed.render_as_string(hide_password=False)
        sqlite_path: str | None = None
        if target.startswith("sqlite"):
            sqlite_path = parsed.database or ":memory:"
            if sqlite_path == ":memory:":
                raise StoreError("an in-memory SQLite store cannot be shared; give a file path")
            engine = create_async_engine(
                target,
                async_creator=inline_sqlite.connector(sqlite_path),
                poolclass=AsyncAdaptedQueuePool,
                pool_size=4,
                max_overflow=0,
                json_serializer=json_text,
                json_deserializer=json_value,
            )
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        else:
            connect_args = {"server_settings": {"search_path": schema}} if schema else {}
            engine = create_async_engine(
                target,
                # the outbox runs up to 32 actions at once, plus intake, claims and steps:
                # with 10 pooled, overflow connections were opened and closed all the time
                # under load (a connect each, TLS negotiation included); two daemons at 32
                # each stay within PostgreSQL's default 100 connections
                pool_size=24,
                max_overflow=8,
                pool_pre_ping=True,
                connect_args=connect_args,
                json_serializer=json_text,
                json_deserializer=json_value,
            )
        store = cls(engine, sqlite_path)
        try:
            if migrate:
                await store.migrate()
        except BaseException:
            await engine.dispose()
            raise
        return store

    def reader(self) -> sqlite3.Connection | None:
        """On SQLite, a connection of its own in autocommit mode for one-statement lookups on
        the hot path (is this address suppressed?): each sees the latest commit, and skips the
        pool checkout a ``read()`` costs. None on PostgreSQL: use ``read()``."""
        if self._sqlite_path is None:
            return None
        if self._reader is None:
            self._reader = sqlite3.connect(
                self._sqlite_path,
                isolation_level=None,
                check_same_thread=False,
                timeout=inline_sqlite.BUSY_TIMEOUT_MS / 1000,
            )
        return self._reader

    async def close(self) -> None:
        await self._drop_write_connection()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Upgrade to head; refuse a schema newer than this code knows."""
        if not await self.behind():
            return
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except UNREACHABLE as exc:
            raise StoreError(f"cannot open the store: {exc}") from exc

    async def behind(self) -> bool:
        """Whether the schema is not at ``HEAD_REVISION`` (a migration is due, or refused)."""
        try:
            return await self.revision() != HEAD_REVISION
        except UNREACHABLE as exc:
            raise StoreError(f"cannot open the store: {exc}") from exc

    async def revision(self) -> str | None:
        """The schema revision the store is at; None before the first migration."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except UNREACHABLE:
            return False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One committed-or-rolled-back unit of work."""
        if self.dialect == "sqlite":
            async with self._write_lock:
                conn = await self._sqlite_writer()
                raw = raw_sqlite(conn)
                try:
                    if raw is None:  # another SQLite driver (tests compare it with ours)
                        async with conn.begin():
                            yield conn
                    else:
                        async with _raw_transaction(conn, raw):
                            yield conn
                except BaseException:
                    # whatever state a failed transaction left behind goes with its connection
                    await self._drop_write_connection()
                    raise
            self._committed()
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def _sqlite_writer(self) -> AsyncConnection:
        """SQLite's writers take turns (``_write_lock``), so they share one connection kept
        open: a pool checkout, its reset on return and SQLAlchemy's connection set-up cost
        about 140 us per transaction, three quarters of an empty one's cost, and the return
        (``AsyncConnection`` closes in a shielded task) took a loop turn with the lock held,
        which every webhook's acknowledgement waited for."""
        if self._write_connection is None or self._write_connection.closed:
            self._write_connection = await self._writer.connect()
        return self._write_connection

    async def _drop_write_connection(self) -> None:
        connection, self._write_connection = self._write_connection, None
        if connection is not None and not connection.closed:
            try:
                await connection.close()
            except Exception:  # already broken: the pool discards it
                await connection.invalidate()

    def _committed(self) -> None:
        """Every ``CHECKPOINT_EVERY`` commits, checkpoint the WAL on a worker thread, so the
        copying and the fsync happen off the loop."""
        self._commits += 1
        if self._commits % self.CHECKPOINT_EVERY or self._sqlite_path is None:
            return
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = asyncio.get_running_loop().create_task(
                asyncio.to_thread(inline_sqlite.checkpoint, self._sqlite_path)
            )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn


@asynccontextmanager
async def _raw_transaction(conn: AsyncConnection, raw: sqlite3.Connection) -> AsyncIterator[None]:
    """BEGIN and COMMIT straight on ``sqlite3``: through SQLAlchemy's ``AsyncTransaction`` they
    cost about 40 us of an empty transaction's 45, and the daemon runs 1.5-3.5 transactions per
    event."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        yield
        if conn.in_transaction():
            # a Core statement inside made SQLAlchemy begin a transaction of its own (its begin
            # hook saw ours and issued nothing): end it through SQLAlchemy so both agree
            await conn.commit()
        else:
            raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                raw.execute("ROLLBACK")
        raise


def _current_revision(connection: Connection) -> str | None:
    """What Alembic's version table holds, read without Alembic (its one row, if any)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    config = _alembic_config(connection)
    scripts = ScriptDirectory.from_config(config)
    current = _current_revision(connection)
    known = {rev.revision for rev in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(
            f"the store's schema revision {current!r} is newer than this nurture knows "
            f"(newest known: {scripts.get_current_head()!r}); upgrade nurture before using it"
        )
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Store checkpoints on a worker thread; under continuous writes those never catch up with
    # the writer, so SQLite's own (inline, then short) checkpoint stays on as the bound.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BOUND_PAGES}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Writers take SQLite's write lock up front: a deferred BEGIN that later upgrades can
    fail with "database is locked" instead of waiting for the busy timeout."""
    driver = connection.connection.driver_connection
    if isinstance(driver, inline_sqlite.InlineConnection) and driver._conn.in_transaction:
        return  # inside ``Store.transaction``, which began on sqlite3 itself
    write = connection.get_execution_options().get("nurture_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
