"""`nurture dlq`, `pause`, `resume` against a real store (the console script in a subprocess)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from engine.store import queries
from engine.store.store import Store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def nurture(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("nurture")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=60, check=False
    )


async def _seed(url: str) -> None:
    store = await Store.open(url)
    row: dict[str, object] = {
        "event_id": None,
        "rule_id": "application-to-crm",
        "action_index": 0,
        "action_type": "crm.upsert_contact",
        "ordering_key": "a@example.com",
        "candidate_id": "gh-4711",
        "trigger": "ats.application.created",
        "payload": {},
        "idempotency_key": "k1",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": NOW,
        "created_at": NOW,
    }
    async with store.transaction() as conn:
        await queries.insert_actions(conn, [row])
        await queries.finish_action(
            conn,
            1,
            status="dead",
            now=NOW,
            attempts=3,
            error="hubspot: HTTP 400: Email address is invalid",
        )
    await store.close()


async def _statuses(url: str) -> dict[str, int]:
    store = await Store.open(url)
    async with store.read() as conn:
        counts = await queries.status_counts(conn)
    await store.close()
    return counts


def test_dlq_list_shows_candidate_rule_and_reason_and_replay_requeues(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    asyncio.run(_seed(url))
    listing = nurture("dlq", "list", "--store", url)
    assert listing.returncode == 0, listing.stderr
    assert "candidate=gh-4711" in listing.stdout and "rule=application-to-crm" in listing.stdout
    assert "HTTP 400: Email address is invalid" in listing.stdout
    assert nurture("dlq", "replay", "--store", url).returncode == 2  # neither ID nor --all
    replayed = nurture("dlq", "replay", "1", "--store", url)
    assert replayed.returncode == 0 and "1 action(s) queued again" in replayed.stdout
    assert asyncio.run(_statuses(url)) == {"pending": 1}
    assert nurture("dlq", "replay", "1", "--store", url).returncode == 1  # nothing left to do


def test_pause_and_resume_one_rule_and_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    paused = nurture("pause", "application-to-crm", "--store", url)
    assert paused.returncode == 0 and "paused now: application-to-crm" in paused.stdout
    everything = nurture("pause", "--store", url)
    assert "paused now: *, application-to-crm" in everything.stdout
    nurture("resume", "--store", url)
    resumed = nurture("resume", "application-to-crm", "--store", url)
    assert resumed.returncode == 0 and "paused now: nothing" in resumed.stdout


def test_store_url_is_read_from_the_daemon_config(tmp_path: Path, repo: Path) -> None:
    config = (
        (repo / "nurture.yaml")
        .read_text()
        .replace("sqlite:///nurture.db", f"sqlite:///{tmp_path / 'from-config.db'}")
    )
    (tmp_path / "nurture.yaml").write_text(config)
    result = nurture("pause", "--config", str(tmp_path / "nurture.yaml"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-config.db").exists()
