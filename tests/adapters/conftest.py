"""Adapter tests that run against the engine reuse the engine's fixtures (store, simulators);
``ticker`` is the simulators' rate-window clock."""

from __future__ import annotations

import pytest

from tests.adapters.ticker import Ticker
from tests.engine.conftest import (  # noqa: F401 - fixtures are found by name
    alert_target,
    clock,
    crm,
    hubspot,
    make_config,
    session,
    slack,
    store,
)


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()
