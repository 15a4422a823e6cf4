"""The engine's exception tree.

    EngineError
    ├── ConfigError          one problem in the configuration, with its location
    │   └── ConfigErrors     all problems found in one load (never only the first)
    ├── EvaluationError      a condition or mapping failed for one rule and one event
    ├── AdapterError         a vendor call failed (later issues add the subclasses)
    └── StoreError           the store is unreachable or refused a write

The engine raises; only ``engine.cli`` prints and chooses exit codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config.diagnostics import Diagnostic


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """A single configuration problem, carrying its diagnostic (file, position, pointer)."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.format_text())
        self.diagnostic = diagnostic


class ConfigErrors(ConfigError):
    """Every error found while loading a configuration set."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        EngineError.__init__(self, "\n".join(d.format_text() for d in diagnostics))
        self.diagnostics = diagnostics


class EvaluationError(EngineError):
    """A rule's condition or mapping failed on one event."""

    def __init__(self, rule_id: str, event_id: str, reason: str) -> None:
        super().__init__(f"rule {rule_id!r} on event {event_id!r}: {reason}")
        self.rule_id = rule_id
        self.event_id = event_id
        self.reason = reason


class AdapterError(EngineError):
    """A call to a vendor failed."""


class StoreError(EngineError):
    """The store is unreachable or refused a write."""
