"""Scalar types of the config language, shared by the models and the generated JSON Schema.

Each carries a ``description`` that ``nurture validate`` prints as "expected:" when a value
does not match, so the schema an editor sees and the message a user reads say the same thing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

DURATION_PATTERN = r"^-?(?:[0-9]+(?:ms|w|d|h|m|s))+$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|w|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        max_length=100,
        description="an id: lower-case letters, digits, '-' and '_', e.g. new-applicant-welcome",
    ),
]
Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description="a duration such as 30m, 24h, 7d, 2w or 1h30m (units ms s m h d w); "
        "months are not a fixed length, write 30d",
    ),
]
Expression = Annotated[
    str,
    Field(min_length=1, description="a JMESPath expression over the event data"),
]
FieldTarget = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="a target field name: letters, digits and '_'",
    ),
]
EnvVarName = Annotated[
    str,
    Field(
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="the NAME of an environment variable holding the secret "
        "(secrets never go into files), e.g. HUBSPOT_TOKEN",
    ),
]
ClockTime = Annotated[
    str,
    Field(
        pattern=r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$",
        description="a time of day as HH:MM, 24-hour clock",
    ),
]
Weekday = Annotated[
    str,
    Field(
        pattern=r"^(?:mon|tue|wed|thu|fri|sat|sun)$",
        description="a weekday: mon tue wed thu fri sat sun",
    ),
]


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, objects are immutable."""

    # strict: the schema refuses "off" for a boolean, so the model must not coerce it either
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def parse_duration(text: str) -> timedelta:
    """Turn '1h30m' or '-24h' into a timedelta; raises ValueError on anything else."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r}")
    sign = -1 if text.startswith("-") else 1
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=sign * seconds)
