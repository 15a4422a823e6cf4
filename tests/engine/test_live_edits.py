"""Editing a live sequence: `nurture validate --store` warns about enrolled candidates."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path

from engine.cli import EXIT_OK, EXIT_WARNINGS, main
from engine.clock import ManualClock
from engine.config.load import load_config
from engine.events import Event
from engine.runtime import Runtime
from engine.store.store import Store
from engine.testing import Recorder

CONFIG = """\
version: 1
rules:
  - id: enrol
    description: enrol every applicant
    trigger: ats.application.created
    actions:
      - action: sequence.enroll
        params: {sequence: drip}
sequences:
  - id: drip
    description: two notes
    category: transactional
    steps:
      - id: first
        at: 1d
        do: {action: ats.add_note, params: {body: one}, fields: {candidate_id: candidate.id}}
      - id: second
        at: 2d
        do: {action: ats.add_note, params: {body: two}, fields: {candidate_id: candidate.id}}
"""


async def _enrol(url: str, folder: Path) -> None:
    config = load_config([folder]).config
    assert config is not None
    store = await Store.open(url)
    clock = ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    recorder = Recorder(clock)
    runtime = Runtime.build(store, config, clock, recorder, ats=recorder, notifier=recorder)
    for n in range(3):
        await runtime.intake.accept(
            Event(
                id=f"d{n}",
                source="ats/test",
                type="ats.application.created",
                time=clock.now(),
                subject=f"c{n}",
                data={
                    "candidate": {"id": f"c{n}", "email": f"p{n}@example.com"},
                    "application": {"id": f"a{n}", "status": "active"},
                },
            )
        )
    await store.close()


def test_removing_a_step_that_candidates_wait_on_is_a_warning_with_the_count(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    (live / "config.yaml").write_text(CONFIG)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    asyncio.run(_enrol(url, live))

    unchanged = io.StringIO()
    assert main(["validate", str(live), "--store", url], out=unchanged) == EXIT_OK

    edited = tmp_path / "edited"
    edited.mkdir()
    cut = CONFIG[: CONFIG.index("      - id: second")]
    (edited / "config.yaml").write_text(cut)
    out = io.StringIO()
    assert main(["validate", str(edited), "--store", url], out=out) == EXIT_WARNINGS
    assert (
        "step 'second' is removed from sequence 'drip', but 3 enrolled candidates are "
        "waiting on it: it will be skipped"
    ) in out.getvalue()
