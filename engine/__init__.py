"""nurture: a declarative rules engine between an ATS and a CRM.

Adapters and the CLI import the engine only through this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# where each name lives: importing ``engine`` loads nothing until a name is used, so the
# webhook acceptor, which needs ``Event`` only, does not load the config models and the store
_HOMES = {
    "ConfigSet": "engine.config.load",
    "LoadResult": "engine.config.load",
    "load_config": "engine.config.load",
    "AdapterError": "engine.errors",
    "AdapterRejected": "engine.errors",
    "AdapterTimeout": "engine.errors",
    "AdapterUnavailable": "engine.errors",
    "ConfigError": "engine.errors",
    "ConfigErrors": "engine.errors",
    "EngineError": "engine.errors",
    "EvaluationError": "engine.errors",
    "StoreError": "engine.errors",
    "EVENT_DATA": "engine.events",
    "EVENT_TYPES": "engine.events",
    "Event": "engine.events",
    "normalise_email": "engine.identity",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


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
