"""What a proof scenario reports, and the results table ``make proof`` writes.

A scenario is ``async def run(size: Size) -> Result``. Figures are measured values (already
formatted, with units); invariants are named checks that must all hold. The table is Markdown so
the README can carry the latest one verbatim.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from enum import Enum


class Size(Enum):
    REDUCED = "reduced"  # CI: e.g. 1,000 events, 3 kills, 30 s of fuzzing
    FULL = "full"  # make proof: the sizes the issue names


@dataclass
class Result:
    scenario: str
    figures: dict[str, str] = field(default_factory=dict)
    invariants: dict[str, bool] = field(default_factory=dict)
    faults_injected: int = 0
    bad_inputs_tried: int = 0
    details: dict[str, str] = field(default_factory=dict)  # why a broken invariant broke

    @property
    def held(self) -> bool:
        return bool(self.invariants) and all(self.invariants.values())

    def broken(self) -> list[str]:
        return [name for name, ok in self.invariants.items() if not ok]


def machine() -> str:
    import os

    python = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {python}"


def table(results: list[Result], size: Size) -> str:
    lines = [
        f"Proof results ({size.value} size; {machine()})",
        "",
        "| scenario | figures | invariants | faults injected | bad inputs tried |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        figures = "; ".join(f"{k}: {v}" for k, v in r.figures.items()) or "-"
        held = sum(r.invariants.values())
        verdict = f"{held}/{len(r.invariants)} held"
        if r.broken():
            verdict += " (BROKEN: " + ", ".join(r.broken()) + ")"
        counts = f"{r.faults_injected:,} | {r.bad_inputs_tried:,}"
        lines.append(f"| {r.scenario} | {figures} | {verdict} | {counts} |")
    return "\n".join(lines) + "\n"
