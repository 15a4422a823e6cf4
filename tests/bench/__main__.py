"""Run every benchmark of the package and print one plain-text table.

Usage: ``python -m tests.bench [--files N] [--runs R]`` (``make bench``). A benchmark that
misses its target prints MISS in the table; the exit status is 0 unless a benchmark could not
run (for example the loader reported errors on the generated files).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence

from . import bench_evaluate, bench_pipeline, bench_steps, bench_validate, load
from .common import Options, Row, render_table

Benchmark = Callable[[Options], list[Row]]

BENCHMARKS: list[Benchmark] = [
    bench_validate.run,
    bench_evaluate.run,
    bench_pipeline.run,
    bench_steps.run,
    load.bench,
]
"""Each benchmark takes the options and returns its rows; add new ones here."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--files",
        type=_positive,
        default=Options.files,
        help="rule files to generate for the validate benchmark (default: 1000)",
    )
    parser.add_argument(
        "--runs",
        type=_positive,
        default=Options.runs,
        help="timed in-process runs; best and median are reported (default: 3)",
    )
    args = parser.parse_args(argv)
    return Options(files=args.files, runs=args.runs)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    started = time.perf_counter()
    rows: list[Row] = []
    for benchmark in BENCHMARKS:
        rows.extend(benchmark(options))
    print(
        f"nurture benchmarks: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPU(s); {options.files} files, {options.runs} runs"
    )
    print()
    print(render_table(rows))
    print()
    print(f"total benchmark time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
