"""engine.compiled must give exactly the interpreter's answers (engine.expressions.search).

The oracle is the jmespath interpreter with our custom functions on the same clock. Results are
compared by ``repr`` as well as ``==``, so that ``1``, ``1.0`` and ``true`` (equal in Python)
still count as different answers; errors must be of the same exception class.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jmespath import exceptions as jp_exceptions
from jmespath import visitor as jp_visitor
from jmespath.parser import ParsedResult

from engine.compiled import Compiled, Compiler, compile_expression, truthy
from engine.expressions import SyntaxProblem, parse, search
from tests.bench import bench_evaluate

FROZEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return FROZEN


# -- the oracle -------------------------------------------------------------------------------

Outcome = tuple[str, Any]


def _outcome(evaluate: Callable[[], Any]) -> Outcome:
    """("value", repr) or ("error", exception class): what both evaluators must agree on."""
    try:
        value = evaluate()
    except Exception as exc:  # the class is the answer being compared
        return ("error", type(exc))
    return ("value", repr(value))


def _parsed(text: str) -> ParsedResult:
    parsed = parse(text)
    assert not isinstance(parsed, SyntaxProblem), f"{text!r}: {parsed}"
    return parsed


def assert_same(text: str, data: Any, compiler: Compiler | None = None) -> Outcome:
    """Compile ``text``, evaluate both ways on copies of ``data``, and compare the outcomes."""
    parsed = _parsed(text)
    compiled = (compiler or Compiler(clock)).compile(parsed)
    expected = _outcome(lambda: search(parsed, copy.deepcopy(data), clock))
    actual = _outcome(lambda: compiled(copy.deepcopy(data)))
    assert actual == expected, f"{text!r}: compiled {actual} but interpreter {expected}"
    return actual


# -- the fixture document: a realistic application event plus edge-case corners --------------

DOC: dict[str, Any] = {
    "candidate": {
        "id": "cand-1",
        "first_name": "Ana",
        "last_name": "Lopez",
        "email": "Ana@Example.com",
        "emails": ["Ana@Example.com", "ana@home.example"],
        "phone": None,
        "time_zone": "Europe/Berlin",
        "tags": ["Referral", "Do Not Contact"],
        "can_email": True,
        "do_not_contact": False,
        "segment": "active",
        "url": "https://ats.example/candidates/1",
        "created_at": "2023-05-01T09:00:00Z",
        "last_activity_at": "2024-01-02T03:04:05Z",
        "last_contacted_at": None,
    },
    "application": {
        "id": "app-1",
        "status": "active",
        "prospect": False,
        "job": {
            "id": "job-1",
            "title": "Backend Engineer",
            "department": "Engineering",
            "location": "Berlin",
            "status": "open",
        },
        "stage": {"id": "s-7", "name": "Offer"},
        "previous_stage": {"id": "s-6", "name": "Final Round"},
        "recruiter": {"id": "u-1", "name": "Rita", "email": "rita@corp.example"},
        "source": "Referral",
        "applied_at": "2024-03-01T10:00:00Z",
        "rejection_reason": {"name": "Not Selected", "type": "We rejected them"},
    },
    "interview": {
        "id": "int-1",
        "start_at": "2026-12-01T10:00:00Z",
        "end_at": "2026-12-01T11:00:00Z",
        "interviewers": [
            {"name": "Bo", "email": "bo@corp.example"},
            {"name": "Cy", "email": None},
            {"name": "Di"},
        ],
    },
    "matching_roles": [
        {"id": "job-2", "title": "Site Reliability Engineer", "department": "Engineering"},
        {"id": "job-3", "title": "Data Scientist", "department": "Data"},
    ],
    "link": {"name": "keep-me-posted", "clicked_at": "2026-11-20T08:00:00Z"},
    "numbers": [3, -1, 2.5, 0, 10],
    "strings": ["b", "a", "c"],
    "mixed": [1, "a", None, True, [2, 3], {"k": 1}, [], {}, "", 0, False],
    "nested": [[1, 2], [3, [4, 5]], 6, [], None],
    "empties": {
        "s": "",
        "l": [],
        "o": {},
        "n": None,
        "f": False,
        "t": True,
        "z": 0,
        "zf": 0.0,
        "one": 1,
        "onef": 1.0,
        "pad": "  padded  ",
    },
    "objects": {"x": {"v": 1}, "y": {"v": 2}, "z": {"w": 3}},
    "people": [
        {"name": "Bo", "age": 30, "tags": ["a"]},
        {"name": "Al", "age": 25, "tags": []},
        {"name": "Cy", "age": 35, "tags": ["a", "b"]},
        {"name": "Ed", "age": None},
    ],
    "weird key": {"with-dash": 1},
    "null": 5,
    "true": "a field named true",
}

SHIPPED_CONDITIONS = [
    "candidate != `null`",
    "candidate.email != `null`",
    "candidate.email != `null` && application.status == 'active'",
    "candidate.email != `null` && !application.prospect"
    " && !candidate.do_not_contact && candidate.segment != 'archived'",
    "candidate.email != `null` && application.prospect && !candidate.do_not_contact",
    "link.name == 'keep-me-posted'",
    "application.rejection_reason.name == 'Not Selected'"
    ' && contains(`["Final Round", "Offer"]`, application.stage.name)'
    " && candidate.email != `null` && !candidate.do_not_contact",
    "application.stage.name == 'Interview Scheduled' && candidate.email != `null`",
    "candidate.email != `null`"
    " && (candidate.do_not_contact || contains(candidate.tags, 'Do Not Contact'))",
    "candidate.email != `null` && (candidate.segment == 'archived'"
    " || (days_since(candidate.last_activity_at) > `730`"
    " && candidate.last_contacted_at == `null`))",
    "candidate.do_not_contact || contains(candidate.tags, 'Do Not Contact')",
    "length(matching_roles) > `0`",
]
SHIPPED_MAPPINGS = [
    "join(' ', [candidate.first_name, candidate.last_name])",
    "candidate.url",
    "application.job.department",
    "interview.interviewers[0].name",
    "interview.interviewers[*].email",
    "interview.start_at",
    "application.recruiter.email",
    "link.clicked_at",
]

EXPRESSIONS = [
    # fields and sub-expressions
    "candidate.email",
    "candidate.missing",
    "candidate.email.foo",
    "numbers.foo",
    "application.job.title",
    "application.job.location.x.y",
    "missing.deeply.nested.path.here",
    '"weird key"."with-dash"',
    "null",
    "true",
    "@",
    "@.candidate.id",
    "empties.f.x",
    # indexes
    "numbers[0]",
    "numbers[-1]",
    "numbers[10]",
    "numbers[-10]",
    "candidate.email[0]",
    "candidate[0]",
    "nested[1][1][0]",
    "people[1].tags[0]",
    # slices
    "numbers[1:3]",
    "numbers[::2]",
    "numbers[::-1]",
    "numbers[-2:]",
    "numbers[:-2]",
    "numbers[5:1:-2]",
    "numbers[10:]",
    "numbers[-1:-4:-1]",
    "candidate.email[0:2]",
    "people[:2].name",
    "numbers[0:4:0]",
    # list, object and flatten projections
    "people[*].name",
    "people[*].age",
    "people[*].tags[0]",
    "people[*].tags[*]",
    "candidate[*]",
    "mixed[*]",
    "objects.*.v",
    "objects.*",
    "numbers.*",
    "*.id",
    "nested[]",
    "nested[][]",
    "people[].tags[]",
    "candidate.tags[]",
    "candidate.email[]",
    "people[*].name | [0]",
    "people[*].name[0]",
    "people[*] | length(@)",
    "people[*].tags | [0]",
    # filters
    "people[?age > `28`].name",
    "people[?age >= `30`].name",
    "people[?age < `30`]",
    "people[?age <= `25`].name",
    "people[?age == `30`].name",
    "people[?age != `30`].name",
    "people[?tags].name",
    "people[?!tags].name",
    "people[?contains(tags, 'a')].name",
    "mixed[?@]",
    "mixed[?!@]",
    "numbers[?@ > `1`]",
    "strings[?@ > 'a']",
    "candidate[?a]",
    "matching_roles[?department == 'Engineering'].title | [0]",
    "people[?age > `28`] | [0].name",
    # comparators
    "candidate.email == 'Ana@Example.com'",
    "`1` == `1.0`",
    "empties.one == `true`",
    "empties.onef == `true`",
    "empties.z == `false`",
    "empties.zf == `false`",
    "empties.t == `true`",
    "`[1, 2]` == `[1, 2]`",
    '`{"a": 1}` == `{"a": 1}`',
    "`[1]` == `[true]`",
    "candidate.missing == `null`",
    "`null` == candidate.missing",
    "'Ana' != candidate.first_name",
    "`2` > `1`",
    "'b' > 'a'",
    "`true` > `false`",
    "candidate.tags > `1`",
    "`1` < 'a'",
    "empties.n < `1`",
    "`1.5` >= `1`",
    "numbers == numbers",
    # and, or, not
    "candidate.email && candidate.id",
    "empties.s && candidate.id",
    "empties.l || empties.o || 'fallback'",
    "empties.z || 'x'",
    "empties.zf && 'x'",
    "!empties.z",
    "!empties.zf",
    "!empties.s",
    "!empties.o",
    "!candidate.email",
    "!missing",
    "!empties.one",
    "!(empties.z)",
    "!(empties.one)",
    "!(numbers[3])",
    "empties.f || empties.n",
    "(empties.t || empties.f) && !empties.f",
    # multi-select
    "[candidate.first_name, candidate.last_name]",
    "{name: candidate.first_name, job: application.job.title}",
    "missing.[a, b]",
    "missing.{a: b}",
    "empties.f.[a]",
    "empties.z.{a: b}",
    "people[*].[name, age]",
    "people[*].{n: name}",
    "{a: candidate.id, a: application.id}",
    # literals
    '`"x"`',
    "'raw string'",
    "''",
    '`{"a": [1, 2]}`',
    "`[]`",
    "`3.5`",
    "`null`",
    # functions: built-ins
    "length(candidate.tags)",
    "length(candidate.email)",
    "length(objects)",
    "length(`1`)",
    "contains(candidate.tags, 'Do Not Contact')",
    "contains(candidate.email, 'Example')",
    "contains(`1`, 'a')",
    "contains(candidate.email, `1`)",
    "starts_with(candidate.email, 'Ana')",
    "ends_with(candidate.email, '.com')",
    "starts_with(missing, 'a')",
    "sort(numbers)",
    "sort(strings)",
    "sort(mixed)",
    "sort_by(people[?age], &age)[*].name",
    "sort_by(people, &name)[*].name",
    "sort_by(people, &age)",
    "sort_by(`[]`, &age)",
    "max_by(people[?age], &age).name",
    "min_by(people[?age], &age).name",
    "min_by(people, &age)",
    "map(&name, people)",
    "map(&tags[0], people)",
    "keys(objects)",
    "values(objects)",
    "keys(numbers)",
    "not_null(missing, empties.n, candidate.id)",
    "not_null()",
    "to_string(numbers)",
    "to_string('x')",
    "to_number('12')",
    "to_number('1.5')",
    "to_number('x')",
    "to_array(candidate.id)",
    "to_array(numbers)",
    "type(empties.z)",
    "type(empties.t)",
    "type(missing)",
    "join(', ', people[*].name)",
    "join(', ', numbers)",
    "abs(`-3`)",
    "floor(`1.5`)",
    "ceil(`1.5`)",
    "sum(numbers)",
    "avg(numbers)",
    "max(numbers)",
    "min(strings)",
    "reverse(strings)",
    "reverse(candidate.email)",
    "merge(objects.x, objects.z)",
    "unknown_function(candidate)",
    "length(candidate.tags, candidate.tags)",
    "length(&name)",
    # functions: ours
    "lower(candidate.email)",
    "upper(candidate.first_name)",
    "trim(empties.pad)",
    "lower(missing)",
    "lower(`1`)",
    "days_since(candidate.last_activity_at)",
    "days_since(missing)",
    "days_since(`1`)",
    "now()",
    "now(`1`)",
    "lower(candidate.email) == 'ana@example.com'",
    *SHIPPED_CONDITIONS,
    *SHIPPED_MAPPINGS,
]


def test_the_table_is_large_and_has_no_duplicates() -> None:
    assert len(EXPRESSIONS) >= 80
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS)


def _node_types(node: Any) -> Iterator[str]:
    if isinstance(node, dict) and "type" in node:
        yield node["type"]
        for child in node.get("children", []):
            yield from _node_types(child)


def test_the_table_covers_every_node_type() -> None:
    seen = {kind for text in EXPRESSIONS for kind in _node_types(_parsed(text).parsed)}
    assert seen >= set(Compiler._BUILDERS)


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_compiled_matches_the_interpreter(text: str) -> None:
    assert_same(text, DOC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("candidate.email", "Ana@Example.com"),
        ("numbers[-1]", 10),
        ("numbers[::-1]", [10, 0, 2.5, -1, 3]),
        ("people[?age > `28`].name", ["Bo", "Cy"]),
        ("people[*].name | [0]", "Bo"),
        ("`1` == `1.0`", True),
        ("empties.one == `true`", False),
        ("empties.z || 'x'", 0),
        ("!(empties.z)", False),
        # `!` binds tighter than `.` in jmespath.py: `!a.b` is `(!a).b`, a field of a boolean,
        # so null. The shipped conditions written `!application.prospect` get null there too.
        ("!empties.z", None),
        (SHIPPED_CONDITIONS[3], None),
        ("candidate.email != `null` && !(application.prospect)", True),
        ("`true` > `false`", None),
        ("missing.[a, b]", None),
        ("mixed[*]", [1, "a", True, [2, 3], {"k": 1}, [], {}, "", 0, False]),
        ("sort_by(people[?age], &age)[*].name", ["Al", "Bo", "Cy"]),
        (SHIPPED_CONDITIONS[6], None),  # `!candidate.do_not_contact` again
        (SHIPPED_CONDITIONS[8], True),
        (SHIPPED_CONDITIONS[9], True),  # no activity for more than 730 days, never contacted
    ],
)
def test_known_answers(text: str, expected: Any) -> None:
    """A few hand-checked answers, so the comparison is not only compiled-vs-interpreter."""
    result = compile_expression(text, clock)(DOC)
    assert repr(result) == repr(expected)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("length(`1`)", jp_exceptions.JMESPathTypeError),
        ("unknown_function(candidate)", jp_exceptions.UnknownFunctionError),
        ("length(candidate.tags, candidate.tags)", jp_exceptions.ArityError),
        ("not_null()", jp_exceptions.VariadictArityError),
        ("sort_by(people, &age)", jp_exceptions.JMESPathTypeError),
        ("lower(`1`)", jp_exceptions.JMESPathTypeError),
        ("`1` < 'a'", TypeError),
        ("numbers[0:4:0]", ValueError),
    ],
)
def test_errors_are_the_interpreters(text: str, error: type[Exception]) -> None:
    assert assert_same(text, DOC) == ("error", error)


def _variants() -> Iterator[tuple[str, Any]]:
    """The fixture bent the ways the shipped conditions care about."""
    yield "fixture", DOC
    changes: list[tuple[str, tuple[str, ...], Any]] = [
        ("no candidate", ("candidate",), None),
        ("no email", ("candidate", "email"), None),
        ("prospect", ("application", "prospect"), True),
        ("do not contact", ("candidate", "do_not_contact"), True),
        ("archived", ("candidate", "segment"), "archived"),
        ("untagged", ("candidate", "tags"), []),
        ("recent activity", ("candidate", "last_activity_at"), "2026-11-01T00:00:00Z"),
        ("contacted", ("candidate", "last_contacted_at"), "2025-01-01T00:00:00Z"),
        ("no activity", ("candidate", "last_activity_at"), None),
        ("interview stage", ("application", "stage"), {"name": "Interview Scheduled"}),
        ("no roles", ("matching_roles",), []),
        ("other link", ("link", "name"), "unsubscribe"),
        ("bad date", ("candidate", "last_activity_at"), "yesterday"),
    ]
    for name, path, value in changes:
        data = copy.deepcopy(DOC)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        yield name, data
    yield "empty data", {}
    yield "data is null", None


@pytest.mark.parametrize("text", SHIPPED_CONDITIONS + SHIPPED_MAPPINGS)
@pytest.mark.parametrize(("variant", "data"), list(_variants()))
def test_shipped_expressions_on_variants(text: str, variant: str, data: Any) -> None:
    assert_same(text, data)


# -- truthiness and the public API --------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, False, True, 0, 0.0, 1, -1.5, "", " ", "a", [], [0], {}, {"a": None}, [None], [[]]],
)
def test_truthy_is_the_interpreters(value: Any) -> None:
    assert truthy(value) is jp_visitor.TreeInterpreter()._is_true(value)


def test_compile_accepts_text_parsed_results_and_bare_ast_nodes() -> None:
    text = "application.stage.name"
    parsed = _parsed(text)
    compiler = Compiler(clock)
    for compiled in (compiler.compile(text), compiler.compile(parsed)):
        assert isinstance(compiled, Compiled)
        assert compiled.expression == text
        assert compiled(DOC) == compiled.function(DOC) == "Offer"
    bare = compiler.compile(parsed.parsed)
    assert bare.expression is None
    assert bare(DOC) == "Offer"
    assert repr(compiler.compile(text)) == "Compiled('application.stage.name')"


def test_syntax_errors_raise_the_parsers_exception() -> None:
    with pytest.raises(jp_exceptions.ParseError):
        compile_expression("a ==", clock)


def test_literals_are_the_asts_objects_as_in_the_interpreter() -> None:
    parsed = _parsed("`[1, 2]`")
    compiled = compile_expression(parsed, clock)
    assert compiled({}) is compiled({}) is search(parsed, {}, clock)


def test_an_unknown_node_type_falls_back_to_the_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a builder for filters and functions, those subtrees run in the interpreter."""
    monkeypatch.delitem(Compiler._BUILDERS, "filter_projection")
    monkeypatch.delitem(Compiler._BUILDERS, "function_expression")
    for text in [
        "people[?age > `28`].name",
        "people[?contains(tags, 'a')] | [0].name",
        "sort_by(people[?age], &age)[*].name",
        "days_since(candidate.last_activity_at)",
        "length(`1`)",
    ]:
        assert_same(text, DOC)


def test_a_node_type_nobody_knows_fails_like_the_interpreter() -> None:
    node = {"type": "subexpression", "children": [{"type": "mystery", "children": []}]}
    compiled = Compiler(clock).compile(node)
    expected = _outcome(lambda: jp_visitor.TreeInterpreter().visit(node, DOC))
    assert expected == ("error", NotImplementedError)
    assert _outcome(lambda: compiled(DOC)) == expected


# -- the custom functions and the injected clock --------------------------------------------


def test_custom_functions_use_the_injected_clock() -> None:
    compiler = Compiler(clock)
    assert compiler.compile("now()")({}) == "2026-11-26T12:00:00Z"
    since = compiler.compile("days_since(t)")
    assert since({"t": "2024-11-26T12:00:00Z"}) == 730
    assert since({"t": "2026-11-25T12:00:01+00:00"}) == 0
    assert since({"t": None}) is None


def test_the_clock_is_read_at_evaluation_time_not_at_compile_time() -> None:
    moments = [FROZEN]
    compiled = compile_expression("[now(), days_since(t)]", lambda: moments[-1])
    data = {"t": "2026-11-26T12:00:00Z"}
    assert compiled(data) == ["2026-11-26T12:00:00Z", 0]
    moments.append(FROZEN + timedelta(days=3))
    assert compiled(data) == ["2026-11-29T12:00:00Z", 3]
    assert compiled(data) == search(_parsed("[now(), days_since(t)]"), data, lambda: moments[-1])


# -- differential testing on random documents and expressions ------------------------------

KEYS = ("a", "b", "c", "d")
_fields = st.sampled_from(KEYS)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([0.0, 1.0, 1.5, -2.5]),
    st.sampled_from(["", "a", "b", "ab", "Ba", " a ", "2024-01-02T00:00:00Z"]),
)
# Objects over the same few keys the expressions use, so most paths find something.
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_fields, inner, min_size=1, max_size=3),
        st.lists(st.dictionaries(_fields, inner, min_size=2, max_size=3), max_size=3),
    ),
    max_leaves=8,
)
documents = st.fixed_dictionaries({key: _json for key in KEYS})

_LITERALS = [
    "`null`",
    "`true`",
    "`false`",
    "`0`",
    "`1`",
    "`1.0`",
    "`2`",
    "`-1`",
    '`"a"`',
    "'a'",
    "''",
    "`[]`",
    "`{}`",
    "`[1, 2]`",
    '`["a", "b"]`',
    '`{"a": 1}`',
]
_COMPARATORS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
_UNARY = [
    "length",
    "sort",
    "keys",
    "values",
    "to_string",
    "type",
    "reverse",
    "max",
    "min",
    "sum",
    "avg",
    "abs",
    "floor",
    "to_array",
    "to_number",
    "lower",
    "upper",
    "trim",
    "days_since",
]
_TOTAL = ["to_string", "type", "to_array", "to_number", "not_null"]  # any argument type
_BINARY = ["contains", "starts_with", "ends_with", "not_null", "merge"]
_BY = ["sort_by", "max_by", "min_by"]
_INDEX = st.integers(min_value=-3, max_value=3)
_SLICE_PART = st.one_of(st.just(""), st.integers(min_value=-3, max_value=3).map(str))


def _slice(parts: tuple[str, str, str | None]) -> str:
    start, stop, step = parts
    return f"[{start}:{stop}]" if step is None else f"[{start}:{stop}:{step}]"


_SLICES = st.tuples(_SLICE_PART, _SLICE_PART, st.none() | _SLICE_PART).map(_slice)
_DOT_RHS = st.one_of(
    _fields,
    st.tuples(_fields, _fields).map(".".join),
    st.tuples(_fields, _fields).map(lambda t: f"[{t[0]}, {t[1]}]"),
    st.tuples(_fields, _fields).map(lambda t: f"{{x: {t[0]}, y: {t[1]}}}"),
    st.tuples(_fields, _INDEX).map(lambda t: f"{t[0]}[{t[1]}]"),
)


_SIMPLE_CONDITION = st.one_of(
    _fields,
    st.tuples(_fields, _COMPARATORS, st.sampled_from(_LITERALS) | _fields).map(" ".join),
    _fields.map(lambda f: f"!({f})"),
)


def _extend_path(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Navigation: mostly fields, plus every kind of index, slice, projection and filter.

    Postfix forms stay unparenthesised so that projections carry on over what follows.
    """
    field = st.tuples(inner, _fields).map(lambda t: f"{t[0]}.{t[1]}")
    return st.one_of(
        field,
        field,
        field,
        st.tuples(inner, _INDEX).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, _SLICES).map("".join),
        st.tuples(inner, _DOT_RHS).map(lambda t: f"{t[0]}[*].{t[1]}"),
        inner.map(lambda e: f"{e}[*]"),
        inner.map(lambda e: f"{e}[]"),
        st.tuples(inner, _DOT_RHS).map(lambda t: f"{t[0]}[].{t[1]}"),
        inner.map(lambda e: f"{e}.*"),
        st.tuples(inner, _DOT_RHS).map(lambda t: f"{t[0]}.*.{t[1]}"),
        st.tuples(inner, _SIMPLE_CONDITION).map(lambda t: f"{t[0]}[?{t[1]}]"),
        st.tuples(inner, _SIMPLE_CONDITION, _DOT_RHS).map(lambda t: f"{t[0]}[?{t[1]}].{t[2]}"),
    )


paths = st.recursive(_fields, _extend_path, max_leaves=5)


def _operators(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Operators and multi-selects over paths; operators get parentheses."""
    return st.one_of(
        st.tuples(inner, _fields).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(inner, _INDEX).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, _DOT_RHS).map(lambda t: f"{t[0]}[*].{t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[?{t[1]}]"),
        st.tuples(inner, inner, _COMPARATORS, inner).map(
            lambda t: f"{t[0]}[?{t[1]} {t[2]} {t[3]}]"
        ),
        st.tuples(inner, _COMPARATORS, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} && {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} || {t[1]})"),
        inner.map(lambda e: f"(!{e})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} | {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"[{t[0]}, {t[1]}]"),
        st.tuples(inner, inner).map(lambda t: f"{{k: {t[0]}, l: {t[1]}}}"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}.[{t[1]}]"),
    )


def _calls(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Operators plus function calls (most random arguments fail the type check: one branch)."""
    return st.one_of(
        _operators(inner),
        st.one_of(
            st.tuples(st.sampled_from(_UNARY), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(_TOTAL), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(_BINARY), inner, inner).map(
                lambda t: f"{t[0]}({t[1]}, {t[2]})"
            ),
            st.tuples(st.sampled_from(_BY), inner, paths).map(lambda t: f"{t[0]}({t[1]}, &{t[2]})"),
            st.tuples(paths, inner).map(lambda t: f"map(&{t[0]}, {t[1]})"),
            inner.map(lambda e: f"join(',', {e})"),
        ),
    )


_ATOMS = st.one_of(paths, paths, st.sampled_from(_LITERALS), st.just("@"))
operator_expressions = st.recursive(_ATOMS, _operators, max_leaves=6)
expressions = st.recursive(_ATOMS, _calls, max_leaves=6)


@settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=operator_expressions, data=documents)
def test_random_paths_and_operators_match_the_interpreter(text: str, data: Any) -> None:
    parsed = parse(text)
    assume(not isinstance(parsed, SyntaxProblem))
    assert_same(text, data)


@settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=expressions, data=documents)
def test_random_expressions_with_functions_match_the_interpreter(text: str, data: Any) -> None:
    parsed = parse(text)
    assume(not isinstance(parsed, SyntaxProblem))
    assert_same(text, data)


@settings(max_examples=200, deadline=None, database=None)
@given(value=_json)
def test_truthy_matches_the_interpreter_on_random_values(value: Any) -> None:
    assert truthy(value) is jp_visitor.TreeInterpreter()._is_true(value)


# -- the benchmark's realistic rules and events ---------------------------------------------


def test_every_benchmark_rule_fires_identically_on_generated_events() -> None:
    """Realistic data, both evaluators: the same decisions, and no rule that can never fire."""
    events = bench_evaluate.generate_events(3000)
    bench_evaluate.check_shapes(events)
    specs = bench_evaluate.RULES
    expected = bench_evaluate.run_engine(
        events, bench_evaluate.by_trigger(specs, bench_evaluate.interpreted_rules(specs))
    )
    for bare in (True, False):
        rules = bench_evaluate.compiled_rules(specs, bare=bare)
        assert bench_evaluate.run_engine(events, bench_evaluate.by_trigger(specs, rules)) == (
            expected
        )
    assert {rule for _, rule, _ in expected} == {spec.id for spec in specs}
    assert all(fields is not None for _, _, fields in expected)


def test_the_evaluate_benchmark_runs_small() -> None:
    """No timing assertions here: timings belong in the benchmark's table."""
    measurement = bench_evaluate.measure(300, 1, all_conditions_interpreter_events=300)
    assert (measurement.events, measurement.rules, measurement.expressions) == (300, 20, 108)
    assert measurement.errors == 0
    table = bench_evaluate.rows(measurement)
    assert all(row.benchmark == bench_evaluate.NAME for row in table)
    assert {row.result for row in table} <= {"", "PASS", "MISS"}
    assert sum(1 for row in table if row.result) == 3
