from __future__ import annotations

import subprocess
import sys

import pytest

import engine


def test_all_lists_exactly_the_public_names_once_and_each_resolves() -> None:
    """What `engine` exposes is what `__all__` declares, each name loaded on first use."""
    assert len(engine.__all__) == len(set(engine.__all__))
    for name in engine.__all__:
        value = getattr(engine, name)
        assert getattr(value, "__name__", name) == name or name.isupper()
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        engine.Nothing  # noqa: B018


def test_importing_the_engine_package_loads_none_of_its_modules() -> None:
    """The acceptor process imports `engine.events` only: the package itself must not pull
    in the config models and the store behind it."""
    probe = "import sys, engine; print(' '.join(m for m in sys.modules if m.startswith('engine')))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == ["engine"]
