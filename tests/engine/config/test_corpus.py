"""Table-driven corpus of config files (Prometheus ``testdata`` style).

Every ``*.bad.yaml`` file (or ``*.bad/`` directory) under ``tests/data`` holds ONE kind of
mistake; the table below states, for each, the exact diagnostics ``nurture validate`` must
report: ``(line, column, JSON pointer, message substring, hint substring or None)``. A case
must produce exactly those errors, nothing else (and no warnings). Every ``*.good.yaml`` file
(or ``*.good/`` directory) must load with zero errors and zero warnings.

A directory case is loaded as a whole; when it holds a ``nurture.yaml``, that file is passed as
the daemon config. Cases listed in ``KNOWN_BUGS`` encode the *correct* expectation and are
strict xfails until the validator is fixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from engine.config.daemon import DaemonConfig
from engine.config.diagnostics import Diagnostic
from engine.config.load import DAEMON_FILE_NAMES, LoadResult, load_config
from engine.config.loader import parse_file
from engine.config.model import ConfigFile
from engine.config.schema import config_validator, daemon_validator

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data"

Expected = tuple[int, int, str, str, str | None]
"""(line, column, pointer, message substring, hint substring or None)."""

BAD: dict[str, list[Expected]] = {
    # -- YAML level --------------------------------------------------------------------------
    "rules/yaml-syntax-error.bad.yaml": [
        (4, 22, "", "mapping values are not allowed", "quote a ': '"),
    ],
    "rules/broken-indentation.bad.yaml": [
        (6, 4, "", "YAML syntax error", "indented differently from its siblings"),
    ],
    "rules/tab-indentation.bad.yaml": [
        (6, 1, "", "YAML syntax error", "never tabs"),
    ],
    "rules/duplicate-key.bad.yaml": [
        (12, 5, "/rules/0/condition", "duplicate key 'condition' (first defined at line 6)",
         "remove or rename one"),
    ],
    "rules/multi-document.bad.yaml": [
        (11, 1, "", "expected a single document", "one file holds one document"),
    ],
    "rules/python-tag.bad.yaml": [
        (6, 16, "/rules/0/condition",
         "YAML tag '!!python/object/apply:os.system' is not allowed", "plain data only"),
    ],
    "rules/python-tag-on-string.bad.yaml": [
        (4, 18, "/rules/0/description",
         "YAML tag '!!python/object/apply:os.system' is not allowed", "plain data only"),
    ],
    "rules/billion-laughs.bad.yaml": [
        (2, 8, "", "the document expands to more than 100000 values", "aliases (*name)"),
    ],
    "rules/nesting-too-deep.bad.yaml": [
        (4, 80, "", "nesting deeper than 64 levels", "flatten it"),
    ],
    # -- JSON Schema level -------------------------------------------------------------------
    "rules/unknown-top-level-key.bad.yaml": [
        (2, 1, "/rule", "unknown key 'rule'", "did you mean 'rules'?"),
    ],
    "rules/unknown-param-key.bad.yaml": [
        (10, 11, "/rules/0/actions/0/params/visiblity", "unknown key 'visiblity'",
         "did you mean 'visibility'?"),
    ],
    "rules/unknown-action-key.bad.yaml": [
        (8, 9, "/rules/0/actions/0/parms", "unknown key 'parms'", "did you mean 'params'?"),
    ],
    "rules/unknown-trigger.bad.yaml": [
        (5, 14, "/rules/0/trigger", "unknown event type 'ats.application.create'",
         "did you mean 'ats.application.created'?"),
    ],
    "rules/unknown-action-type.bad.yaml": [
        (7, 17, "/rules/0/actions/0/action", "unknown action type 'crm.upsert_contacts'",
         "did you mean 'crm.upsert_contact'?"),
    ],
    "rules/missing-actions.bad.yaml": [
        (3, 5, "/rules/0", "missing required key 'actions'", None),
    ],
    "rules/wrong-type.bad.yaml": [
        (6, 14, "/rules/0/enabled", "wrong type: found the string 'off'", None),
    ],
    "rules/unsupported-version.bad.yaml": [
        (1, 10, "/version", "unsupported value 2", None),
    ],
    "rules/invalid-id.bad.yaml": [
        (3, 9, "/rules/0/id", "'Hired_Tag' is not valid here", None),
    ],
    "sequences/invalid-duration.bad.yaml": [
        (14, 13, "/sequences/0/steps/0/at", "'3 days' is not valid here", None),
    ],
    # -- expressions -------------------------------------------------------------------------
    "rules/jmespath-syntax.bad.yaml": [
        (6, 62, "/rules/0/condition", "invalid JMESPath: unexpected '&&'", "at character 46"),
    ],
    "rules/misspelled-condition-field.bad.yaml": [
        (6, 27, "/rules/0/condition", "unknown field 'candidate.emial'",
         "did you mean 'candidate.email'?"),
    ],
    "rules/misspelled-mapping-field.bad.yaml": [
        (10, 32, "/rules/0/actions/0/fields/firstname", "unknown field 'candidate.frist_name'",
         "did you mean 'candidate.first_name'?"),
    ],
    "rules/quoted-escape-column.bad.yaml": [
        (6, 66, "/rules/0/condition", "unknown field 'candidate.emial'",
         "did you mean 'candidate.email'?"),
    ],
    "rules/repeated-field-name-column.bad.yaml": [
        (6, 61, "/rules/0/condition", "unknown field 'candidate.status'", None),
    ],
    "rules/negation-binds-tighter.bad.yaml": [
        (6, 57, "/rules/0/condition", "reads a field of a true/false value", "write !(a.b)"),
    ],
    "rules/bare-null.bad.yaml": [
        (6, 36, "/rules/0/condition", "unknown field 'null'", "write `null` in backticks"),
    ],
    "rules/unknown-function.bad.yaml": [
        (6, 17, "/rules/0/condition", "unknown function lowercase()", "did you mean 'lower'?"),
    ],
    "rules/wrong-arity.bad.yaml": [
        (6, 17, "/rules/0/condition", "contains() takes 2 argument(s), got 1", None),
    ],
    "sequences/step-field-not-in-context.bad.yaml": [
        (15, 21, "/sequences/0/steps/0/condition", "unknown field 'feedback' in the step context",
         None),
    ],
    "sequences/exit-on-misspelled-field.bad.yaml": [
        (15, 26, "/sequences/0/exit_on/1/condition", "unknown field 'link.nmae'",
         "did you mean 'link.name'?"),
    ],
    # -- references and actions --------------------------------------------------------------
    "rules/unknown-sequence.bad.yaml": [
        (15, 28, "/rules/1/actions/0/params/sequence", "unknown sequence 'rejected-folow-up'",
         "did you mean 'rejected-follow-up'?"),
    ],
    "rules/unknown-start-step.bad.yaml": [
        (8, 63, "/rules/0/actions/0/params/start_at_step",
         "sequence 'rejected-follow-up' has no step 'week-two'", "did you mean 'week-2'?"),
    ],
    "rules/unknown-template.bad.yaml": [
        (18, 28, "/rules/1/actions/0/params/template", "unknown template 'aplication-received'",
         "did you mean 'application-received'?"),
    ],
    "rules/body-placeholder-not-a-variable.bad.yaml": [
        (15, 52, "/templates/0/body", "body uses {role}, which is not a variable", None),
    ],
    "rules/unmapped-template-variable.bad.yaml": [
        (9, 9, "/rules/0/actions/0/fields",
         "template 'application-received' needs the variable 'role'", None),
    ],
    "rules/missing-required-field.bad.yaml": [
        (7, 9, "/rules/0/actions/0", "crm.upsert_contact needs the field 'email' mapped",
         "email: candidate.email"),
    ],
    "rules/closed-action-extra-field.bad.yaml": [
        (11, 11, "/rules/0/actions/0/fields/email", "ats.add_tag has no field 'email'", None),
    ],
    "rules/placeholder-without-field.bad.yaml": [
        (9, 48, "/rules/0/actions/0/params/text", "placeholder {role} has no field", None),
    ],
    "rules/duplicate-rule-id.bad": [
        (3, 9, "/rules/0/id", "duplicate rule id 'tag-candidate'",
         "first defined at tests/data/rules/duplicate-rule-id.bad/hired.yaml:3"),
    ],
    # -- sequences ---------------------------------------------------------------------------
    "sequences/duplicate-step-id.bad.yaml": [
        (20, 13, "/sequences/0/steps/1/id", "duplicate step id 'week-1'", "each must be unique"),
    ],
    "sequences/negative-repeat.bad.yaml": [
        (15, 25, "/sequences/0/steps/0/repeat/every", "repeat interval '-30d' is not positive",
         "zero or negative"),
    ],
    "sequences/negative-offset-without-anchor.bad.yaml": [
        (14, 13, "/sequences/0/steps/0/at", "negative offset '-24h' without an anchor",
         "offsets count from enrolment"),
    ],
    "sequences/anchor-not-a-date.bad.yaml": [
        (13, 13, "/sequences/0/anchor",
         "anchor 'interview.id' is not a date in ats.interview.scheduled events",
         "the rules that enrol"),
    ],
    "sequences/otherwise-without-condition.bad.yaml": [
        (20, 9, "/sequences/0/steps/0/otherwise", "'otherwise' without a 'condition'", None),
    ],
    "sequences/send-window-start-equals-end.bad.yaml": [
        (12, 73, "/sequences/0/send_window/end", "send window starts and ends at 09:00",
         "wraps midnight"),
    ],
    # -- daemon config (nurture.yaml) --------------------------------------------------------
    "daemon/secret-value-key.bad": [
        (13, 5, "/vendors/hubspot/client_secret", "unknown key 'client_secret'",
         "secrets never go into files"),
    ],
    "daemon/unknown-vendor-key.bad": [
        (13, 5, "/vendors/hubspot/poll_interval", "unknown key 'poll_interval'",
         "did you mean 'poll_every'?"),
    ],
    "daemon/lowercase-env-name.bad": [
        (11, 16, "/vendors/hubspot/token_env", "'hubspot_token' is not valid here", None),
    ],
    "daemon/unknown-time-zone.bad": [
        (19, 22, "/guardrails/default_time_zone", "unknown time zone 'Europe/Munich'", None),
    ],
    "daemon/acceptor-on-the-daemons-port.bad": [
        (6, 22, "/server/acceptor/listen", "the acceptor's port is the daemon's", None),
    ],
    "daemon/smtp-mail-without-relay.bad": [
        (19, 3, "/mail", "mail.via is 'smtp' but mail has no 'smtp' relay", None),
    ],
    "daemon/smtp-template-without-body.bad": [
        (13, 9, "/templates/0/id",
         "template 'application-received' has no body, but mail goes via smtp", "crm_email_id"),
    ],
}  # fmt: skip

SCHEMA_LEVEL: frozenset[str] = frozenset(
    {
        "rules/unknown-top-level-key.bad.yaml",
        "rules/unknown-param-key.bad.yaml",
        "rules/unknown-action-key.bad.yaml",
        "rules/unknown-trigger.bad.yaml",
        "rules/unknown-action-type.bad.yaml",
        "rules/missing-actions.bad.yaml",
        "rules/wrong-type.bad.yaml",
        "rules/unsupported-version.bad.yaml",
        "rules/invalid-id.bad.yaml",
        "sequences/invalid-duration.bad.yaml",
        "daemon/secret-value-key.bad",
        "daemon/unknown-vendor-key.bad",
        "daemon/lowercase-env-name.bad",
    }
)
"""Cases whose one error comes from the JSON Schema (unknown key, type, enum, pattern, ...)."""

KNOWN_BUGS: dict[str, str] = {}

MODEL_DRIFT: dict[str, str] = {}
"""Schema-level cases the models wrongly accept (strict xfails of the model test)."""


def _is_case(path: Path, kind: str) -> bool:
    return path.name.endswith(f".{kind}.yaml") or (path.is_dir() and path.suffix == f".{kind}")


def _cases_on_disk(kind: str) -> list[str]:
    found = (
        p.relative_to(DATA).as_posix()
        for p in DATA.rglob(f"*.{kind}*")
        if _is_case(p, kind) and not any(parent.suffix == f".{kind}" for parent in p.parents)
    )
    return sorted(found)


def _stem(case: str) -> str:
    name = case.rsplit("/", 1)[-1]
    for suffix in (".bad.yaml", ".good.yaml", ".bad", ".good"):
        name = name.removesuffix(suffix)
    return name


def _load(case: str) -> LoadResult:
    path = DATA / case
    daemon = path / "nurture.yaml"
    return load_config([path], daemon_path=daemon if daemon.is_file() else None)


def _relative(diagnostic: Diagnostic) -> Diagnostic:
    """The diagnostic with its file relative to the repository root (cwd independent)."""
    file = Path(diagnostic.file)
    shown = file.resolve().relative_to(REPO).as_posix() if file.is_absolute() else file
    return Diagnostic(
        str(shown),
        diagnostic.line,
        diagnostic.column,
        diagnostic.pointer,
        diagnostic.message,
        diagnostic.expected,
        diagnostic.hint,
        diagnostic.severity,
    )


def _matches(diagnostic: Diagnostic, expected: Expected) -> bool:
    line, column, pointer, message, hint = expected
    return (
        diagnostic.severity == "error"
        and (diagnostic.line, diagnostic.column, diagnostic.pointer) == (line, column, pointer)
        and message in diagnostic.message
        and (hint is None or (diagnostic.hint is not None and hint in diagnostic.hint))
    )


def _bad_params(cases: list[str]) -> list[Any]:
    params = []
    for case in cases:
        marks = []
        if case in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(reason=KNOWN_BUGS[case], strict=True))
        params.append(pytest.param(case, id=_stem(case), marks=marks))
    return params


def _files_of(case: str) -> list[Path]:
    path = DATA / case
    return sorted(path.glob("*.yaml")) if path.is_dir() else [path]


def _model_and_validator(file: Path) -> tuple[type[BaseModel], Any]:
    if file.name in DAEMON_FILE_NAMES:
        return DaemonConfig, daemon_validator()
    return ConfigFile, config_validator()


GOOD = _cases_on_disk("good")


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Diagnostics name files relative to the working directory; pin it."""
    monkeypatch.chdir(REPO)


def test_every_bad_file_has_an_expectation() -> None:
    assert _cases_on_disk("bad") == sorted(BAD)
    assert set(SCHEMA_LEVEL) <= set(BAD)
    assert set(KNOWN_BUGS) <= set(BAD)
    assert set(MODEL_DRIFT) <= SCHEMA_LEVEL


def test_the_corpus_has_good_files() -> None:
    assert len(GOOD) >= 4


@pytest.mark.parametrize("case", _bad_params(sorted(BAD)))
def test_bad_file_reports_exact_location_and_message(case: str) -> None:
    result = _load(case)
    actual = [_relative(d) for d in result.diagnostics]
    unmatched = list(actual)
    for expected in BAD[case]:
        hits = [d for d in actual if _matches(d, expected)]
        assert len(hits) == 1, f"{expected} matched {len(hits)} of:\n{_show(actual)}"
        unmatched.remove(hits[0])
    assert unmatched == [], f"unexpected diagnostics:\n{_show(unmatched)}"
    assert result.config is None


def _show(diagnostics: list[Diagnostic]) -> str:
    return "\n".join(d.format_text() for d in diagnostics) or "(none)"


@pytest.mark.parametrize("case", [pytest.param(c, id=_stem(c)) for c in GOOD])
def test_good_file_is_valid(case: str) -> None:
    result = _load(case)
    assert result.errors == [], _show(result.errors)
    assert result.warnings == [], _show(result.warnings)
    assert result.config is not None


def test_shipped_config_is_valid() -> None:
    result = load_config(["rules", "sequences"], daemon_path="nurture.yaml")
    assert result.errors == [], _show(result.errors)
    assert result.warnings == [], _show(result.warnings)
    assert result.config is not None and result.config.daemon is not None


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=f"bad-{_stem(c)}",
            marks=[pytest.mark.xfail(reason=MODEL_DRIFT[c], strict=True)]
            if c in MODEL_DRIFT
            else [],
        )
        for c in sorted(SCHEMA_LEVEL)
    ]
    + [pytest.param(c, id=f"good-{_stem(c)}") for c in GOOD],
)
def test_every_schema_level_bad_file_is_also_rejected_by_the_models(case: str) -> None:
    bad = case in SCHEMA_LEVEL
    rejected = 0
    for file in _files_of(case):
        document, problems = parse_file(file)
        assert document is not None and problems == [], problems
        model, validator = _model_and_validator(file)
        schema_errors = list(validator.iter_errors(document.data))
        if bad:
            if schema_errors:
                rejected += 1
                with pytest.raises(ValidationError):
                    model.model_validate(document.data)
        else:
            assert schema_errors == [], [e.message for e in schema_errors]
            model.model_validate(document.data)
    assert rejected == (1 if bad else 0)
