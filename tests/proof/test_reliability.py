"""CI: the reliability scenarios at the reduced size, each against the running daemon (a real
``nurture run`` subprocess and the vendors process); a broken invariant fails with its name,
why it broke and the scenario's figures. ``make proof`` runs the same modules at full size."""

from __future__ import annotations

import pytest

from tests.proof import crash_loop, store_faults, vendor_faults
from tests.proof.results import Result, Size, table


def _verdict(result: Result) -> str:
    reasons = "\n".join(f"- {name}: {result.details.get(name, '')}" for name in result.broken())
    return f"broken:\n{reasons}\n{table([result], Size.REDUCED)}"


async def test_sigkill_loop_loses_nothing_sends_nothing_twice_and_misses_no_step() -> None:
    """1,000 events, 3 SIGKILLs, sequences due on the simulated clock, unsubscribes midway."""
    result = await crash_loop.run(Size.REDUCED)
    assert result.held, _verdict(result)
    assert result.faults_injected == 3


async def test_sigkill_loop_through_the_acceptor_loses_nothing_and_sends_nothing_twice() -> None:
    """The same, with webhooks acknowledged by the acceptor process from its spool."""
    result = await crash_loop.run(Size.REDUCED, acceptor=True)
    assert result.held, _verdict(result)
    assert result.faults_injected == 3


async def test_vendor_faults_retried_to_success_422_dead_lettered_outage_alerted_once() -> None:
    result = await vendor_faults.run(Size.REDUCED)
    assert result.held, _verdict(result)
    assert result.faults_injected > 100  # the faults were really drawn


@pytest.mark.postgres
async def test_a_lost_store_gets_503_and_loses_nothing_and_sqlite_never_locks_out_a_vendor() -> (
    None
):
    result = await store_faults.run(Size.REDUCED)
    assert result.held, _verdict(result)
