"""Greenhouse application poller, for accounts that cannot (or do not) configure webhooks.

Reads ``GET /v1/applications?last_activity_after=<since>&skip_count=true&per_page=500``
page by page through the ``Link`` header (``adapters/greenhouse/reads.py``), the candidates of
each page in one ``GET /v1/candidates?candidate_ids=`` per 50, and hands the same canonical
events the webhooks produce (``webhooks.application_records``, so both paths normalise alike)
to a sink (intake). The interview poller is ``interviews.py``.

Harvest facts relied on ([V] unless marked; GH-DOCS ``harvest/_applications.md``):

- applications have no ``updated_after`` filter; ``last_activity_after`` ("at or after") is the
  one that follows changes. That a stage move, a rejection and a hire each advance
  ``last_activity_at`` is [P]: the stage-change webhook example carries the move's time there;
- the list object has ``candidate_id`` but no nested candidate, and no hire time and no
  stage-entered time (so a hire is timed by ``last_activity_at``);
- ``status`` is ``active``, ``rejected``, ``hired`` or ``converted``.

Cursor: the newest ``last_activity_at`` seen (ISO-8601), saved under ``greenhouse:applications``
only after the sink accepted every event of the sweep, so a crash re-reads instead of skipping.
Each sweep starts ``overlap`` before the cursor, for writes Greenhouse records late; what is
re-read produces the same event ids, which intake acknowledges as duplicates.

What changed is inferred from the application alone (Harvest has no change log), with the
sweep's lower bound ``since`` = cursor - overlap:

- ``applied_at >= since`` -> ats.application.created, id ``greenhouse:poll:created:<app>``;
- an active application whose ``current_stage`` is not the stage the engine last saw for it
  (``PollState.stage``, the memory that fills ``previous_stage``; asked after this sweep's
  created event was accepted) -> ats.application.stage_changed, id
  ``greenhouse:poll:stage:<app>:<stage id>:<last_activity_at>``. Activity that moves nothing (a
  note, our own write-backs) therefore produces no event. The poller sees states, not
  transitions: a stage left and re-entered between two sweeps is missed, and an application
  the engine never saw that has activity is reported once in its current stage;
- ``status == rejected`` and ``rejected_at >= since`` -> ats.application.rejected, id
  ``greenhouse:poll:rejected:<app>:<rejected_at>``;
- ``status == hired`` and ``last_activity_at >= since`` -> ats.application.hired, id
  ``greenhouse:poll:hired:<app>`` (one hire per application).

Candidate-only changes (a "Do Not Contact" tag, ``can_email``), deletions, merges and
anonymisation are not in the application list: they still need the webhooks. The event ids
differ from webhook deliveries, so an account sends its application events by webhook **or**
lets this poller read them (``vendors.greenhouse.poll: [interviews]`` keeps only the interview
poller). A record whose shape the normaliser refuses is logged and skipped, so one bad record
cannot stop every later sweep.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any, Protocol

from adapters.greenhouse.reads import HarvestReads, harvest_time
from adapters.greenhouse.webhooks import (
    APPLICATION_EVENTS,
    DO_NOT_CONTACT_TAGS,
    SOURCE,
    application_records,
    do_not_contact_set,
)
from adapters.normalise import (
    SYSTEM_CLOCK,
    Clock,
    PayloadError,
    build_event,
    expect_object,
)
from engine import Event

Sink = Callable[[Event], Awaitable[Any]]
CURSOR_NAME = "greenhouse:applications"
log = logging.getLogger("nurture.greenhouse.poller")


class PollState(Protocol):
    """Cursors and memory in the store (``engine.cursors.StoreCursors``)."""

    async def get(self, name: str) -> str | None: ...

    async def set(self, name: str, value: str) -> None: ...

    async def under(self, prefix: str) -> dict[str, str]: ...

    async def delete(self, name: str) -> None: ...

    async def stage(self, application_id: str) -> dict[str, Any] | None: ...


def parse_time(value: Any) -> datetime | None:
    """A Harvest timestamp, None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def skipped(feed: str, record: Any, error: PayloadError) -> None:
    """Log a record the normaliser refused (the sweep goes on without it)."""
    record_id = record.get("id") if isinstance(record, dict) else None
    log.warning(
        json.dumps(
            {"decision": "poll_record_skipped", "feed": feed, "id": record_id, "error": str(error)}
        )
    )


def canonical(
    action: str,
    app: dict[str, Any],
    candidate: dict[str, Any] | None,
    clock: Clock,
    dnc: frozenset[str],
) -> tuple[datetime, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Time, candidate, application and raw of a Harvest application and its candidate, nested
    as a webhook nests them (a candidate Harvest did not return is known by id only)."""
    person = candidate if candidate is not None else {"id": app.get("candidate_id")}
    nested = {**app, "candidate": person}
    time, cand, application = application_records(
        action, expect_object(nested, "/application"), clock, dnc
    )
    return time, cand, application, {"application": nested}


def newest_time(newest: datetime, records: list[dict[str, Any]], key: str) -> datetime:
    """The latest of ``newest`` and the records' readable ``key`` times."""
    for record in records:
        moment = parse_time(record.get(key))
        if moment is not None:
            newest = max(newest, moment)
    return newest


class HarvestPoller:
    """What both Greenhouse pollers share: the Harvest reads, the store's state, the sink and a
    time cursor saved under ``name`` (``cursor_name`` unless given; ``start`` before the first
    sweep saves one), re-read from ``overlap`` before it."""

    cursor_name = CURSOR_NAME

    def __init__(
        self,
        reads: HarvestReads,
        state: PollState,
        sink: Sink,
        *,
        start: datetime,
        overlap: timedelta = timedelta(minutes=5),
        clock: Clock = SYSTEM_CLOCK,
        do_not_contact_tags: Collection[str] = DO_NOT_CONTACT_TAGS,
        name: str | None = None,
    ) -> None:
        self.reads = reads
        self.state = state
        self.sink = sink
        self.start = start
        self.overlap = overlap
        self.clock = clock
        self.dnc = do_not_contact_set(do_not_contact_tags)
        self.name = self.cursor_name if name is None else name

    async def cursor(self) -> datetime:
        """The saved cursor, else ``start``."""
        saved = await self.state.get(self.name)
        return datetime.fromisoformat(saved) if saved else self.start

    async def advance(self, cursor: datetime, newest: datetime) -> None:
        """Save ``newest`` as the cursor when the sweep saw something later than ``cursor``."""
        if newest > cursor:
            await self.state.set(self.name, newest.isoformat())


class ApplicationPoller(HarvestPoller):
    async def poll_once(self) -> int:
        """Read every application with activity since the cursor; returns events handed on."""
        cursor = await self.cursor()
        since = cursor - self.overlap
        newest = cursor
        count = 0
        params = {"last_activity_after": harvest_time(since), "skip_count": "true"}
        async for page in self.reads.pages("/v1/applications", params):
            in_play = [app for app in page if await self._may_change(app, since)]
            people = await self.reads.candidates(
                str(app["candidate_id"]) for app in in_play if app.get("candidate_id") is not None
            )
            for app in in_play:
                candidate = people.get(str(app.get("candidate_id")))
                try:
                    count += await self._emit(app, candidate, since)
                except PayloadError as exc:
                    skipped("applications", app, exc)
            newest = newest_time(newest, page, "last_activity_at")
        await self.advance(cursor, newest)
        return count

    async def _may_change(self, app: dict[str, Any], since: datetime) -> bool:
        """Whether the application can give an event (so its candidate is worth fetching)."""
        applied = parse_time(app.get("applied_at"))
        if applied is not None and applied >= since:
            return True
        status = app.get("status")
        if status == "rejected":
            rejected = parse_time(app.get("rejected_at"))
            return rejected is not None and rejected >= since
        if status == "hired":
            return True  # listed, so its last activity is within the sweep
        return status == "active" and await self._stage_moved(app)

    async def _stage_moved(self, app: dict[str, Any]) -> bool:
        stage = app.get("current_stage")
        if not isinstance(stage, dict) or stage.get("id") is None:
            return False
        seen = await self.state.stage(str(app.get("id")))
        return seen is None or str(seen.get("id")) != str(stage["id"])

    async def _emit(
        self, app: dict[str, Any], candidate: dict[str, Any] | None, since: datetime
    ) -> int:
        """Hand the events this application stands for to the sink, in order (module doc)."""
        app_id = str(app.get("id"))
        status = app.get("status")
        activity = parse_time(app.get("last_activity_at"))
        applied = parse_time(app.get("applied_at"))
        rejected = parse_time(app.get("rejected_at"))
        count = 0
        if applied is not None and applied >= since:
            action = (
                "new_prospect_application" if app.get("prospect") else "new_candidate_application"
            )
            await self._send(action, f"greenhouse:poll:created:{app_id}", app, candidate)
            count += 1
        # asked after the created event, whose acceptance remembered the stage it carried
        if status == "active" and await self._stage_moved(app):
            stage_id = app["current_stage"]["id"]
            event_id = f"greenhouse:poll:stage:{app_id}:{stage_id}:{app.get('last_activity_at')}"
            await self._send("candidate_stage_change", event_id, app, candidate)
            count += 1
        if status == "rejected" and rejected is not None and rejected >= since:
            event_id = f"greenhouse:poll:rejected:{app_id}:{app.get('rejected_at')}"
            await self._send("reject_candidate", event_id, app, candidate)
            count += 1
        if status == "hired" and activity is not None and activity >= since:
            await self._send("hire_candidate", f"greenhouse:poll:hired:{app_id}", app, candidate)
            count += 1
        return count

    async def _send(
        self, action: str, event_id: str, app: dict[str, Any], candidate: dict[str, Any] | None
    ) -> None:
        time, cand, application, raw = canonical(action, app, candidate, self.clock, self.dnc)
        event = build_event(
            event_type=APPLICATION_EVENTS[action],
            event_id=event_id,
            source=SOURCE,
            time=time,
            subject=cand["id"],
            data={"candidate": cand, "application": application, "raw": raw},
        )
        await self.sink(event)
