"""``python -m engine.store.migrate``: bring the store (its URL on standard input) to
``HEAD_REVISION`` and exit. The daemon runs it as a child process when its store is behind,
so that Alembic and the migration scripts are loaded, used and given back once, instead of
held in the daemon's memory for as long as it runs. A refusal (a schema newer than this code
knows, a store that cannot be reached) is printed on standard error, with exit status 2.
"""

from __future__ import annotations

import asyncio
import sys

from engine.errors import StoreError
from engine.store.store import Store


async def migrate(url: str) -> None:
    store = await Store.open(url)
    await store.close()


async def migrate_apart(url: str) -> None:
    """Run the migration in a child process; its refusal is raised here as a ``StoreError``."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.store.migrate",
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, refusal = await child.communicate(url.encode())  # not argv: a URL may hold a password
    if child.returncode != 0:
        reason = refusal.decode(errors="replace").strip().splitlines()
        raise StoreError(reason[-1] if reason else f"the migration exited {child.returncode}")


def main() -> int:
    try:
        asyncio.run(migrate(sys.stdin.read().strip()))
    except StoreError as refused:
        sys.stderr.write(f"{refused}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
