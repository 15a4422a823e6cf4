"""`nurture test`: the shipped declarative tests pass, and a wrong expectation fails loudly."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine.cli import EXIT_ERRORS, EXIT_OK, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_shipped_rule_and_sequence_tests_pass() -> None:
    code, output = run("test", "tests/rules", "--config", "nurture.yaml")
    assert code == EXIT_OK, output
    assert "FAIL" not in output
    assert output.rstrip().endswith("7 passed, 0 failed")


def test_a_wrong_expectation_names_the_template_and_both_times(tmp_path: Path) -> None:
    shipped = (REPO / "tests/rules/sequences.test.yaml").read_text()
    broken = shipped.replace(
        "{at: 3d, template: welcome-what-to-expect, to: maya@example.com}",
        "{at: 2d, template: welcome-what-to-expect, to: maya@example.com}",
    )
    assert broken != shipped
    (tmp_path / "broken.test.yaml").write_text(broken)
    code, output = run("test", str(tmp_path), "--config", "nurture.yaml")
    assert code == EXIT_ERRORS
    assert "FAIL" in output and "Sequence A sends Day 0, 3 and 7" in output
    assert "expected send welcome-what-to-expect to maya@example.com at +2d" in output
    assert "actual: welcome-what-to-expect to maya@example.com at +3d" in output


def test_a_malformed_test_file_reports_its_location(tmp_path: Path) -> None:
    (tmp_path / "bad.test.yaml").write_text("version: 1\ntests:\n  - name: x\n    strat: 1\n")
    code, output = run("test", str(tmp_path), "--config", "nurture.yaml")
    assert code == EXIT_ERRORS
    assert "bad.test.yaml:3:" in output or "bad.test.yaml:4:" in output
