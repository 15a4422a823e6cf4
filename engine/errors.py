"""The engine's exception tree.

    EngineError
    ├── ConfigError          one problem in the configuration, with its location
    │   └── ConfigErrors     all problems found in one load (never only the first)
    ├── EvaluationError      a condition or mapping failed for one rule and one event
    ├── AdapterError         a vendor call failed
    │   ├── AdapterTimeout       no answer in time (retryable)
    │   ├── AdapterUnavailable   connection failed, 5xx, 408, 409 or 429 (retryable)
    │   └── AdapterRejected      the vendor refused the request: other 4xx (permanent)
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
    """A call to a vendor failed. ``retryable`` says whether trying again can help."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        vendor: str,
        status: int | None = None,
        retry_after: float | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(f"{vendor}: {message}")
        self.vendor = vendor
        self.status = status
        self.retry_after = retry_after
        self.correlation_id = correlation_id


class AdapterTimeout(AdapterError):
    """The vendor did not answer in time."""

    retryable = True


class AdapterUnavailable(AdapterError):
    """Connection refused or reset, 5xx, 408, 409 or 429: worth retrying later."""

    retryable = True


class AdapterRejected(AdapterError):
    """The vendor refused the request (4xx other than 408/409/429): retrying will not help."""

    def __init__(
        self,
        message: str,
        *,
        vendor: str,
        status: int,
        body_excerpt: str = "",
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message, vendor=vendor, status=status, correlation_id=correlation_id)
        self.body_excerpt = body_excerpt


class StoreError(EngineError):
    """The store is unreachable or refused a write."""
