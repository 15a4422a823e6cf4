from __future__ import annotations

import types

import engine


def test_all_lists_exactly_the_public_names_once() -> None:
    """Submodules aside, what `engine` exposes is what `__all__` declares."""
    public = {
        name
        for name, value in vars(engine).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations"}
    assert set(engine.__all__) == public
    assert len(engine.__all__) == len(set(engine.__all__))
