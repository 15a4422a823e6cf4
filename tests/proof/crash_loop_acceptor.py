"""The crash loop (``crash_loop``) with Greenhouse webhooks taken by the acceptor process: every
SIGKILL of the daemon also ends its acceptor, the restart brings both back on the same spool,
and what was acknowledged from the spool must be evaluated exactly once."""

from __future__ import annotations

from tests.proof import crash_loop
from tests.proof.results import Result, Size


async def run(size: Size) -> Result:
    return await crash_loop.run(size, acceptor=True)
