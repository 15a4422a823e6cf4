"""A real engine process that only fires due sequence steps (tests/engine/test_steps_processes).

    python -m tests.engine.step_worker STORE_URL CONFIG_DIR [--batch N] [--wait-for-go]

It builds the Runtime exactly as the daemon does (on the wall clock), prints ``ready``, waits
for a line on stdin when ``--wait-for-go`` is given (so that several workers start firing at
the same moment), then runs ``run_due`` until nothing is due. After every committed batch it
prints ``batch <fired>``; at the end ``done <total fired>``. The outbox is not dispatched: the
test reads the outbox rows and the step statuses from the database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from engine.clock import ManualClock, SystemClock
from engine.config.load import load_config
from engine.runtime import Runtime
from engine.store.store import Store
from engine.testing import Recorder


async def main(url: str, config_dir: str, batch: int, wait_for_go: bool) -> int:
    loaded = load_config([config_dir])
    if loaded.config is None:
        print("config errors:", *(d.format_text() for d in loaded.errors), file=sys.stderr)
        return 2
    store = await Store.open(url)
    try:
        crm = Recorder(ManualClock(datetime.now(UTC)))  # never called: nothing is dispatched
        runtime = Runtime.build(store, loaded.config, SystemClock(), crm, step_batch=batch)
        print("ready", flush=True)
        if wait_for_go:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        total = 0
        while outcomes := await runtime.steps.run_due():
            fired = sum(1 for o in outcomes if o.status == "fired")
            total += fired
            print(f"batch {fired}", flush=True)
        print(f"done {total}", flush=True)
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("config_dir")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--wait-for-go", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.config_dir, args.batch, args.wait_for_go)))
