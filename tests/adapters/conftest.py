"""Adapter tests that run against the engine reuse the engine's fixtures (store, simulators)."""

from __future__ import annotations

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
