"""`nurture demo` runs in CI: its printed invariants must hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_plays_the_whole_integration_and_its_invariants_hold(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("nurture")
    result = subprocess.run(
        [str(script), "demo", "--repo", str(REPO), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "duplicate CRM contacts: 0 (must be 0)" in out
    assert "emails to suppressed candidates after suppression: 0 (must be 0)" in out
    assert "dead letters left: 0" in out  # the outage's dead letters were replayed
    assert re.search(r"alerts fired: [1-9]", out)  # the outage was alerted
    for step in (
        "day-0-application-received",
        "day-7-thank-you",
        "day-90-keep-me-posted",
        "candidate-reminder",
        "interviewer-feedback-prompt",
    ):
        assert re.search(rf"{step}\s+[1-9]", out), step
    assert "exit_on link.clicked" in out and "exit_on crm.contact.unsubscribed" in out
    seconds = float(re.search(r"simulated days in ([0-9.]+) s", out).group(1))  # type: ignore[union-attr]
    assert seconds > 0
