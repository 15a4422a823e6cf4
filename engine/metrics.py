"""Prometheus metrics without a dependency: counters, gauges and one latency histogram.

Rendered in the text exposition format (version 0.0.4) at ``/metrics``.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable

Labels = tuple[tuple[str, str], ...]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    """A label value as the text format spells it: a raw newline would end the sample."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Every digit (``{:g}`` kept six: a Unix timestamp came out over an hour off)."""
    value = float(value)  # gauges are also set from int counts
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)  # the shortest spelling that reads back exactly


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


class Metrics:
    def __init__(self) -> None:
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._histograms: dict[str, dict[Labels, list[float]]] = defaultdict(dict)

    def declare(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self._values[name][key] = self._values[name].get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[name][tuple(sorted(labels.items()))] = value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self._histograms[name].setdefault(key, [0.0] * (len(LATENCY_BUCKETS) + 2))
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds  # the sum rides in the last slot

    def value(self, name: str, **labels: str) -> float:
        return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(set(self._help) | set(self._values) | set(self._histograms)):
            kind, text = self._help.get(name, ("untyped", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in sorted(self._values.get(name, {}).items()):
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
            for labels, counts in sorted(self._histograms.get(name, {}).items()):
                lines += _histogram(name, labels, counts)
        return "\n".join(lines) + "\n"


def _histogram(name: str, labels: Labels, counts: list[float]) -> Iterable[str]:
    running = 0.0
    for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
        running += count
        yield f"{name}_bucket{_labels((*labels, ('le', f'{bound:g}')))} {_number(running)}"
    running += counts[len(LATENCY_BUCKETS)]
    yield f"{name}_bucket{_labels((*labels, ('le', '+Inf')))} {_number(running)}"
    yield f"{name}_sum{_labels(labels)} {_number(counts[-1])}"
    yield f"{name}_count{_labels(labels)} {_number(running)}"
