"""The validate benchmark still runs: small, and with no timing assertions (timings go to the
benchmark's table, never into unit tests)."""

from __future__ import annotations

from pathlib import Path

from engine.config.load import load_config

from .bench_validate import NAME, generate, measure, rows
from .common import Row, render_table


def test_generated_files_validate_without_diagnostics(tmp_path: Path) -> None:
    generated = generate(tmp_path, 20)
    result = load_config([tmp_path])
    assert [d.format_text() for d in result.diagnostics] == []
    assert result.config is not None
    assert len(result.files) == generated.files == 20
    assert len(result.config.rules) == generated.rules
    assert 20 <= generated.rules <= 60


def test_validate_benchmark_rows() -> None:
    measurement = measure(files=20, runs=1)
    assert measurement.errors == 0
    assert measurement.loaded_files == 20
    assert measurement.loaded_rules == measurement.generated.rules
    assert measurement.cli_exit == 0
    table = rows(measurement)
    assert all(isinstance(row, Row) and row.benchmark == NAME for row in table)
    assert [row.measurement for row in table] == [
        "files",
        "rules",
        "errors / warnings",
        "load_config, best of 1",
        "load_config, median of 1",
        "load_config, first (cold) run",
        "files/s (best run)",
        "nurture validate DIR (subprocess, incl. start-up)",
        "start-up alone (nurture --help)",
    ]
    assert table[0].value == "20"
    assert table[2].value == "0 / 0"
    assert {row.result for row in table} <= {"", "PASS", "MISS"}
    lines = render_table(table).splitlines()
    assert len(lines) == len(table) + 2  # headers and the dashed rule
