from __future__ import annotations

import pytest

from engine.config.schema import event_data_schema, step_context_schema
from engine.config.typecheck import PathChecker
from engine.expressions import SyntaxProblem, parse


def problems(text: str, event_type: str = "ats.interview.scheduled") -> list[str]:
    parsed = parse(text)
    assert not isinstance(parsed, SyntaxProblem)
    checker = PathChecker(event_data_schema(event_type), event_type)
    checker.check(parsed.parsed)
    return [p.path for p in checker.problems]


@pytest.mark.parametrize(
    "text",
    [
        "candidate.email",
        "interview.interviewers[0].email",
        "interview.interviewers[*].email",
        "interview.interviewers[?name == 'A'].email",
        "interview.interviewers[].name",
        "sort_by(interview.interviewers, &name)[0].email",
        "interview | start_at",
        "raw.anything.at.all",
        "{who: candidate.first_name, role: application.job.title}",
        "contains(candidate.tags, 'x') && !(candidate.do_not_contact)",
    ],
)
def test_valid_paths_pass(text: str) -> None:
    assert problems(text) == []


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("candidate.emial", ["candidate.emial"]),
        ("interview.interviewers[0].emial", ["interview.interviewers[].emial"]),
        ("interview.interviewers[*].nme", ["interview.interviewers[].nme"]),
        ("interview.interviewers[?nmae == 'A'].email", ["interview.interviewers[].nmae"]),
        ("sort_by(interview.interviewers, &nmae)", ["interview.interviewers[].nmae"]),
        ("interview | strat_at", ["interview.strat_at"]),
        ("feedback.id", ["feedback"]),
        ("candidate.email == null", ["null"]),
        ("candidate.tags.first", ["candidate.tags.first"]),
        ("lowr(candidate.email)", ["lowr"]),
    ],
)
def test_unknown_paths_are_reported(text: str, bad: list[str]) -> None:
    assert problems(text) == bad


def test_step_context_sees_matching_roles_but_not_the_event_envelope() -> None:
    parsed = parse("matching_roles[0].title")
    assert not isinstance(parsed, SyntaxProblem)
    checker = PathChecker(step_context_schema(), "the step context")
    checker.check(parsed.parsed)
    assert checker.problems == []
    parsed = parse("link.name")
    assert not isinstance(parsed, SyntaxProblem)
    checker.check(parsed.parsed)
    assert [p.path for p in checker.problems] == ["link"]


def test_wrong_arity_is_reported() -> None:
    assert problems("length(candidate.tags, candidate.email)") == ["length"]


def test_did_you_mean_names_the_full_path() -> None:
    parsed = parse("candidate.emial")
    assert not isinstance(parsed, SyntaxProblem)
    checker = PathChecker(event_data_schema("ats.application.created"), "events")
    checker.check(parsed.parsed)
    assert checker.problems[0].hint == "did you mean 'candidate.email'?"
    assert checker.problems[0].offset_in("candidate.emial") == 10


@pytest.mark.parametrize(
    "text",
    ["!candidate.do_not_contact", "candidate.email != `null` && !application.prospect"],
)
def test_negation_binds_tighter_than_the_dot_and_is_reported(text: str) -> None:
    """`!a.b` is `(!a).b`: always null, so a rule using it silently never fires."""
    parsed = parse(text)
    assert not isinstance(parsed, SyntaxProblem)
    checker = PathChecker(event_data_schema("ats.application.created"), "events")
    checker.check(parsed.parsed)
    assert len(checker.problems) == 1
    assert "always null" in checker.problems[0].message
    assert checker.problems[0].hint is not None and "!(a.b)" in checker.problems[0].hint


def test_parenthesised_negation_is_fine() -> None:
    assert problems("!(candidate.do_not_contact) && !(application.status == 'x')") == []
