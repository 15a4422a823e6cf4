"""`nurture validate` and `nurture schema` as users and CI call them."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, EXIT_WARNINGS, main

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped rules/ and sequences/, with the cwd set to it."""
    for folder in ("rules", "sequences"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "nurture.yaml", tmp_path / "nurture.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new, 1))


def test_shipped_config_validates_with_a_per_file_summary(shipped: Path) -> None:
    code, output = run("validate", "rules", "sequences")
    assert code == EXIT_OK, output
    assert "OK     rules/new-application.yaml (2 rules)" in output
    assert "OK     sequences/templates.yaml (14 templates)" in output
    assert output.rstrip().endswith("0 FAILED; 0 errors, 0 warnings")


def test_shipped_daemon_config_validates(shipped: Path) -> None:
    code, output = run("validate", "--config", "nurture.yaml", "rules", "sequences")
    assert code == EXIT_OK, output
    assert "OK     nurture.yaml (daemon config)" in output


# One mistake in a shipped file -> exit 1, naming the file, the line, the field and a hint.
MISTAKES = [
    pytest.param(
        "rules/new-application.yaml",
        "        params: {sequence: new-applicant-welcome}",
        "        params: {sequence: new-applicant-welcome, priority: 1}",
        "rules/new-application.yaml:25:",
        "/rules/0/actions/1/params/priority: unknown key",
        "expected: one of 'sequence', 'start_at_step'",
        id="unknown-key-deep-in-action",
    ),
    pytest.param(
        "rules/stage-changes.yaml",
        'condition: "application.stage.name ==',
        'condition: "application.stage.name === ',
        "rules/stage-changes.yaml:10:42:",
        "/rules/0/condition: invalid JMESPath: unknown token",
        "hint: at character 26",
        id="broken-jmespath",
    ),
    pytest.param(
        "rules/stage-changes.yaml",
        "application.stage.name == 'Interview Scheduled'",
        "application.stage.name == `Interview Scheduled`",
        "rules/stage-changes.yaml:10:43:",
        "/rules/0/condition: invalid JMESPath: `Interview Scheduled` is not JSON",
        "hint: at character 27",
        id="backtick-literal-not-json",
    ),
    pytest.param(
        "rules/new-application.yaml",
        "firstname: candidate.first_name",
        "firstname: candidate.frist_name",
        "rules/new-application.yaml:18:32:",
        "/rules/0/actions/0/fields/firstname: unknown field 'candidate.frist_name'",
        "hint: did you mean 'candidate.first_name'?",
        id="misspelt-event-field",
    ),
    pytest.param(
        "rules/new-application.yaml",
        "          lastname: candidate.last_name\n",
        "          lastname: candidate.last_name\n          email: candidate.emails[0]\n",
        "rules/new-application.yaml:20:11:",
        "/rules/0/actions/0/fields/email: duplicate key 'email' (first defined at line 17)",
        "hint: YAML keeps only one of them",
        id="duplicate-key",
    ),
    pytest.param(
        "rules/new-application.yaml",
        "params: {sequence: new-applicant-welcome}",
        "params: {sequence: new-applicant-welcom}",
        "rules/new-application.yaml:25:28:",
        "/rules/0/actions/1/params/sequence: unknown sequence 'new-applicant-welcom'",
        "hint: did you mean 'new-applicant-welcome'?",
        id="unknown-sequence",
    ),
    pytest.param(
        "rules/re-engagement-link.yaml",
        "      - action: ats.add_tag\n",
        "      - action: ats.add_tag\n       params: {tag: x}\n",
        "rules/re-engagement-link.yaml:13:",
        "YAML syntax error",
        "hint:",
        id="broken-indentation",
    ),
    pytest.param(
        "sequences/silver-medalist.yaml",
        "repeat: {every: 30d}",
        "repeat: {every: -30d}",
        "sequences/silver-medalist.yaml:74:25:",
        "/sequences/0/steps/4/repeat/every: repeat interval '-30d' is not positive",
        "expected: a positive duration",
        id="negative-repeat",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "where", "what", "hint"), MISTAKES)
def test_one_mistake_in_a_shipped_file_is_located(
    shipped: Path, file: str, old: str, new: str, where: str, what: str, hint: str
) -> None:
    edit(shipped / file, old, new)
    code, output = run("validate", "rules", "sequences")
    assert code == EXIT_ERRORS, output
    first = output.splitlines()[0]
    assert first.startswith(where), output
    assert what in first, output
    assert hint in output, output
    assert f"FAILED {file}" in output


def test_all_errors_in_all_files_are_reported_not_only_the_first(shipped: Path) -> None:
    edit(shipped / "rules/new-application.yaml", "candidate.first_name", "candidate.frist_name")
    edit(shipped / "rules/interviews.yaml", "template: interview-scheduled", "template: nope")
    edit(shipped / "sequences/silver-medalist.yaml", "at: 30d", "at: 30 days")
    code, output = run("validate", "--format", "json", "rules", "sequences")
    assert code == EXIT_ERRORS
    report = json.loads(output)
    failed = sorted(f["path"] for f in report["files"] if not f["ok"])
    assert failed == [
        "rules/interviews.yaml",
        "rules/new-application.yaml",
        "sequences/silver-medalist.yaml",
    ]
    assert len(report["diagnostics"]) == 3  # no cascade: the broken sequence still resolves


def test_warnings_only_exit_3(shipped: Path) -> None:
    edit(
        shipped / "sequences/templates.yaml",
        "templates:\n",
        "templates:\n  - id: unused\n    subject: s\n    crm_email_id: '1'\n",
    )
    code, output = run("validate", "rules", "sequences")
    assert code == EXIT_WARNINGS, output
    assert "warning: /templates/0/id: template 'unused' is not used" in output


def test_github_format_prints_workflow_annotations(shipped: Path) -> None:
    edit(shipped / "rules/new-application.yaml", "candidate.first_name", "candidate.frist_name")
    code, output = run("validate", "--format", "github", "rules", "sequences")
    assert code == EXIT_ERRORS
    annotation = output.splitlines()[0]
    assert annotation.startswith("::error file=rules/new-application.yaml,line=18,col=32,title=")
    assert "did you mean 'candidate.first_name'?" in annotation


def test_missing_path_is_a_usage_error(shipped: Path) -> None:
    code, output = run("validate", "no-such-dir")
    assert code == EXIT_USAGE
    assert "no-such-dir:1:1: no such file or directory" in output


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--format", "xml"])
    assert exc.value.code == EXIT_USAGE


def test_schema_export_writes_every_file(tmp_path: Path) -> None:
    code, _ = run("schema", "--out", str(tmp_path / "out"))
    assert code == EXIT_OK
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.json"))
    assert Path("config.schema.json") in written
    assert Path("events/ats.application.created.schema.json") in written
    assert Path("actions/crm.send_email.schema.json") in written


def test_console_script_runs_in_a_real_subprocess(shipped: Path) -> None:
    script = Path(sys.executable).with_name("nurture")
    result = subprocess.run(
        [str(script), "validate", "rules", "sequences"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert "11 files: 11 OK, 0 FAILED" in result.stdout
