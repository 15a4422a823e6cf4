"""JMESPath as the config language uses it: parsing with positions, and our custom functions.

Custom functions (beyond the JMESPath built-ins), available in every condition and mapping:

==========================  ==============================================================
``lower(s)`` / ``upper(s)``  case-folded string; null stays null
``trim(s)``                  string without surrounding white space; null stays null
``now()``                    the engine clock's current time, ISO-8601 UTC
``days_since(t)``            whole days from timestamp ``t`` to now (null when t is null)
==========================  ==============================================================

"now" always comes from the injected clock, so time-travel tests see the same answers as
production. The bare words ``null``, ``true`` and ``false`` are *field names* in JMESPath;
literals are written in backticks (```null```), which ``nurture validate`` points out.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jmespath
from jmespath import exceptions as jp_exceptions
from jmespath import functions as jp_functions
from jmespath.lexer import Lexer
from jmespath.parser import ParsedResult, Parser

Clock = Callable[[], datetime]

# name -> (minimum arguments, maximum arguments or None for variadic)
BUILTIN_FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1), "avg": (1, 1), "ceil": (1, 1), "contains": (2, 2), "ends_with": (2, 2),
    "floor": (1, 1), "join": (2, 2), "keys": (1, 1), "length": (1, 1), "map": (2, 2),
    "max": (1, 1), "max_by": (2, 2), "merge": (1, None), "min": (1, 1), "min_by": (2, 2),
    "not_null": (1, None), "reverse": (1, 1), "sort": (1, 1), "sort_by": (2, 2),
    "starts_with": (2, 2), "sum": (1, 1), "to_array": (1, 1), "to_number": (1, 1),
    "to_string": (1, 1), "type": (1, 1), "values": (1, 1),
}  # fmt: skip
CUSTOM_FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "lower": (1, 1), "upper": (1, 1), "trim": (1, 1), "now": (0, 0), "days_since": (1, 1),
}  # fmt: skip
FUNCTIONS = {**BUILTIN_FUNCTIONS, **CUSTOM_FUNCTIONS}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def parse_timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class NurtureFunctions(jp_functions.Functions):  # type: ignore[misc]
    """The custom functions, bound to a clock."""

    def __init__(self, clock: Clock = _utc_now) -> None:
        super().__init__()
        self._clock = clock

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["string", "null"]}
    )
    def _func_lower(self, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["string", "null"]}
    )
    def _func_upper(self, value: str | None) -> str | None:
        return None if value is None else value.upper()

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["string", "null"]}
    )
    def _func_trim(self, value: str | None) -> str | None:
        return None if value is None else value.strip()

    @jp_functions.signature(  # type: ignore[untyped-decorator]
    )
    def _func_now(self) -> str:
        return self._clock().astimezone(UTC).isoformat().replace("+00:00", "Z")

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["string", "null"]}
    )
    def _func_days_since(self, value: str | None) -> int | None:
        if value is None:
            return None
        return (self._clock() - parse_timestamp(value)).days


@dataclass(frozen=True)
class SyntaxProblem:
    """A JMESPath syntax error with its 0-based offset inside the expression."""

    offset: int
    message: str


def parse(expression: str) -> ParsedResult | SyntaxProblem:
    """Compile an expression once; a syntax error comes back as a value with its offset.

    A backtick literal that is not JSON (```abc```) is refused too: JMESPath reads it as a
    string under "deprecated string literal syntax", with a warning the parser's cache
    shows only the first time, and a validator must say the same thing every time."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            legacy = _legacy_literal(expression)
            if legacy is not None:
                return legacy
            return Parser().parse(expression)
    except jp_exceptions.LexerError as exc:
        return SyntaxProblem(int(exc.lexer_position or 0), f"unknown token {exc.lexer_value!r}")
    except jp_exceptions.IncompleteExpressionError as exc:
        return SyntaxProblem(int(exc.lex_position or len(expression)), "the expression ends early")
    except jp_exceptions.ParseError as exc:
        token = "the end" if exc.token_type == "eof" else repr(exc.token_value)
        detail = exc.msg if exc.msg and "Expecting" in exc.msg else f"unexpected {token}"
        return SyntaxProblem(int(exc.lex_position or 0), detail)
    except jp_exceptions.JMESPathError as exc:  # pragma: no cover - other parser errors
        return SyntaxProblem(0, str(exc))


def _legacy_literal(expression: str) -> SyntaxProblem | None:
    """The first backtick literal whose text is not JSON, if any (lexer errors raise)."""
    for token in Lexer().tokenize(expression):
        start = int(token["start"])
        if token["type"] != "literal" or not expression.startswith("`", start):
            continue  # a raw string ('text') is a literal too, and always a string
        end = start + 1  # the closing backtick (the lexer's "end" falls short at the end)
        while end < len(expression) and expression[end] != "`":
            end += 2 if expression[end] == "\\" else 1
        text = expression[start + 1 : end].replace("\\`", "`")
        try:
            json.loads(text)
        except ValueError:
            return SyntaxProblem(
                start,
                f"`{text}` is not JSON: write a string as '{text}' or `\"{text}\"`",
            )
    return None


def search(compiled: ParsedResult, data: Any, clock: Clock = _utc_now) -> Any:
    """Evaluate a compiled expression with the custom functions bound to ``clock``."""
    options = jmespath.Options(custom_functions=NurtureFunctions(clock))
    return compiled.search(data, options=options)
