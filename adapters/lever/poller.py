"""Lever opportunity poller, for accounts that cannot (or do not) send webhooks.

Reads ``GET /opportunities?updated_at_start=<ms>&limit=100&expand=stage&expand=owner&expand=
applications`` [P filter and expand names], page by page (``offset`` = the previous ``next``
while ``hasNext`` [P]), from a durable cursor, and hands canonical events to a sink (intake).

Cursor: the newest ``updatedAt`` (epoch ms, as a decimal string) seen, saved under ``name`` only
after every event of the sweep was accepted by the sink, so a crash re-reads instead of skipping.
Each sweep starts ``overlap`` before the cursor, for writes Lever records late; what is re-read
produces the same event ids, which intake acknowledges as duplicates. No gaps, no doubles.

What changed is inferred from the opportunity alone (Lever's list has no change log), with the
sweep's lower bound ``since`` = cursor - overlap:

- ``createdAt >= since`` -> ats.application.created, id ``lever:poll:created:<opp>``;
- ``lastAdvancedAt >= since`` and later than ``createdAt`` -> ats.application.stage_changed, id
  ``lever:poll:stage:<opp>:<stage id>:<lastAdvancedAt>`` [P field ``lastAdvancedAt``];
  ``previous_stage`` stays None, the engine fills it in from the stage it last saw (a stage left
  and re-entered between two sweeps is missed: the poller sees states, not transitions);
- ``archived.archivedAt >= since`` -> ats.application.hired (hired reason, id shared with the
  webhooks: ``lever:hired:<opp>:<archivedAt>``) or ats.application.rejected
  (``lever:poll:archived:<opp>:<archivedAt>``);
- none of these (a tag, an e-mail address, a note...) -> ats.candidate.updated, id
  ``lever:poll:updated:<opp>:<updatedAt>``, so "Do Not Contact" tagged in Lever still reaches
  the suppression rules. Our own write-backs bump ``updatedAt`` too, so they come back as such
  updates; the shipped rules on ats.candidate.updated only suppress, which is idempotent.

The ids differ from the webhook ids (except hires), so run the poller **or** webhooks for one
account, not both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from adapters.lever.client import OPPORTUNITY_EXPAND, LeverClient
from adapters.lever.webhooks import (
    DEFAULT_OPTIONS,
    SOURCE,
    LeverOptions,
    Snapshot,
    hire_id,
    snapshot_of,
)
from adapters.normalise import build_event, epoch_ms
from engine import Event

Sink = Callable[[Event], Awaitable[Any]]
CURSOR_NAME = "lever:opportunities"


class CursorStore(Protocol):
    """Where cursors live (``engine.cursors.StoreCursors`` keeps them in the store)."""

    async def get(self, name: str) -> str | None: ...

    async def set(self, name: str, value: str) -> None: ...


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OpportunityPoller:
    def __init__(
        self,
        client: LeverClient,
        cursors: CursorStore,
        sink: Sink,
        *,
        start: datetime,
        overlap: timedelta = timedelta(minutes=5),
        page_size: int = 100,
        name: str = CURSOR_NAME,
        options: LeverOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.client = client
        self.cursors = cursors
        self.sink = sink
        self.start = start
        self.overlap = overlap
        self.page_size = page_size
        self.name = name
        self.options = options

    async def cursor(self) -> int:
        """The saved cursor in epoch ms, else ``start``."""
        saved = await self.cursors.get(self.name)
        return int(saved) if saved else int(self.start.timestamp() * 1000)

    async def poll_once(self) -> int:
        """Read every opportunity updated since the cursor; returns events handed to the sink."""
        cursor = await self.cursor()
        since = cursor - int(self.overlap.total_seconds() * 1000)
        params = [("updated_at_start", str(since)), *(("expand", e) for e in OPPORTUNITY_EXPAND)]
        newest = cursor
        count = 0
        async for opportunity in self.client.iterate(
            "/opportunities", params, limit=self.page_size
        ):
            for event in await self.events_for(opportunity, since):
                await self.sink(event)
                count += 1
            updated = _ms(opportunity.get("updatedAt"))
            if updated is not None:
                newest = max(newest, updated)
        if newest > cursor:
            await self.cursors.set(self.name, str(newest))
        return count

    async def events_for(self, opportunity: dict[str, Any], since: int) -> list[Event]:
        """The canonical events one changed opportunity stands for (see the module doc)."""
        snapshot = await snapshot_of(opportunity, self.client, options=self.options)
        opp = snapshot.opportunity_id
        raw = {"opportunity": snapshot.opportunity}
        created = _ms(opportunity.get("createdAt"))
        advanced = _ms(opportunity.get("lastAdvancedAt"))
        updated = _ms(opportunity.get("updatedAt"))
        events: list[Event] = []
        if created is not None and created >= since:
            events.append(
                snapshot.event(
                    "ats.application.created",
                    event_id=f"lever:poll:created:{opp}",
                    time=_time(created),
                    raw=raw,
                )
            )
        if advanced is not None and advanced >= since and (created is None or advanced > created):
            events.append(
                snapshot.event(
                    "ats.application.stage_changed",
                    event_id=f"lever:poll:stage:{opp}:{snapshot.stage_id}:{advanced}",
                    time=_time(advanced),
                    raw=raw,
                )
            )
        archived = snapshot.archived_ms
        if snapshot.archived and archived is not None and archived >= since:
            events.append(_archive_event(snapshot, archived, raw))
        if not events and updated is not None:
            events.append(
                build_event(
                    event_type="ats.candidate.updated",
                    event_id=f"lever:poll:updated:{opp}:{updated}",
                    source=SOURCE,
                    time=_time(updated),
                    subject=snapshot.contact_id,
                    data={"candidate": snapshot.candidate, "raw": raw},
                )
            )
        return events


def _time(ms: int) -> datetime:
    return epoch_ms(ms, "/opportunity")


def _archive_event(snapshot: Snapshot, archived: int, raw: dict[str, Any]) -> Event:
    if snapshot.hired:
        return snapshot.event(
            "ats.application.hired",
            event_id=hire_id(snapshot.opportunity_id, archived),
            time=_time(archived),
            raw=raw,
        )
    return snapshot.event(
        "ats.application.rejected",
        event_id=f"lever:poll:archived:{snapshot.opportunity_id}:{archived}",
        time=_time(archived),
        raw=raw,
    )
