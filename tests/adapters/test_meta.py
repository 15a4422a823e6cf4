"""Every vendor adapter comes with a loopback simulator and a test module."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENDORS = sorted(
    p.name for p in (REPO / "adapters").iterdir() if p.is_dir() and (p / "__init__.py").exists()
)
NO_SIMULATOR_YET: dict[str, str] = {}  # vendor -> why its simulator is still missing


def test_the_vendor_list_is_what_ships() -> None:
    assert VENDORS == ["ashby", "greenhouse", "hubspot", "lever", "slack", "smtp"]


@pytest.mark.parametrize(
    "vendor",
    [
        pytest.param(v, marks=pytest.mark.xfail(strict=True, reason=NO_SIMULATOR_YET[v]))
        if v in NO_SIMULATOR_YET
        else v
        for v in VENDORS
    ],
)
def test_every_vendor_has_a_simulator(vendor: str) -> None:
    assert (REPO / "adapters" / vendor / "simulator.py").is_file()


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_vendor_has_a_test_module(vendor: str) -> None:
    assert sorted((REPO / "tests" / "adapters").glob(f"test_{vendor}*.py"))
