"""The steps benchmark still runs: ~2,000 steps, every phase doing its work, no timing
assertions (timings go to the benchmark's table, never into unit tests)."""

from __future__ import annotations

import pytest

from .bench_steps import NAME, STEPS_PER_ENROLMENT, Result, measure, rows
from .common import Row, render_table

STEPS = 2_000
LAG_SECONDS = 1.0


def _check(result: Result, backend: str) -> None:
    assert result.backend == backend
    assert result.error is None
    assert result.steps == STEPS
    assert result.sample_steps > 0 and result.bulk_steps > 0
    assert result.sample_steps + result.bulk_steps == STEPS
    assert result.size_bytes > 0
    restart = result.restart
    assert restart is not None
    assert restart.first_fired == 50
    assert restart.statuses == {"fired": result.overdue_steps}
    assert restart.peak_rss >= restart.rss_after_imports > 0
    lag = result.lag
    assert lag is not None
    assert lag.other == {}
    assert len(lag.lags) == lag.steps == round(1000 * LAG_SECONDS)
    assert result.cancel_steps == result.cancel_set_steps > 0
    assert result.cancel_steps % STEPS_PER_ENROLMENT == 0
    table = rows([result])
    assert all(isinstance(row, Row) and row.benchmark == f"{NAME}: {backend}" for row in table)
    assert {row.result for row in table} <= {"", "PASS", "MISS"}
    # below 1,000,000 steps the size-dependent rows (ready, RSS) carry no verdict
    judged = [row.measurement for row in table if row.result]
    assert len(judged) == 3, judged  # bulk enrol, firing lag, cancel
    assert len(render_table(table).splitlines()) == len(table) + 2


async def test_steps_benchmark_on_sqlite() -> None:
    (result,) = await measure(STEPS, backends=["sqlite"], lag_seconds=LAG_SECONDS, sample=100)
    _check(result, "sqlite")


@pytest.mark.postgres
async def test_steps_benchmark_on_postgresql() -> None:
    (result,) = await measure(STEPS, backends=["postgresql"], lag_seconds=LAG_SECONDS, sample=100)
    _check(result, "postgresql")
