"""The daemon's simulated clock (``nurture run --simulated-clock``), used by the proof suite."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from engine.clock import ScaledClock

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_simulated_time_runs_rate_times_faster_from_its_origin() -> None:
    wall = [1000.0]
    clock = ScaledClock(START, origin=1000.0, rate=600, wall=lambda: wall[0])
    assert clock.now() == START
    wall[0] += 1.5
    assert clock.now() == START + timedelta(minutes=15)


def test_a_restart_with_the_same_spec_continues_the_same_timeline() -> None:
    wall = [5000.0]
    first = ScaledClock(START, origin=4000.0, rate=60, wall=lambda: wall[0])
    again = ScaledClock.parse(first.spec())
    assert again.start == first.start and again.origin == first.origin and again.rate == 60
    assert (
        abs(
            (
                ScaledClock(again.start, again.origin, again.rate, lambda: wall[0]).now()
                - first.now()
            ).total_seconds()
        )
        < 1e-6
    )


@pytest.mark.parametrize(
    "spec",
    [
        "2026-03-02T08:00:00Z,100",
        "yesterday,100,60",
        "2026-03-02T08:00:00Z,x,60",
        "2026-03-02T08:00:00Z,100,0",
        "2026-03-02T08:00:00,100,60",
    ],
)
def test_a_bad_spec_is_refused_with_the_expected_form(spec: str) -> None:
    with pytest.raises(ValueError):
        ScaledClock.parse(spec)


def test_nurture_run_refuses_a_bad_simulated_clock_as_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "--simulated-clock", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "START,ORIGIN,RATE" in result.stderr
