"""What every benchmark shares: its options, the rows it reports, and the plain-text table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Options:
    """Command-line options, passed to every benchmark."""

    files: int = 1000
    runs: int = 3


class Row(NamedTuple):
    """One line of the table; ``target`` and ``result`` stay empty for plain measurements."""

    benchmark: str
    measurement: str
    value: str
    target: str = ""
    result: str = ""


HEADERS = Row("benchmark", "measurement", "value", "target", "result")


def verdict(seconds: float, limit: float) -> str:
    return "PASS" if seconds < limit else "MISS"


def render_table(rows: Sequence[Row]) -> str:
    """Left-aligned columns separated by two spaces, with a dashed rule under the headers."""
    table = [HEADERS, *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(HEADERS))]
    rule = Row(*("-" * width for width in widths))
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (HEADERS, rule, *rows)
    ]
    return "\n".join(lines)
