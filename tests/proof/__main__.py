"""``python -m tests.proof [--reduced] [--write] [--only NAME ...]``: run the proof scenarios.

Every scenario module listed in ``SCENARIOS`` exposes ``async def run(size) -> Result``; they
run one after another (each starts its own daemon and simulators), the results table is
printed, and with ``--write`` also written to ``tests/proof/results.md`` (the README's proof
section carries a copy). The exit status is 1 when any invariant broke or a scenario failed to
run, so CI and ``make proof`` fail loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
import traceback
from pathlib import Path

from tests.proof.results import Result, Size, table

# name -> module; add a scenario here and both `make proof` and the runner pick it up
SCENARIOS: dict[str, str] = {
    "crash_loop": "tests.proof.crash_loop",
    "crash_loop_acceptor": "tests.proof.crash_loop_acceptor",
    "vendor_faults": "tests.proof.vendor_faults",
    "store_faults": "tests.proof.store_faults",
    "hostile": "tests.proof.hostile",
    "hostile_acceptor": "tests.proof.hostile_acceptor",
    "schemathesis": "tests.proof.schemathesis_run",
    "schemathesis_acceptor": "tests.proof.schemathesis_acceptor",
    "security": "tests.proof.security",
    "load": "tests.bench.load",
}
RESULTS = Path(__file__).with_name("results.md")


async def run_one(name: str, size: Size) -> tuple[Result, float]:
    started = time.perf_counter()
    module = importlib.import_module(SCENARIOS[name])
    try:
        result: Result = await module.run(size)
    except Exception as exc:  # a scenario that cannot finish is a broken proof, not a crash
        result = Result(name, invariants={"the scenario ran to the end": False})
        result.details["the scenario ran to the end"] = "".join(traceback.format_exception(exc))[
            -2000:
        ]
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.proof", description=__doc__)
    parser.add_argument("--reduced", action="store_true", help="the CI size (default: full)")
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.name}")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="these scenarios")
    args = parser.parse_args(argv)
    size = Size.REDUCED if args.reduced else Size.FULL
    results: list[Result] = []
    for name in args.only or list(SCENARIOS):
        print(f"proof: {name} ({size.value}) ...", file=sys.stderr, flush=True)
        result, seconds = asyncio.run(run_one(name, size))
        result.figures.setdefault("scenario took", f"{seconds:.0f} s")
        verdict = "held" if result.held else "BROKEN: " + ", ".join(result.broken())
        print(f"proof: {name}: {verdict} ({seconds:.0f} s)", file=sys.stderr, flush=True)
        results.append(result)
    text = table(results, size)
    print(text)
    for result in results:
        for name, detail in result.details.items():
            print(f"{result.scenario} / {name}:\n  {detail}\n")
    if args.write:
        RESULTS.write_text(text)
        print(f"written to {RESULTS}", file=sys.stderr)
    return 0 if all(r.held for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
