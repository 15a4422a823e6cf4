"""The pipeline benchmark still runs: a few events, every one completed, no timing assertions
(timings go to the benchmark's table, never into unit tests)."""

from __future__ import annotations

import pytest

from .bench_pipeline import NAME, SCENARIOS, Result, measure, rows
from .common import Row, render_table

EVENTS = 12
MEASUREMENTS = [
    "events / CRM requests",
    "accepted",
    "completed",
    "ack p50 / p99",
    "end-to-end p50 / p99 / max",
    "outcome commits",
    "peak RSS",
]


def _check(results: list[Result], backend: str) -> None:
    assert [(r.backend, r.scenario) for r in results] == [(backend, s) for s in SCENARIOS]
    for result in results:
        assert result.error is None
        assert result.completed == EVENTS
        assert result.all_done, result.statuses
        sends = EVENTS  # one each; upserts share batch requests, at most one each
        upserts = result.crm_requests - sends
        assert 1 <= upserts <= EVENTS if result.scenario.upsert else upserts == 0
        assert len(result.ack) == len(result.e2e) == EVENTS
        assert all(latency > 0 for latency in result.e2e)
        assert sum(result.batches) == EVENTS * (2 if result.scenario.upsert else 1)
    table = rows(results)
    assert all(isinstance(row, Row) and row.benchmark == NAME for row in table)
    assert [row.measurement.split(": ", 1)[1] for row in table] == MEASUREMENTS * len(SCENARIOS)
    judged = [row for row in table if row.target]
    assert len(judged) == (2 if backend == "sqlite" else 0)
    assert {row.result for row in table} <= {"", "PASS", "MISS"}
    assert len(render_table(table).splitlines()) == len(table) + 2


async def test_pipeline_benchmark_on_sqlite() -> None:
    _check(await measure(EVENTS, backends=["sqlite"], timeout=20), "sqlite")


@pytest.mark.postgres
async def test_pipeline_benchmark_on_postgresql() -> None:
    _check(await measure(EVENTS, backends=["postgresql"], timeout=20), "postgresql")
