"""The hostile-input scenario (``hostile``) with Greenhouse, Ashby and generic deliveries sent
to the acceptor process: it must refuse as the daemon does (never a 5xx, always the documented
4xx with a JSON error), take the genuine deliveries interleaved with the fuzz once each, and
refuse malformed HTTP framing on its own port too."""

from __future__ import annotations

from tests.proof import hostile
from tests.proof.results import Result, Size


async def run(size: Size) -> Result:
    return await hostile.run(size, acceptor=True)
