"""The acceptor's spool: verified webhook events, committed before their 2xx, in a SQLite file
of their own that the daemon then evaluates from.

A file of its own, not a table in the store: the acceptor process and the daemon each write
only their own file, so neither waits for the other's write lock, and the acknowledgement no
longer waits for rule evaluation on the daemon's busy loop. The daemon reads the spool in
order from a position it keeps in a file beside it; a position lost or behind only makes it
read events again, which the store's inbox refuses as duplicates (``(source, delivery id)``
and the replay key are unique there too).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from engine.errors import StoreError
from engine.events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the daemon's position is a seq
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    replay_key TEXT,
    event TEXT NOT NULL,
    spooled_at REAL NOT NULL,
    UNIQUE (source, delivery_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_spool_replay ON spool (source, replay_key)
    WHERE replay_key IS NOT NULL;
"""
KEEP_SECONDS = 3600.0  # evaluated events stay this long: a vendor's quick redelivery is a duplicate
POSITION_EVERY = 1.0  # seconds between two writes of the daemon's position (and at close)


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # the store's own setting: no fsync per commit
    connection.executescript(_SCHEMA)
    return connection


class Spool:
    """The writing side (the acceptor): events waiting together share one commit."""

    def __init__(self, path: Path) -> None:
        self.db = _connect(path)
        self.last = self._last()
        self._waiting: list[tuple[Event, str | None, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._marks: deque[tuple[float, int]] = deque()  # (when, last seq then), for pruning

    def _last(self) -> int:
        # the last row, not sqlite_sequence: an ignored duplicate advances that without a row,
        # and back-pressure compares this with the daemon's position (a row it read)
        return int(self.db.execute("SELECT coalesce(max(seq), 0) FROM spool").fetchone()[0])

    async def append(self, event: Event, replay_key: str | None) -> bool:
        """Spool one event; True when it was spooled before (a duplicate). Returns after the
        commit."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((event, replay_key, waiter))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_groups())
        return await waiter

    async def _write_groups(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            outcomes: list[tuple[asyncio.Future[bool], bool]] = []
            newest = 0  # the group's last new row: numbers only grow, so it is the spool's last
            try:
                self.db.execute("BEGIN IMMEDIATE")
                now = time.time()
                for event, replay_key, waiter in group:
                    cursor = self.db.execute(
                        "INSERT OR IGNORE INTO spool (source, delivery_id, replay_key, event,"
                        " spooled_at) VALUES (?, ?, ?, ?, ?)",
                        (event.source, event.id, replay_key, event.model_dump_json(), now),
                    )
                    outcomes.append((waiter, cursor.rowcount == 0))
                    if cursor.rowcount:
                        newest = cursor.lastrowid or newest
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                # the store's word for it: the webhook handler answers 503 and the vendor retries
                refused = StoreError(f"the spool refused the write: {exc}")
                for _, _, waiter in group:
                    if not waiter.done():
                        waiter.set_exception(refused)
                continue
            self.last = max(self.last, newest)
            for waiter, duplicate in outcomes:
                if not waiter.done():
                    waiter.set_result(duplicate)
            await asyncio.sleep(0)  # the callers answer before the next group is written

    def prune(self, evaluated: int, now: float | None = None) -> int:
        """Forget evaluated events older than ``KEEP_SECONDS``; returns how many.

        The age bound is a sequence number remembered at an earlier prune, not a filter on
        ``spooled_at``: that would scan every row below the position each time (an hour at
        500/s is 1.8M rows), holding the acceptor's loop; a range of the primary key deletes
        only what goes."""
        now = time.time() if now is None else now
        self._marks.append((now, self.last))
        bound = 0
        while self._marks and self._marks[0][0] <= now - KEEP_SECONDS:
            bound = self._marks.popleft()[1]
        if bound == 0:
            return 0
        cursor = self.db.execute("DELETE FROM spool WHERE seq <= ?", (min(bound, evaluated),))
        return cursor.rowcount

    def close(self) -> None:
        self.db.close()


class SpoolReader:
    """The reading side (the daemon): events after its position, in order.

    The position is written to ``<spool>.position`` at most once per ``POSITION_EVERY``
    seconds, and on ``close``: a rename after every batch blocked the daemon's loop for
    milliseconds whenever the file system's journal was busy with the store's fsyncs (11% of
    its time under load). A position that lags after a crash only re-reads events, which
    the inbox refuses as duplicates."""

    def __init__(self, path: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = _connect(path)
        self._position_file = path.with_name(path.name + ".position")
        self.position = self._read_position()
        self._monotonic = monotonic
        self._written = (self.position, -POSITION_EVERY)  # (position, when) last written

    def _read_position(self) -> int:
        try:
            return int(self._position_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0  # read again from the start: the inbox refuses what it has seen

    def after(self, limit: int) -> list[tuple[int, Event, str | None]]:
        rows = self.db.execute(
            "SELECT seq, event, replay_key FROM spool WHERE seq > ? ORDER BY seq LIMIT ?",
            (self.position, limit),
        ).fetchall()
        return [(int(seq), Event.model_validate_json(text), key) for seq, text, key in rows]

    def advance(self, seq: int) -> None:
        """Everything up to ``seq`` is evaluated and committed in the store."""
        self.position = seq
        now = self._monotonic()
        if now - self._written[1] >= POSITION_EVERY:
            self._write_position(now)

    def _write_position(self, now: float) -> None:
        staged = self._position_file.with_name(self._position_file.name + ".new")
        staged.write_text(str(self.position))
        os.replace(staged, self._position_file)  # never a torn position
        self._written = (self.position, now)

    def close(self) -> None:
        if self._written[0] != self.position:
            self._write_position(self._monotonic())
        self.db.close()
