from __future__ import annotations

import engine


def test_all_lists_exactly_the_public_names_once() -> None:
    public = {name for name in vars(engine) if not name.startswith("_")} - {
        "annotations",
        "config",
        "errors",
        "events",
        "expressions",
        "cli",
    }
    assert set(engine.__all__) == public
    assert len(engine.__all__) == len(set(engine.__all__))
