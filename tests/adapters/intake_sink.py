"""A poller's sink as the daemon wires it (the real intake), which can crash once mid-sweep."""

from __future__ import annotations

from engine import Event
from engine.runtime import Runtime


class IntakeSink:
    """Accepts into intake; raises once at the ``fail_at``-th event (a crash mid-sweep)."""

    def __init__(self, runtime: Runtime, fail_at: int | None = None) -> None:
        self.runtime = runtime
        self.fail_at = fail_at
        self.seen = 0
        self.events: list[Event] = []  # every event intake accepted, duplicates included
        self.fresh: list[Event] = []  # the events intake had not seen before
        self.new: list[str] = []  # the ids of ``fresh``
        self.duplicates: list[str] = []
        self.matched: dict[str, list[str]] = {}  # event id -> the rules it matched

    async def __call__(self, event: Event) -> None:
        self.seen += 1
        if self.fail_at is not None and self.seen == self.fail_at:
            self.fail_at = None
            raise RuntimeError("crash")
        accepted = await self.runtime.intake.accept(event)
        self.events.append(event)
        if accepted.duplicate:
            self.duplicates.append(event.id)
        else:
            self.new.append(event.id)
            self.fresh.append(event)
        self.matched[event.id] = [d.rule_id for d in accepted.decisions if d.matched]
