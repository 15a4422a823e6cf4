"""nurture: a declarative rules engine between an ATS and a CRM.

Adapters and the CLI import the engine only through this module.
"""

from __future__ import annotations

from engine.config.load import ConfigSet as ConfigSet
from engine.config.load import LoadResult as LoadResult
from engine.config.load import load_config as load_config
from engine.errors import AdapterError as AdapterError
from engine.errors import AdapterRejected as AdapterRejected
from engine.errors import AdapterTimeout as AdapterTimeout
from engine.errors import AdapterUnavailable as AdapterUnavailable
from engine.errors import ConfigError as ConfigError
from engine.errors import ConfigErrors as ConfigErrors
from engine.errors import EngineError as EngineError
from engine.errors import EvaluationError as EvaluationError
from engine.errors import StoreError as StoreError
from engine.events import EVENT_DATA as EVENT_DATA
from engine.events import EVENT_TYPES as EVENT_TYPES
from engine.events import Event as Event
from engine.identity import normalise_email as normalise_email

__all__ = [
    "EVENT_DATA",
    "EVENT_TYPES",
    "AdapterError",
    "AdapterRejected",
    "AdapterTimeout",
    "AdapterUnavailable",
    "ConfigError",
    "ConfigErrors",
    "ConfigSet",
    "EngineError",
    "EvaluationError",
    "Event",
    "LoadResult",
    "StoreError",
    "load_config",
    "normalise_email",
]
