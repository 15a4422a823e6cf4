from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import expressions
from engine.expressions import SyntaxProblem, parse, search

FROZEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return FROZEN


def run(text: str, data: object) -> object:
    compiled = parse(text)
    assert not isinstance(compiled, SyntaxProblem)
    return search(compiled, data, clock)


def test_now_comes_from_the_injected_clock() -> None:
    assert run("now()", {}) == "2026-11-26T12:00:00Z"


def test_days_since_counts_whole_days_on_the_injected_clock() -> None:
    assert run("days_since(t)", {"t": "2024-11-26T12:00:00Z"}) == 730
    assert run("days_since(t)", {"t": "2026-11-25T12:00:01+00:00"}) == 0
    assert run("days_since(t)", {"t": None}) is None


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ("lower(e)", {"e": "Ana@Example.COM"}, "ana@example.com"),
        ("upper(e)", {"e": "x"}, "X"),
        ("trim(e)", {"e": "  a  "}, "a"),
        ("lower(e)", {"e": None}, None),
    ],
)
def test_string_functions(text: str, data: object, expected: object) -> None:
    assert run(text, data) == expected


def test_bare_null_is_a_field_so_the_backtick_literal_is_needed() -> None:
    """Why `nurture validate` flags bare null: it silently compares with a missing field."""
    assert run("a == null", {"a": None, "null": 5}) is False
    assert run("a == `null`", {"a": None, "null": 5}) is True


@pytest.mark.parametrize(
    ("text", "offset"),
    [("a ==", 4), ("a.[", 3), ("a ! b", 2), ("a + b", 2)],
)
def test_syntax_errors_carry_their_offset(text: str, offset: int) -> None:
    problem = parse(text)
    assert isinstance(problem, SyntaxProblem)
    assert problem.offset == offset


def test_a_backtick_literal_that_is_not_json_is_refused_every_time() -> None:
    """JMESPath reads `abc` as the string 'abc' with a deprecation warning that its parser's
    cache shows once: refusing it with its place is the same answer on every load."""
    for _ in range(2):
        problem = parse("stage == `Interview Scheduled`")
        assert problem == SyntaxProblem(
            9,
            "`Interview Scheduled` is not JSON: write a string as 'Interview Scheduled' or "
            '`"Interview Scheduled"`',
        )
    for fine in ('stage == `"Interview Scheduled"`', "n > `0`", "x == `null`", "s == 'raw `'"):
        assert not isinstance(parse(fine), SyntaxProblem), fine


def test_function_tables_do_not_overlap() -> None:
    assert not set(expressions.BUILTIN_FUNCTIONS) & set(expressions.CUSTOM_FUNCTIONS)
