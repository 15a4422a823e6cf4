"""The store itself: migrations, schema version guard, dedup, time zones; both backends."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, event, text

from engine.errors import StoreError
from engine.store import queries
from engine.store.migrate import migrate_apart
from engine.store.store import HEAD_REVISION, Store, _alembic_config, async_url, head_revision
from engine.store.tables import metadata

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_migrations_create_exactly_the_declared_tables(store: Store) -> None:
    async with store.read() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []
    assert await store.revision() == head_revision()


async def test_the_newest_migration_steps_back_and_forward_again(store: Store) -> None:
    """Undoing a release means downgrading its migration (0009 adds the inbox's replay key):
    back one revision and up again, the schema is exactly the declared one."""
    revisions: list[str | None] = []

    def back_and_forth(sync: Connection) -> None:
        config = _alembic_config(sync)
        command.downgrade(config, "-1")
        revisions.append(MigrationContext.configure(sync).get_current_revision())
        command.upgrade(config, "head")

    async with store.engine.begin() as conn:
        await conn.run_sync(back_and_forth)
    async with store.read() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert revisions == ["0008"]
    assert diff == []
    assert await store.revision() == head_revision()


async def test_store_refuses_a_schema_newer_than_it_knows(store: Store) -> None:
    async with store.transaction() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer than this nurture knows"):
        await store.migrate()


async def test_opening_twice_is_idempotent(store: Store) -> None:
    await store.migrate()
    assert await store.revision() == head_revision()


def test_the_head_revision_the_store_checks_is_alembics_head() -> None:
    """A store at ``HEAD_REVISION`` opens without Alembic: a migration added without moving
    the constant would never run on an existing store."""
    assert head_revision() == HEAD_REVISION


def _modules_loaded(code: str) -> set[str]:
    probe = code + "\nimport sys; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_a_store_at_head_opens_without_loading_alembic_and_the_daemon_never_does(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'nurture.db'}"
    opening = (
        f"import asyncio; from engine.store.store import Store; asyncio.run(Store.open({url!r}))"
    )
    assert "alembic" in _modules_loaded(opening)  # the first open migrates
    assert "alembic" not in _modules_loaded(opening)
    assert "alembic" not in _modules_loaded("import engine.daemon")


async def test_a_migration_in_a_child_process_migrates_and_reports_a_refusal(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'nurture.db'}"
    await migrate_apart(url)
    store = await Store.open(url, migrate=False)
    try:
        assert await store.revision() == HEAD_REVISION
        async with store.transaction() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await store.close()
    with pytest.raises(StoreError, match="newer than this nurture knows"):
        await migrate_apart(url)


def _event_row(delivery: str) -> dict[str, object]:
    return {
        "source": "ats/greenhouse",
        "delivery_id": delivery,
        "type": "ats.application.created",
        "subject": "c1",
        "time": NOW,
        "data": {"a": 1},
        "received_at": NOW,
        "config_digest": "x",
    }


async def test_the_same_delivery_is_stored_once(store: Store) -> None:
    row = _event_row("d1")
    async with store.transaction() as conn:
        first = await queries.insert_event(conn, row)
        second = await queries.insert_event(conn, row)
    assert first is not None and second is None


async def test_a_failed_transaction_leaves_nothing_behind_for_the_next(store: Store) -> None:
    class Failed(Exception):
        pass

    with pytest.raises(Failed):
        async with store.transaction() as conn:
            await queries.suppress(conn, "a@example.com", "unsubscribed", NOW)
            raise Failed
    async with store.transaction() as conn:
        assert await queries.suppression_reason(conn, "a@example.com") is None
        await queries.suppress(conn, "b@example.com", "manual", NOW)
    async with store.transaction() as conn:
        assert await queries.suppression_reason(conn, "b@example.com") == "manual"


async def test_prepared_and_core_statements_commit_or_roll_back_as_one(store: Store) -> None:
    """On SQLite the transaction begins on ``sqlite3`` itself; a Core statement inside makes
    SQLAlchemy begin too, and both must still end as one transaction."""

    class Failed(Exception):
        pass

    with pytest.raises(Failed):
        async with store.transaction() as conn:
            assert await queries.insert_event(conn, _event_row("lost")) is not None  # prepared
            await queries.suppress(conn, "lost@example.com", "manual", NOW)  # Core
            raise Failed
    async with store.transaction() as conn:
        assert await queries.insert_event(conn, _event_row("kept")) is not None
        await queries.suppress(conn, "kept@example.com", "manual", NOW)
    async with store.transaction() as conn:
        assert await queries.insert_event(conn, _event_row("lost")) is not None  # not stored
        assert await queries.insert_event(conn, _event_row("kept")) is None  # stored
        assert await queries.suppression_reason(conn, "lost@example.com") is None
        assert await queries.suppression_reason(conn, "kept@example.com") == "manual"


async def test_sqlite_transactions_begin_and_commit_on_sqlite3_itself(tmp_path: Path) -> None:
    """SQLAlchemy's begin and commit cost about 40 us of an empty transaction's 45."""
    path = tmp_path / "raw.db"
    store = await Store.open(f"sqlite:///{path}")
    through_sqlalchemy: list[str] = []
    for name in ("begin", "commit"):
        event.listen(
            store.engine.sync_engine, name, lambda *_a, n=name: through_sqlalchemy.append(n)
        )
    try:
        for n in range(5):
            async with store.transaction() as conn:
                await queries.insert_event(conn, _event_row(f"d{n}"))
    finally:
        await store.close()
    assert through_sqlalchemy == []
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM inbox").fetchone() == (5,)
    finally:
        db.close()


async def test_sqlite_writers_share_one_kept_connection(tmp_path: Path) -> None:
    """A pool checkout per transaction cost three quarters of an empty one's time, and its
    return (SQLAlchemy closes it in a task of its own) a loop turn with the write lock held."""
    store = await Store.open(f"sqlite:///{tmp_path / 'kept.db'}")
    checkouts: list[object] = []
    event.listen(store.engine.sync_engine, "checkout", lambda *args: checkouts.append(args))
    try:
        for n in range(10):
            async with store.transaction() as conn:
                await queries.suppress(conn, f"p{n}@example.com", "manual", NOW)
    finally:
        await store.close()
    assert len(checkouts) == 1


async def test_times_come_back_timezone_aware_utc(store: Store) -> None:
    async with store.transaction() as conn:
        await queries.suppress(conn, "a@example.com", "unsubscribed", NOW)
        await queries.pause(conn, "*", NOW)
        await queries.save_link(conn, "a@example.com", "51", "c1", NOW)
        link = await queries.link_for_email(conn, "a@example.com")
    assert link["updated_at"] == NOW and link["updated_at"].tzinfo is not None


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive"):
        async with store.transaction() as conn:
            await queries.suppress(conn, "a@example.com", "x", datetime(2026, 1, 1))


async def test_suppressing_twice_keeps_the_first_reason(store: Store) -> None:
    async with store.transaction() as conn:
        assert await queries.suppress(conn, "a@example.com", "unsubscribed", NOW)
        assert not await queries.suppress(conn, "a@example.com", "archived", NOW)
        assert await queries.suppression_reason(conn, "a@example.com") == "unsubscribed"


async def test_unreachable_store_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        await Store.open("postgresql://postgres@127.0.0.1:1/test")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///n.db", "sqlite+aiosqlite:///n.db"),
        ("postgresql://h/db", "postgresql+asyncpg://h/db"),
        ("postgres://h/db", "postgresql+asyncpg://h/db"),
        ("sqlite+aiosqlite:///n.db", "sqlite+aiosqlite:///n.db"),
    ],
)
def test_plain_urls_pick_the_async_drivers(given: str, expected: str) -> None:
    assert async_url(given) == expected


async def test_json_columns_keep_names_readable_and_read_back_equal(store: Store) -> None:
    """The store is for inspection too: a name is stored as written, not as \\u escapes."""
    data = {"candidate": {"first_name": "José", "last_name": "Ødegård"}, "n": [1, 2.5, None]}
    row = {**_event_row("d-utf8"), "data": data}
    async with store.transaction() as conn:
        event_id = await queries.insert_event(conn, row)
    assert event_id is not None
    async with store.read() as conn:
        stored = (
            await conn.execute(
                text("SELECT CAST(data AS TEXT) FROM inbox WHERE id = :id"), {"id": event_id}
            )
        ).scalar_one()
        audited = await queries.audit(conn, event_id)
    assert "José" in stored and "Ødegård" in stored
    assert audited["event"]["data"] == data
