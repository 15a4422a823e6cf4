"""What every benchmark shares: its options, the rows it reports, and the plain-text table."""

from __future__ import annotations

import math
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 < fraction <= 1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def memory_bytes(field_name: str, pid: int | str = "self") -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of a process, in bytes.

    Not ``getrusage().ru_maxrss`` where /proc exists: Linux carries the parent's peak across
    fork + exec into it, so a child would report the benchmark's own peak. Without /proc, this
    process's ``ru_maxrss`` (kB on Linux) is the nearest there is.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
