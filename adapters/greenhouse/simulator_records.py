"""The Harvest simulator's recruiting records: candidates, applications, scheduled interviews.

What the pollers read, with the shapes of GH-DOCS ``harvest/_candidates.md``,
``_applications.md`` and ``_scheduled_interviews.md`` (trimmed to what a rules engine uses):

- ``GET /v1/applications`` filtered by ``last_activity_after`` and ``created_after`` (at or
  after [V]; applications have no ``updated_after`` [V]), ``GET /v1/applications/{id}``;
- ``GET /v1/candidates`` filtered by ``updated_after`` and ``candidate_ids`` (comma separated,
  at most 50 returned [V]; extra ids are dropped, not refused [U]), ``GET /v1/candidates/{id}``
  with the tags applied through the tag routes;
- ``GET /v1/scheduled_interviews`` filtered by ``updated_after``, ``starts_after`` and
  ``ends_after`` [V], ``GET`` and ``DELETE /v1/scheduled_interviews/{id}`` [V]. Status is
  ``scheduled``, ``awaiting_feedback`` or ``complete`` [V]; Greenhouse has no "cancelled"
  status: a cancelled interview is deleted and disappears from the lists [P: the
  ``interview_deleted`` webhook and the DELETE route are the only traces of a cancellation].

Every list pages with ``per_page`` (1-500, default 100) and ``page`` and answers a ``Link``
header (``next``/``prev``, and ``last`` unless ``skip_count=true``) only when there is more than
one page [V]. Order is by id [U: Harvest's order is not documented]. Unknown ids answer 404.

Tests drive the records through the harness methods (``add_candidate``, ``add_application``,
``move_stage``, ``reject``, ``hire``, ``schedule_interview``, ``reschedule_interview``,
``cancel_interview``, ``complete_interview``); each takes the moment it happens (``at``), so
``updated_at`` / ``last_activity_at`` follow the test's clock, not the wall clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 100
MAX_CANDIDATE_IDS = 50


def stamp(moment: datetime) -> str:
    """Harvest's timestamp form: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _invalid(field_name: str, message: str) -> web.Response:
    return web.json_response(
        {"message": "Validation error", "errors": [{"message": message, "field": field_name}]},
        status=422,
    )


def _not_found() -> web.Response:
    return web.json_response({"message": "Resource not found"}, status=404)


def paginated(request: web.Request, items: list[Any]) -> web.Response:
    """One page of ``items`` by ``per_page`` / ``page``, with Harvest's ``Link`` header."""
    try:
        per_page = int(request.query.get("per_page", DEFAULT_PER_PAGE))
        page = int(request.query.get("page", 1))
    except ValueError:
        return _invalid("per_page", "must be an integer")
    if not 1 <= per_page <= MAX_PER_PAGE:
        return _invalid("per_page", f"must be between 1 and {MAX_PER_PAGE}")
    if page < 1:
        return _invalid("page", "must be at least 1")
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {}
    if last > 1:

        def link(number: int) -> str:
            return str(request.url.update_query({"page": str(number), "per_page": str(per_page)}))

        parts = []
        if page < last:
            parts.append(f'<{link(page + 1)}>; rel="next"')
        if page > 1:
            parts.append(f'<{link(page - 1)}>; rel="prev"')
        if request.query.get("skip_count") != "true":
            parts.append(f'<{link(last)}>; rel="last"')
        headers["Link"] = ", ".join(parts)
    return web.json_response(chunk, headers=headers)


def _moment(request: web.Request, name: str) -> datetime | web.Response | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return _invalid(name, "must be an ISO-8601 timestamp")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _at_or_after(records: Iterable[dict[str, Any]], key: str, bound: datetime | None) -> list[Any]:
    if bound is None:
        return list(records)
    return [r for r in records if r.get(key) and datetime.fromisoformat(r[key]) >= bound]


@dataclass
class Records:
    candidates: dict[int, dict[str, Any]] = field(default_factory=dict)
    applications: dict[int, dict[str, Any]] = field(default_factory=dict)
    interviews: dict[int, dict[str, Any]] = field(default_factory=dict)


class HarvestRecords:
    """Candidates, applications and scheduled interviews, with their routes and harness."""

    def __init__(self, tags_of: Callable[[str], list[str]]) -> None:
        self.tags_of = tags_of
        self.state = Records()
        self._application_ids = itertools.count(93300000)
        self._interview_ids = itertools.count(9128000)
        self._stage_ids: dict[str, int] = {}

    def reset(self) -> None:
        self.state = Records()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/applications", self._list_applications)
        router.add_get("/v1/applications/{id}", self._get_application)
        router.add_get("/v1/candidates", self._list_candidates)
        router.add_get("/v1/candidates/{id}", self._get_candidate)
        router.add_get("/v1/scheduled_interviews", self._list_interviews)
        router.add_get("/v1/scheduled_interviews/{id}", self._get_interview)
        router.add_delete("/v1/scheduled_interviews/{id}", self._delete_interview)

    # -- harness: candidates and applications ------------------------------------------------
    def add_candidate(
        self,
        candidate_id: int,
        first_name: str,
        last_name: str,
        email: str | None,
        *,
        at: datetime,
        tags: list[str] | None = None,
        can_email: bool = True,
        recruiter: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        candidate = {
            "id": candidate_id,
            "first_name": first_name,
            "last_name": last_name,
            "created_at": stamp(at),
            "updated_at": stamp(at),
            "last_activity": stamp(at),
            "email_addresses": [{"value": email, "type": "personal"}] if email else [],
            "phone_numbers": [],
            "recruiter": recruiter,
            "can_email": can_email,
            "tags": list(tags or []),
            "application_ids": [],
        }
        self.state.candidates[candidate_id] = candidate
        return candidate

    def add_application(
        self,
        candidate_id: int,
        job: tuple[int, str],
        stage: str,
        *,
        at: datetime,
        prospect: bool = False,
        source: str | None = None,
        application_id: int | None = None,
    ) -> int:
        app_id = application_id if application_id is not None else next(self._application_ids)
        self.state.applications[app_id] = {
            "id": app_id,
            "candidate_id": candidate_id,
            "prospect": prospect,
            "applied_at": stamp(at),
            "rejected_at": None,
            "last_activity_at": stamp(at),
            "source": {"id": 1, "public_name": source} if source else None,
            "credited_to": None,
            "rejection_reason": None,
            "jobs": [{"id": job[0], "name": job[1]}],
            "status": "active",
            "current_stage": self._stage(stage),
        }
        candidate = self.state.candidates[candidate_id]
        candidate["application_ids"].append(app_id)
        candidate["updated_at"] = candidate["last_activity"] = stamp(at)
        return app_id

    def _stage(self, name: str) -> dict[str, Any]:
        """The same stage name always has the same id, as in one job's interview plan."""
        stage_id = self._stage_ids.setdefault(name, 7700100 + len(self._stage_ids))
        return {"id": stage_id, "name": name}

    def _touch(self, app_id: int, at: datetime, **changes: Any) -> None:
        application = self.state.applications[app_id]
        application.update(changes, last_activity_at=stamp(at))
        candidate = self.state.candidates.get(application["candidate_id"])
        if candidate is not None:
            candidate["last_activity"] = stamp(at)

    def move_stage(self, app_id: int, stage: str, *, at: datetime) -> None:
        self._touch(app_id, at, current_stage=self._stage(stage))

    def reject(self, app_id: int, reason: str, *, at: datetime) -> None:
        self._touch(
            app_id,
            at,
            status="rejected",
            rejected_at=stamp(at),
            rejection_reason={
                "id": 8,
                "name": reason,
                "type": {"id": 1, "name": "We rejected them"},
            },
        )

    def hire(self, app_id: int, *, at: datetime) -> None:
        self._touch(app_id, at, status="hired")

    def note_activity(self, app_id: int, *, at: datetime) -> None:
        """Activity that changes nothing a rule sees (a note, an email): only the time moves."""
        self._touch(app_id, at)

    # -- harness: interviews ---------------------------------------------------------------
    def schedule_interview(
        self,
        app_id: int,
        start: datetime,
        end: datetime,
        *,
        at: datetime,
        name: str = "Technical Interview",
        interviewers: list[dict[str, Any]] | None = None,
        location: str | None = None,
        video_url: str | None = None,
    ) -> int:
        interview_id = next(self._interview_ids)
        people = interviewers or [{"id": 4080, "name": "Kate Austen", "email": "kate@example.com"}]
        self.state.interviews[interview_id] = {
            "id": interview_id,
            "application_id": app_id,
            "external_event_id": f"event-{interview_id}",
            "start": {"date_time": stamp(start)},
            "end": {"date_time": stamp(end)},
            "location": location,
            "video_conferencing_url": video_url,
            "status": "scheduled",
            "created_at": stamp(at),
            "updated_at": stamp(at),
            "interview": {"id": 7001, "name": name},
            "organizer": None,
            "interviewers": [
                {**p, "employee_id": None, "response_status": "needs_action", "scorecard_id": None}
                for p in people
            ],
        }
        self._touch(app_id, at)
        return interview_id

    def reschedule_interview(
        self, interview_id: int, start: datetime, end: datetime, *, at: datetime
    ) -> None:
        interview = self.state.interviews[interview_id]
        interview.update(
            start={"date_time": stamp(start)}, end={"date_time": stamp(end)}, updated_at=stamp(at)
        )
        self._touch(interview["application_id"], at)

    def cancel_interview(self, interview_id: int, *, at: datetime) -> None:
        """Greenhouse deletes a cancelled interview: it leaves every list."""
        interview = self.state.interviews.pop(interview_id)
        self._touch(interview["application_id"], at)

    def complete_interview(self, interview_id: int, *, at: datetime) -> None:
        self.state.interviews[interview_id].update(status="awaiting_feedback", updated_at=stamp(at))

    # -- routes ----------------------------------------------------------------------------
    def _candidate(self, candidate: dict[str, Any]) -> dict[str, Any]:
        applied = self.tags_of(str(candidate["id"]))
        tags = candidate["tags"] + [t for t in applied if t not in candidate["tags"]]
        return {**candidate, "tags": tags}

    async def _list_applications(self, request: web.Request) -> web.Response:
        items = sorted(self.state.applications.values(), key=lambda a: a["id"])
        for name, key in (
            ("last_activity_after", "last_activity_at"),
            ("created_after", "applied_at"),
        ):
            bound = _moment(request, name)
            if isinstance(bound, web.Response):
                return bound
            items = _at_or_after(items, key, bound)
        return paginated(request, items)

    async def _get_application(self, request: web.Request) -> web.Response:
        found = self.state.applications.get(_int(request.match_info["id"]))
        return web.json_response(found) if found is not None else _not_found()

    async def _list_candidates(self, request: web.Request) -> web.Response:
        items = sorted(self.state.candidates.values(), key=lambda c: c["id"])
        bound = _moment(request, "updated_after")
        if isinstance(bound, web.Response):
            return bound
        items = _at_or_after(items, "updated_at", bound)
        wanted = request.query.get("candidate_ids")
        if wanted is not None:
            ids = [_int(part) for part in wanted.split(",") if part.strip()]
            items = [c for c in items if c["id"] in ids][:MAX_CANDIDATE_IDS]
        return paginated(request, [self._candidate(c) for c in items])

    async def _get_candidate(self, request: web.Request) -> web.Response:
        found = self.state.candidates.get(_int(request.match_info["id"]))
        return web.json_response(self._candidate(found)) if found is not None else _not_found()

    async def _list_interviews(self, request: web.Request) -> web.Response:
        items = sorted(self.state.interviews.values(), key=lambda i: i["id"])
        for name in ("updated_after", "starts_after", "ends_after"):
            bound = _moment(request, name)
            if isinstance(bound, web.Response):
                return bound
            if bound is not None:
                items = [i for i in items if _interview_time(i, name) >= bound]
        return paginated(request, items)

    async def _get_interview(self, request: web.Request) -> web.Response:
        found = self.state.interviews.get(_int(request.match_info["id"]))
        return web.json_response(found) if found is not None else _not_found()

    async def _delete_interview(self, request: web.Request) -> web.Response:
        interview_id = _int(request.match_info["id"])
        if self.state.interviews.pop(interview_id, None) is None:
            return _not_found()
        return web.json_response({"message": f"Interview {interview_id} has been deleted."})


def _int(value: str) -> int:
    return int(value) if value.strip().isdigit() else -1


def _interview_time(interview: dict[str, Any], bound: str) -> datetime:
    if bound == "updated_after":
        return datetime.fromisoformat(interview["updated_at"])
    edge = interview["start" if bound == "starts_after" else "end"]
    if "date_time" in edge:
        return datetime.fromisoformat(edge["date_time"])
    return datetime.fromisoformat(edge["date"]).replace(tzinfo=UTC)
