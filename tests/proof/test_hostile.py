"""CI: the hostile-input, schemathesis and security scenarios at the reduced size, against a
live daemon each; a broken invariant fails with its name and the scenario's figures."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from tests.proof import (
    hostile,
    hostile_acceptor,
    schemathesis_acceptor,
    schemathesis_run,
    security,
)
from tests.proof.hostile_cases import lever_signable
from tests.proof.results import Result, Size, table

SCENARIOS: dict[str, Callable[[Size], Awaitable[Result]]] = {
    "hostile": hostile.run,
    "hostile_acceptor": hostile_acceptor.run,
    "schemathesis": schemathesis_run.run,
    "schemathesis_acceptor": schemathesis_acceptor.run,
    "security": security.run,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario_holds_every_invariant_at_the_reduced_size(name: str) -> None:
    result = await SCENARIOS[name](Size.REDUCED)
    assert result.held, f"broken: {result.broken()}\n{table([result], Size.REDUCED)}"
    assert result.bad_inputs_tried > 0


def test_the_log_scan_finds_a_secret_and_an_address() -> None:
    """The scan the scenarios rely on is not vacuous."""
    from tests.proof.target import SECRETS

    token = SECRETS["HUBSPOT_TOKEN"]
    line = json.dumps({"msg": "to maya.lopez+jobs@example.co.uk", "token": token})
    found = hostile.leaks(line)
    assert len(found) == 2 and "maya.lopez+jobs@example.co.uk" in found[1]
    assert hostile.leaks('{"msg": "to <email>"}') == []


def test_a_lever_body_with_an_empty_token_is_expected_to_be_refused() -> None:
    """The full fuzz once drew ``{"token": ""}``, signed it and expected it accepted; the daemon
    rightly answered 401 (no token), and the scenario reported a broken invariant."""
    assert not lever_signable({"token": ""})
    assert not lever_signable({"token": 7})
    assert not lever_signable(["token"])
    assert lever_signable({"token": " "})
