"""The shipped rules and sequences, as the "run unchanged on <vendor>" tests load them."""

from __future__ import annotations

from pathlib import Path

from engine.config.load import ConfigSet, load_config

REPO = Path(__file__).resolve().parents[2]


def shipped_config() -> ConfigSet:
    """The shipped ``rules/`` and ``sequences/``; fails the test, naming each error, if any."""
    loaded = load_config([REPO / "rules", REPO / "sequences"])
    assert loaded.config is not None, "\n".join(d.format_text() for d in loaded.errors)
    return loaded.config
