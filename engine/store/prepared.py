"""Hot statements built once, and on the inline SQLite driver run straight on ``sqlite3``.

Per statement, SQLAlchemy builds the statement object, computes its cache key and sets up an
execution context: about 100 µs each, a dozen times per intake event, which was most of the
engine's time per event. A ``Prepared`` statement is built once per dialect. On SQLite its
SQL text, parameter order and SQLAlchemy's own bind and result processors come from compiling
that same statement once, and it runs on the transaction's ``sqlite3`` connection, so what it
stores is exactly what the generic path stores (``test_prepared`` compares both paths row by
row). On PostgreSQL (or any other driver) it runs through SQLAlchemy as before, minus the
building.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, bindparam, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store.inline_sqlite import InlineConnection
from engine.store.tables import DateTime

Processor = Callable[[Any], Any] | None


def raw_sqlite(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn`` when it is the inline driver's, else None."""
    sync = conn.sync_connection
    if sync is None:
        return None
    try:
        return sync._nurture_raw  # type: ignore[attr-defined,no-any-return]
    except AttributeError:
        pass
    driver = sync.connection.driver_connection if sync.dialect.name == "sqlite" else None
    raw = driver._conn if isinstance(driver, InlineConnection) else None
    sync._nurture_raw = raw  # type: ignore[attr-defined]  # one lookup per checkout
    return raw


@asynccontextmanager
async def savepoint(conn: AsyncConnection) -> AsyncIterator[None]:
    """A savepoint: the work inside rolls back alone on an exception, which is re-raised."""
    raw = raw_sqlite(conn)
    if raw is None:
        async with conn.begin_nested():
            yield
        return
    raw.execute("SAVEPOINT nurture_unit")
    try:
        yield
    except BaseException:
        raw.execute("ROLLBACK TO nurture_unit")
        raw.execute("RELEASE nurture_unit")
        raise
    raw.execute("RELEASE nurture_unit")


def any_of(column: Any, name: str, dialect: str) -> Any:
    """``column IN (the list bound as name)``: on SQLite one JSON array read through
    ``json_each``, so the statement's text (and its cached plan) does not change with the
    list's length; PostgreSQL takes an expanding ``IN``."""
    if dialect == "sqlite":
        members = select(func.json_each(bindparam(name, type_=JSON)).table_valued("value").c.value)
        return column.in_(members.scalar_subquery())
    return column.in_(bindparam(name, expanding=True))


def exactly_once(sql: str, old: str, new: str) -> str:
    """A ``sqlite_sql`` touch (an ``INDEXED BY``): ``old`` must occur once in the text."""
    if sql.count(old) != 1:  # SQLAlchemy renders differently: fail loudly, not slowly
        raise RuntimeError(f"expected {old!r} once in the query:\n{sql}")
    return sql.replace(old, new)


_DATETIME_TEXTS: dict[datetime, str] = {}
_DATETIME_TEXTS_KEPT = 4096


def _sqlite_datetime(value: datetime | None) -> str | None:
    """What ``tables.DateTime`` stores on SQLite (UTC, no zone, microseconds), without its
    two layers of generic processing; ``test_prepared`` holds the two to the same text.

    Remembered: a transaction binds the same moments many times (its ``now``, a lease end),
    and the conversion costs about 2 us where the lookup costs 0.05 (equal instants in other
    zones are equal keys, and have the same UTC text)."""
    if value is None:
        return None
    text = _DATETIME_TEXTS.get(value)
    if text is not None:
        return text
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"naive or non-datetime value {value!r}; use the engine clock")
    if len(_DATETIME_TEXTS) >= _DATETIME_TEXTS_KEPT:
        _DATETIME_TEXTS.clear()
    text = _DATETIME_TEXTS[value] = (
        value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    )
    return text


@dataclass(frozen=True)
class _Compiled:
    sql: str
    binds: tuple[tuple[str, Processor, Any], ...]  # name, processor, value if fixed in the SQL
    results: tuple[Processor, ...]
    columns: tuple[str, ...]

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, processor, fixed in self.binds:
            value = values.get(name, fixed)
            out.append(processor(value) if processor is not None else value)
        return out

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(p(v) if p is not None else v for p, v in zip(self.results, raw, strict=True))


class Prepared:
    """One statement with named parameters ``keys`` (for an INSERT, the columns it sets)."""

    def __init__(
        self,
        build: Callable[[str], Any],
        keys: Sequence[str] = (),
        sqlite_sql: Callable[[str], str] | None = None,
    ) -> None:
        self._build = build
        self._keys = list(keys)
        self._sqlite_sql = sqlite_sql  # a last touch to the SQLite text (an INDEXED BY)
        self._statements: dict[str, Any] = {}
        self._compiled: _Compiled | None = None

    def statement(self, dialect: str) -> Any:
        if dialect not in self._statements:
            self._statements[dialect] = self._build(dialect)
        return self._statements[dialect]

    def _sqlite(self, dialect: Dialect) -> _Compiled:
        if self._compiled is None:
            compiled: Any = self.statement("sqlite").compile(
                dialect=dialect, column_keys=self._keys or None
            )
            processors = compiled._bind_processors
            binds = tuple(
                (
                    name,
                    _sqlite_datetime
                    if isinstance(compiled.binds[name].type, DateTime)
                    else processors.get(name),
                    compiled.binds[name].effective_value,
                )
                for name in compiled.positiontup or ()
            )
            results = tuple(
                entry.type._cached_result_processor(dialect, None)
                for entry in compiled._result_columns
            )
            columns = tuple(entry.keyname for entry in compiled._result_columns)
            sql = compiled.string if self._sqlite_sql is None else self._sqlite_sql(compiled.string)
            self._compiled = _Compiled(sql, binds, results, columns)
        return self._compiled

    async def rows(self, conn: AsyncConnection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run it; the rows it returns (none for a statement without RETURNING)."""
        raw = raw_sqlite(conn)
        if raw is None:
            result = await conn.execute(self.statement(conn.dialect.name), dict(values))
            return [tuple(r) for r in result.all()] if result.returns_rows else []
        compiled = self._sqlite(conn.dialect)
        cursor = raw.execute(compiled.sql, compiled.parameters(values))
        return [compiled.row(r) for r in cursor.fetchall()]

    def rows_on(
        self, raw: sqlite3.Connection, dialect: Dialect, values: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run it on a bare ``sqlite3`` connection (``Store.reader``: autocommit reads)."""
        compiled = self._sqlite(dialect)
        cursor = raw.execute(compiled.sql, compiled.parameters(values))
        return [compiled.row(r) for r in cursor.fetchall()]

    async def mappings(
        self, conn: AsyncConnection, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        rows = await self.rows(conn, values)
        if not rows:
            return []
        if raw_sqlite(conn) is None:
            columns = [c.name for c in self.statement(conn.dialect.name).selected_columns]
        else:
            columns = list(self._sqlite(conn.dialect).columns)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    async def run(self, conn: AsyncConnection, values: Mapping[str, Any]) -> int:
        """Run it for its effect; the number of rows it changed."""
        raw = raw_sqlite(conn)
        if raw is None:
            result = await conn.execute(self.statement(conn.dialect.name), dict(values))
            return int(result.rowcount or 0)
        compiled = self._sqlite(conn.dialect)
        return raw.execute(compiled.sql, compiled.parameters(values)).rowcount

    async def run_many(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        raw = raw_sqlite(conn)
        if raw is None:
            await conn.execute(self.statement(conn.dialect.name), [dict(r) for r in rows])
            return
        compiled = self._sqlite(conn.dialect)
        raw.executemany(compiled.sql, [compiled.parameters(r) for r in rows])
