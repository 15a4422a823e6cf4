"""One finding of ``nurture validate``: where it is, what is wrong, what was expected, a hint.

Text form (editors and CI jump to ``file:line:col``)::

    rules/crm.yaml:14:9: /rules/2/actions/0/fields/emial: unknown field 'candidate.emial'
        expected: a field of ats.application.created data: email, emails, first_name, ...
        hint: did you mean 'candidate.email'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int
    column: int
    pointer: str
    message: str
    expected: str | None = None
    hint: str | None = None
    severity: Severity = "error"

    def format_text(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: "
        head = f"{where}{self.pointer}: {self.message}" if self.pointer else where + self.message
        if self.severity == "warning":
            head = head.replace(where, f"{where}warning: ", 1)
        lines = [head]
        if self.expected:
            lines.append(f"    expected: {self.expected}")
        if self.hint:
            lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)

    def format_github(self) -> str:
        """A GitHub Actions workflow command, shown as an annotation on the pull request."""
        text = self.message
        if self.expected:
            text += f" (expected: {self.expected})"
        if self.hint:
            text += f" hint: {self.hint}"
        title = self.pointer or "nurture validate"
        return (
            f"::{self.severity} file={_gh(self.file)},line={self.line},col={self.column},"
            f"title={_gh(title)}::{_gh(text, data=True)}"
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _gh(value: str, *, data: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value if data else value.replace(":", "%3A").replace(",", "%2C")


def shorten(value: Any, limit: int = 60) -> str:
    """A value as it appears in a message: repr-quoted and cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """'did you mean X?' for the closest candidate, or None when nothing is close."""
    pool = [c for c in candidates if isinstance(c, str)]
    lowered = {c.lower(): c for c in pool}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f"did you mean {lowered[word.lower()]!r}?"
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f"did you mean {matches[0]!r}?" if matches else None


def one_of(values: Iterable[str], limit: int = 12) -> str:
    items = sorted(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return f"one of {shown}{more}"
