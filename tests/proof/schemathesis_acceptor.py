"""schemathesis (``schemathesis_run``) against the acceptor process's port, for the documented
operations it serves (``POST /webhooks/{source}``, ``/healthz``, ``/metrics``): every answer
must conform to ``schema/openapi.yaml`` there too."""

from __future__ import annotations

from tests.proof import schemathesis_run
from tests.proof.results import Result, Size


async def run(size: Size) -> Result:
    return await schemathesis_run.run(size, acceptor=True)
