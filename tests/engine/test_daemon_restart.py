"""`nurture run` killed with SIGKILL mid-action, then restarted on the same SQLite file."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

from adapters.hubspot.simulator import HubSpotSimulator
from tests.engine.test_daemon import Running, application, daemon, until  # noqa: F401


def _running_actions(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE status = 'running'").fetchone()[0])


async def test_a_restarted_sqlite_daemon_runs_what_its_killed_predecessor_had_claimed_at_once(
    daemon: tuple[Running, HubSpotSimulator],  # noqa: F811 - the fixture, imported above
    tmp_path: Path,
) -> None:
    running, hubspot = daemon
    hubspot.latency = 3.0  # the upsert is still at the CRM when the kill lands
    await running.start()
    assert (await running.webhook(application(1), "d1"))[0] == 200

    async def claimed() -> bool:
        return _running_actions(tmp_path / "nurture.db") > 0

    await until(claimed, "the upsert to be claimed")
    running.signal(signal.SIGKILL)
    assert await running.stopped() == -signal.SIGKILL
    assert _running_actions(tmp_path / "nurture.db") == 1  # left claimed, lease 2 minutes
    hubspot.latency = 0.0
    await running.start()

    async def finished() -> bool:  # well inside the 2-minute lease the old claim holds
        stats = hubspot.stats()
        return bool(stats["contacts"] == 1 and stats["sends"] == 1)

    await until(finished, "the orphaned upsert and the receipt", timeout=30)
    assert '"decision": "released_orphans"' in running.log.read_text()
    assert hubspot.stats()["duplicate_emails"] == 0
