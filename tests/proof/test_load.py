"""CI: the load scenario at the reduced size (600 signed webhooks at concurrency 8, then at a
fixed 500/s, with the shipped rules and with the reference-shape rules, and through the
acceptor process with the reference-shape rules and at 500/s) against a real ``nurture
run``; it must accept every event, bring every person to the CRM exactly once. Its
throughput figures are reported, not asserted (a shared CI machine is not a benchmark:
``python -m tests.bench.load`` is)."""

from __future__ import annotations

from tests.bench import load
from tests.proof.results import Size, table


async def test_load_accepts_everything_and_brings_every_person_to_the_crm_once() -> None:
    result = await load.run(Size.REDUCED)
    assert result.held, f"broken: {result.broken()}\n{table([result], Size.REDUCED)}"
    assert any("completed" in name for name in result.figures)
    requests = [v for name, v in result.figures.items() if name.endswith("HubSpot requests")]
    assert len(requests) == 5 and all(not v.startswith("0 ") for v in requests), requests
