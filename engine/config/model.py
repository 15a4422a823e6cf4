"""The config language as frozen models: rule files, sequence files and template catalogues.

One YAML file may hold any of ``rules``, ``sequences`` and ``templates``; every file starts with
``version: 1``. These models generate ``schema/config.schema.json`` (see ``schema.py``), so
the schema an editor uses and the objects the engine runs cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from engine.config.actions import Action
from engine.config.types import ClockTime, Duration, Expression, Identifier, Model, Weekday
from engine.events import EVENT_TYPES

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class Rule(Model):
    """When an event of type ``trigger`` arrives and ``condition`` is truthy, run ``actions``."""

    id: Identifier
    description: str = Field(min_length=1)
    trigger: EventType
    condition: Expression | None = Field(
        None, description="JMESPath over the event data; the rule fires when it is truthy"
    )
    enabled: bool = True
    actions: list[Action] = Field(min_length=1)


class ExitTrigger(Model):
    event: EventType
    condition: Expression | None = None


class SendWindow(Model):
    """Steps only fire inside this window, in the candidate's time zone; outside, they wait."""

    days: list[Weekday] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], min_length=1
    )
    start: ClockTime = "09:00"
    end: ClockTime = "18:00"


class Misfire(Model):
    """What happens to a step found overdue (after downtime, or past at enrolment)."""

    policy: Literal["send_late", "skip"] = "send_late"
    grace: Duration = Field("24h", description="send_late only within this lateness")


class Repeat(Model):
    """Fire the step again every ``every`` until the enrolment exits (or ``times`` firings)."""

    every: Duration
    times: int | None = Field(None, ge=2, description="total firings; unlimited when absent")


class Step(Model):
    """One timed touch. ``at`` counts from the anchor (enrolment time unless one is named)."""

    id: Identifier
    description: str | None = None
    at: Duration  # offset from the anchor: 0d, 3d, -24h
    anchor: Expression | None = Field(
        None, description="a date in the enrolling event that overrides the sequence's anchor"
    )
    condition: Expression | None = Field(
        None, description="evaluated at fire time on the step context; false -> otherwise"
    )
    do: Action
    otherwise: Action | None = Field(None, description="the action when condition is false")
    repeat: Repeat | None = None
    send_window: SendWindow | None = None
    misfire: Misfire | None = None


class Sequence(Model):
    """Timed steps for one candidate, from enrolment until the last step or an exit."""

    id: Identifier
    description: str = Field(min_length=1)
    category: Literal["nurture", "transactional"] = Field(
        "nurture",
        description="nurture mail counts against the frequency cap and is exclusive; "
        "transactional (interview) mail is exempt",
    )
    anchor: Expression | None = Field(
        None, description="a date in the enrolling event the step offsets count from"
    )
    key: Expression | None = Field(
        None,
        description="identifies an enrolment (e.g. interview.id): enrolling again with the same "
        "key moves the pending steps instead of duplicating them",
    )
    reenroll: Literal["never", "after_exit", "restart"] = Field(
        "never",
        description="never: one enrolment per candidate (and key); after_exit: again once the "
        "previous one ended; restart: a new enrolment replaces an active one",
    )
    allow_concurrent: bool = Field(
        False, description="nurture only: may run beside another active nurture sequence"
    )
    exit_on: list[EventType | ExitTrigger] = Field(default_factory=list)
    send_window: SendWindow | None = None
    misfire: Misfire = Misfire()
    steps: list[Step] = Field(min_length=1)


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""``{name}`` in a subject, note or message: filled from the field (or variable) ``name``."""


def link_variable(link: str) -> str:
    """The variable a signed link fills: ``keep-me-posted`` -> ``keep_me_posted_url``."""
    return link.replace("-", "_") + "_url"


class Template(Model):
    """An email template in the CRM that ``crm.send_email`` refers to by id."""

    id: Identifier
    description: str | None = None
    subject: str = Field(min_length=1, description="{name} inserts the variable 'name'")
    body: str | None = Field(
        None,
        min_length=1,
        description="plain-text body for mail sent over SMTP (required with mail.via: smtp); "
        "{name} inserts the variable 'name'",
    )
    crm_email_id: str = Field(min_length=1, description="the CRM's id of the email template")
    category: Literal["nurture", "transactional"] = "nurture"
    variables: list[Identifier] = Field(
        default_factory=list, description="variables the template needs; every send maps them"
    )
    links: list[Identifier] = Field(
        default_factory=list,
        description="signed one-click links the engine adds as variables (e.g. keep-me-posted)",
    )


class ConfigFile(Model):
    """One YAML file of the config set."""

    version: Literal[1]
    rules: list[Rule] = Field(default_factory=list)
    sequences: list[Sequence] = Field(default_factory=list)
    templates: list[Template] = Field(default_factory=list)
