"""Greenhouse scheduled-interview poller: ats.interview.scheduled, .rescheduled and .cancelled.

Greenhouse's webhooks carry no usable interview events (``interview_deleted`` names only the
interview id), so interviews are read from Harvest (GH-DOCS ``harvest/_scheduled_interviews.md``;
[V] unless marked):

- ``GET /v1/scheduled_interviews?updated_after=<since>&skip_count=true&per_page=500``, paged
  through ``Link``; each object has ``id``, ``application_id``, ``start`` / ``end`` as
  ``{"date_time"}`` or, all day, ``{"date"}`` (read as midnight UTC: our inference),
  ``status`` (``scheduled``, ``awaiting_feedback``, ``complete``; the last two become the
  canonical ``completed``), ``interview.name`` (the title), ``interviewers[]`` with ``email``,
  ``location``, ``video_conferencing_url`` and ``updated_at``. No time zone is given.
- The application (``GET /v1/applications/{id}``) and its candidate (``GET /v1/candidates?
  candidate_ids=``) fill the event's ``application`` and ``candidate``, normalised as the
  webhooks do (``poller.canonical``).
- There is no "cancelled" status: a cancelled interview is **deleted** and leaves every list
  [P: the ``interview_deleted`` webhook and ``DELETE /v1/scheduled_interviews/{id}`` are the
  only traces of a cancellation in the docs]. So a cancellation is inferred from absence.

A list shows states, not changes, so the poller keeps a small memory in the store
(``PollState.under`` / ``set`` / ``delete``), one entry per upcoming interview it announced:
``greenhouse:interview:<id>`` -> ``{"start", "end", "application"}``. With it:

- an interview not in memory that has not ended -> ats.interview.scheduled, id
  ``greenhouse:poll:interview:<id>:scheduled``. One seen only after it ended gives nothing (a
  scheduling email for a past interview would be wrong);
- one in memory whose start moved, not yet ended -> ats.interview.rescheduled with
  ``previous_start_at`` from memory, id ``greenhouse:poll:interview:<id>:rescheduled:
  <updated_at>``. Other edits (interviewers, location) give no event;
- after the updated feed, when memory holds interviews that have not ended, one more full read
  of ``GET /v1/scheduled_interviews?ends_after=<now>`` [V filter]; every remembered interview
  missing from it -> ats.interview.cancelled (``status: cancelled``, id ``greenhouse:poll:
  interview:<id>:cancelled``). Entries of interviews that ended are dropped.

The memory is written after the sink accepted the event, and the cursor (newest ``updated_at``,
under ``greenhouse:interviews``, re-read from ``overlap`` before it) only after the whole sweep;
a crash between the two re-reads and re-sends the same event id, a duplicate for intake. A
rescheduled-into-the-past interview that leaves the ``ends_after`` list between the two reads
of one sweep would look cancelled; the window is one sweep wide.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from adapters.greenhouse.poller import (
    HarvestPoller,
    canonical,
    newest_time,
    parse_time,
    skipped,
)
from adapters.greenhouse.reads import harvest_time
from adapters.greenhouse.webhooks import SOURCE
from adapters.normalise import (
    JsonObject,
    PayloadError,
    build_event,
    expect_object,
    normalise_email,
)

CURSOR_NAME = "greenhouse:interviews"
MEMORY = "greenhouse:interview:"
_STATUS = {"scheduled": "scheduled", "awaiting_feedback": "completed", "complete": "completed"}


def _edge(interview: JsonObject, key: str) -> datetime:
    node = interview.obj(key)
    moment = node.opt_time("date_time") or node.opt_time("date")
    if moment is None:
        raise PayloadError(node.pointer, "neither date_time nor date is given")
    return moment.astimezone(UTC)


def interview_record(raw: dict[str, Any]) -> dict[str, Any]:
    """The canonical interview of one Harvest scheduled interview."""
    node = expect_object(raw, "/scheduled_interview")
    kind = node.opt_obj("interview")
    return {
        "id": node.id("id"),
        "title": kind.opt_text("name") if kind is not None else None,
        "start_at": _edge(node, "start"),
        "end_at": _edge(node, "end"),
        "time_zone": None,
        "location": node.opt_text("location"),
        "video_url": node.opt_text("video_conferencing_url"),
        "interviewers": [
            {
                "id": person.opt_id("id"),
                "name": person.opt_text("name"),
                "email": normalise_email(person.opt_text("email")),
            }
            for person in node.objects("interviewers")
        ],
        "status": _STATUS.get(node.opt_text("status") or "", "scheduled"),
    }


class InterviewPoller(HarvestPoller):
    cursor_name = CURSOR_NAME
    # application id -> (application, candidate), None when gone; set afresh by each sweep
    _people: dict[str, tuple[dict[str, Any], dict[str, Any] | None] | None]

    async def poll_once(self) -> int:
        """One sweep: interviews updated since the cursor, then cancellations."""
        self._people = {}  # application and candidate lookups are cached for one sweep only
        return await self._updated() + await self._cancelled()

    async def _updated(self) -> int:
        cursor = await self.cursor()
        newest = cursor
        count = 0
        params = {"updated_after": harvest_time(cursor - self.overlap), "skip_count": "true"}
        async for page in self.reads.pages("/v1/scheduled_interviews", params):
            for raw in page:
                try:
                    count += await self._one(raw)
                except PayloadError as exc:
                    skipped("scheduled_interviews", raw, exc)
            newest = newest_time(newest, page, "updated_at")
        await self.advance(cursor, newest)
        return count

    async def _one(self, raw: dict[str, Any]) -> int:
        interview = interview_record(raw)
        memory = MEMORY + interview["id"]
        saved_text = await self.state.get(memory)
        saved = json.loads(saved_text) if saved_text else None
        upcoming = interview["end_at"] > self.clock.now()
        if not upcoming:
            if saved is not None:
                await self.state.delete(memory)
            return 0
        application_id = str(raw.get("application_id"))
        remembered = {
            "start": interview["start_at"].isoformat(),
            "end": interview["end_at"].isoformat(),
            "application": application_id,
        }
        sent = 0
        time = parse_time(raw.get("updated_at")) or self.clock.now()
        if saved is None:
            event_id = f"greenhouse:poll:interview:{interview['id']}:scheduled"
            sent = await self._send("ats.interview.scheduled", event_id, interview, raw, time)
        elif datetime.fromisoformat(saved["start"]) != interview["start_at"]:
            interview["previous_start_at"] = datetime.fromisoformat(saved["start"])
            event_id = (
                f"greenhouse:poll:interview:{interview['id']}:rescheduled:{raw.get('updated_at')}"
            )
            sent = await self._send("ats.interview.rescheduled", event_id, interview, raw, time)
        if saved != remembered:
            await self.state.set(memory, json.dumps(remembered, sort_keys=True))
        return sent

    async def _cancelled(self) -> int:
        now = self.clock.now()
        live: dict[str, dict[str, Any]] = {}
        for name, value in (await self.state.under(MEMORY)).items():
            saved = json.loads(value)
            if datetime.fromisoformat(saved["end"]) <= now:
                await self.state.delete(name)  # over: it can no longer be cancelled
            else:
                live[name.removeprefix(MEMORY)] = saved
        if not live:
            return 0
        present: set[str] = set()
        params = {"ends_after": harvest_time(now), "skip_count": "true"}
        async for page in self.reads.pages("/v1/scheduled_interviews", params):
            present.update(str(raw.get("id")) for raw in page)
        count = 0
        for interview_id, saved in sorted(live.items()):
            if interview_id in present:
                continue
            interview = {
                "id": interview_id,
                "start_at": datetime.fromisoformat(saved["start"]),
                "end_at": datetime.fromisoformat(saved["end"]),
                "status": "cancelled",
            }
            raw = {"id": interview_id, "application_id": saved["application"]}
            event_id = f"greenhouse:poll:interview:{interview_id}:cancelled"
            count += await self._send("ats.interview.cancelled", event_id, interview, raw, now)
            await self.state.delete(MEMORY + interview_id)
        return count

    async def _send(
        self,
        event_type: str,
        event_id: str,
        interview: dict[str, Any],
        raw: dict[str, Any],
        time: datetime,
    ) -> int:
        """Build and hand on one interview event; 0 when its application no longer exists."""
        found = await self._application(str(raw.get("application_id")))
        if found is None:
            skipped(
                "scheduled_interviews",
                raw,
                PayloadError("/application_id", "the application is gone (404)"),
            )
            return 0
        app, candidate = found
        _, cand, application, nested = canonical(
            "candidate_stage_change", app, candidate, self.clock, self.dnc
        )
        event = build_event(
            event_type=event_type,
            event_id=event_id,
            source=SOURCE,
            time=time,
            subject=cand["id"],
            data={
                "candidate": cand,
                "application": application,
                "interview": interview,
                "raw": {"scheduled_interview": raw, **nested},
            },
        )
        await self.sink(event)
        return 1

    async def _application(
        self, application_id: str
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        if application_id not in self._people:
            app = await self.reads.application(application_id)
            if app is None:
                self._people[application_id] = None
            else:
                candidate_id = str(app.get("candidate_id"))
                people = await self.reads.candidates([candidate_id])
                self._people[application_id] = (app, people.get(candidate_id))
        return self._people[application_id]
