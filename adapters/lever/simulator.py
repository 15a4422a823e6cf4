"""A loopback Lever Data API v1 that behaves like the contract says, for tests, demo and trials.

What it does (shared/contracts section 2; [P] community code only, [U] unverified):

- Auth: HTTP Basic, the API key as username, any password [P]; otherwise 401
  ``{"code": "UnauthorizedError", "message": ...}`` [U body].
- Envelopes: ``{"data": {...}}`` and ``{"data": [...], "hasNext", "next"}`` [P]. Lists take
  ``limit`` 1-100 (default 100; out of range answers 400 [U]) and ``offset=<next>`` [P]. Items
  are ordered by ``(updatedAt, id)`` ascending and ``next`` is a keyset token: the URL-encoded
  JSON ``[updatedAt, id]`` of the page's last item, like the contract's example token (whose
  meaning is [U]); an item updated while a client pages moves behind the cursor, so it is still
  seen.
- ``GET /opportunities`` filters ``contact_id``, ``updated_at_start``, ``updated_at_end`` (epoch
  ms, inclusive), ``archived`` (true/false), ``stage_id``, ``tag``, ``email`` [P names];
  ``expand`` (repeatable) ``stage`` -> ``{id, text}``, ``owner`` -> ``{id, name, email}``,
  ``applications`` -> ``[{id, type, posting, createdAt, opportunityId}]``, ``contact`` ->
  ``{id, name, emails}`` [P]; unexpanded they are ids.
- ``GET /opportunities/{id}``, ``GET /stages``, ``GET /archive_reasons`` and ``/{id}``
  (``{id, text, type: "hired"|"non-hired"}`` [U fields]), ``GET /postings/{id}`` ``{id, text,
  state, categories, urls}`` [P]; an unknown id answers 404 ``{"code": "ResourceNotFound",
  "message"}`` [U body].
- Writes need ``?perform_as=<user id>`` [P]; missing or unknown answers 400 [U status]:
  ``POST /opportunities/{id}/addTags`` / ``removeTags`` ``{"tags": [..]}`` [P/U] answer the
  opportunity; ``POST /opportunities/{id}/notes`` ``{"value"}`` answers ``{"data": {id, text,
  user, createdAt}}`` [P id / U rest]. A write bumps ``updatedAt``.
- Rate limit: a sliding window of ``rate_limit`` requests per ``window`` seconds (default 10 per
  second [U]); past it 429 ``{"code": "TooManyRequests", ...}`` with ``Retry-After`` (whole
  seconds) unless ``send_retry_after=False`` (Lever's header is disputed [U]). Clocks are
  injected, so tests never sleep.

Fault injection: ``fail_next(status, ...)`` answers the next matching requests with any status.
Every request is kept in ``requests``. Harness routes (no auth, not counted): ``POST /_reset``,
``GET /_stats``, ``POST /_faults``. Webhook helpers: ``sign`` and ``signed_webhook`` build
deliveries with the real signature scheme (hex HMAC-SHA256(signatureToken, token +
str(triggeredAt))) for tests.

Run standalone: ``python -m adapters.lever.simulator --port 8103 --api-key K``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import itertools
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from adapters.simulation import (
    Fault,
    FaultInjection,
    basic_credentials,
    fault_route,
    recorded_body,
    sliding_window_wait,
    take_fault,
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_LIMIT = 100


# -- webhook helpers -------------------------------------------------------------------------


def sign(token: str, triggered_at: int, secret: str) -> str:
    """hex HMAC-SHA256(secret, token + str(triggered_at)): Lever's webhook signature [P]."""
    return hmac.new(secret.encode(), f"{token}{triggered_at}".encode(), hashlib.sha256).hexdigest()


def signed_webhook(
    event: str,
    data: Mapping[str, Any],
    *,
    secret: str,
    triggered_at: int,
    token: str | None = None,
) -> bytes:
    """A signed Lever webhook body, as Lever would post it."""
    token = token or uuid.uuid4().hex
    return json.dumps(
        {
            "triggeredAt": triggered_at,
            "event": event,
            "signature": sign(token, triggered_at, secret),
            "token": token,
            "data": dict(data),
        }
    ).encode()


def resign(body: Mapping[str, Any], secret: str, *, triggered_at: int | None = None) -> bytes:
    """``body`` (e.g. an example payload) signed with ``secret``; keeps its token."""
    document = dict(body)
    if triggered_at is not None:
        document["triggeredAt"] = triggered_at
    document["signature"] = sign(str(document["token"]), int(document["triggeredAt"]), secret)
    return json.dumps(document).encode()


# -- state -----------------------------------------------------------------------------------


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class LeverState:
    opportunities: dict[str, dict[str, Any]] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)
    archive_reasons: dict[str, dict[str, Any]] = field(default_factory=dict)
    postings: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    sent: deque[float] = field(default_factory=deque)
    rate_limited: int = 0


class LeverSimulator(FaultInjection):
    def __init__(
        self,
        api_key: str = "test-lever-key",
        *,
        rate_limit: int = 10,
        window: float = 1.0,
        send_retry_after: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.window = window
        self.send_retry_after = send_retry_after
        self.monotonic = monotonic
        self.wall_ms = wall_ms
        self.state = LeverState()
        self._ids = itertools.count(1)

    # -- seeding ----------------------------------------------------------------------------
    def add_user(self, user_id: str, name: str, email: str) -> None:
        self.state.users[user_id] = {"id": user_id, "name": name, "email": email}

    def add_stage(self, stage_id: str, text: str) -> None:
        self.state.stages[stage_id] = text

    def add_archive_reason(self, reason_id: str, text: str, *, hired: bool = False) -> None:
        self.state.archive_reasons[reason_id] = {
            "id": reason_id,
            "text": text,
            "type": "hired" if hired else "non-hired",
        }

    def add_posting(
        self,
        posting_id: str,
        title: str,
        *,
        state: str = "published",
        team: str | None = None,
        department: str | None = None,
        location: str | None = None,
    ) -> None:
        self.state.postings[posting_id] = {
            "id": posting_id,
            "text": title,
            "state": state,
            "categories": {"team": team, "department": department, "location": location},
            "urls": {
                "show": f"https://jobs.lever.co/example/{posting_id}",
                "apply": f"https://jobs.lever.co/example/{posting_id}/apply",
            },
        }

    def add_opportunity(
        self,
        opportunity_id: str,
        *,
        contact: str,
        name: str,
        emails: list[str],
        stage: str,
        created_at: int,
        updated_at: int | None = None,
        owner: str | None = None,
        origin: str = "applied",
        sources: list[str] | None = None,
        tags: list[str] | None = None,
        posting: str | None = None,
        application_id: str | None = None,
        phones: list[dict[str, str]] | None = None,
        archived: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Seed one opportunity (and its application when ``posting`` is given)."""
        applications: list[str] = []
        if posting is not None or application_id is not None:
            app_id = application_id or f"app-{opportunity_id}"
            self.state.applications[app_id] = {
                "id": app_id,
                "type": "posting",
                "posting": posting,
                "createdAt": created_at,
                "opportunityId": opportunity_id,
                "candidateId": contact,
            }
            applications.append(app_id)
        opportunity: dict[str, Any] = {
            "id": opportunity_id,
            "name": name,
            "contact": contact,
            "emails": list(emails),
            "phones": list(phones or []),
            "stage": stage,
            "tags": list(tags or []),
            "sources": list(sources or []),
            "origin": origin,
            "owner": owner,
            "applications": applications,
            "archived": archived,
            "createdAt": created_at,
            "updatedAt": updated_at if updated_at is not None else created_at,
            "lastAdvancedAt": created_at,
            "urls": {"show": f"https://hire.lever.co/candidates/{opportunity_id}"},
        }
        self.state.opportunities[opportunity_id] = opportunity
        return opportunity

    def move_stage(self, opportunity_id: str, stage: str, at: int) -> None:
        opportunity = self.state.opportunities[opportunity_id]
        opportunity.update(stage=stage, lastAdvancedAt=at, updatedAt=at)

    def archive(self, opportunity_id: str, reason: str | None, at: int) -> None:
        """Archive with ``reason`` (an archive-reason id), or un-archive with None."""
        opportunity = self.state.opportunities[opportunity_id]
        archived = None if reason is None else {"archivedAt": at, "reason": reason}
        opportunity.update(archived=archived, updatedAt=at)

    def touch(self, opportunity_id: str, at: int, **fields: Any) -> None:
        self.state.opportunities[opportunity_id].update(fields, updatedAt=at)

    # -- harness ----------------------------------------------------------------------------
    def injected_faults(self) -> list[Fault]:
        return self.state.faults

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [
            r for r in self.state.requests if r.method == method and r.path.startswith(path_prefix)
        ]

    def tags_of(self, opportunity_id: str) -> list[str]:
        return list(self.state.opportunities[opportunity_id]["tags"])

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self.state.requests),
            "opportunities": len(self.state.opportunities),
            "tags": {i: o["tags"] for i, o in self.state.opportunities.items() if o["tags"]},
            "notes": sum(len(n) for n in self.state.notes.values()),
            "rate_limited": self.state.rate_limited,
        }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/v1/opportunities", self._list_opportunities)
        r.add_get("/v1/opportunities/{id}", self._get_opportunity)
        r.add_post("/v1/opportunities/{id}/addTags", self._add_tags)
        r.add_post("/v1/opportunities/{id}/removeTags", self._remove_tags)
        r.add_post("/v1/opportunities/{id}/notes", self._add_note)
        r.add_get("/v1/stages", self._list_stages)
        r.add_get("/v1/archive_reasons", self._list_reasons)
        r.add_get("/v1/archive_reasons/{id}", self._get_reason)
        r.add_get("/v1/postings/{id}", self._get_posting)
        r.add_post("/_reset", self._reset)
        r.add_get("/_stats", self._stats)
        r.add_post("/_faults", fault_route(self.fail_next))
        return app

    # -- middleware: record, auth, rate limit, faults, perform_as ---------------------------
    async def _record(self, request: web.Request) -> None:
        body = await recorded_body(request)
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        self.state.requests.append(
            RecordedRequest(request.method, request.path, query, dict(request.headers), body)
        )

    def _count(self) -> web.Response | None:
        wait = sliding_window_wait(self.state.sent, self.monotonic(), self.rate_limit, self.window)
        if wait is None:
            return None
        self.state.rate_limited += 1
        return self._too_many(wait)

    def _too_many(self, wait: float) -> web.Response:
        headers = {"Retry-After": str(max(1, math.ceil(wait)))} if self.send_retry_after else {}
        return _error(429, "TooManyRequests", "Rate limit exceeded", headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await handler(request)  # type: ignore[no-any-return]
        await self._record(request)
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None or credentials[0] != self.api_key:
            return _error(401, "UnauthorizedError", "Invalid API key")
        limited = self._count()
        if limited is not None:
            return limited
        fault = take_fault(self.state.faults, request.path)
        if fault is not None:
            if fault.status == 429:
                self.state.rate_limited += 1
                return self._too_many(fault.retry_after or 1)
            return _error(fault.status, "InjectedFault", "injected fault", headers=fault.headers())
        if request.method in WRITE_METHODS:
            user = request.query.get("perform_as")
            if not user:
                return _error(400, "BadRequestError", "perform_as is required for this request")
            if self.state.users and user not in self.state.users:
                return _error(400, "BadRequestError", f"perform_as user {user} not found")
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except web.HTTPException as exc:
            code = "ResourceNotFound" if exc.status == 404 else "BadRequestError"
            return _error(exc.status, code, exc.reason)

    # -- helpers ----------------------------------------------------------------------------
    def _expanded(self, opportunity: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        item = copy.deepcopy(opportunity)
        if "stage" in expand and item["stage"] is not None:
            item["stage"] = {"id": item["stage"], "text": self.state.stages.get(item["stage"])}
        if "owner" in expand and item["owner"] is not None:
            item["owner"] = copy.deepcopy(
                self.state.users.get(item["owner"], {"id": item["owner"]})
            )
        if "applications" in expand:
            item["applications"] = [
                copy.deepcopy(self.state.applications[a])
                for a in item["applications"]
                if a in self.state.applications
            ]
        if "contact" in expand:
            item["contact"] = {
                "id": item["contact"],
                "name": item["name"],
                "emails": list(item["emails"]),
            }
        return item

    @staticmethod
    def _page(
        request: web.Request, items: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
    ) -> web.Response:
        try:
            limit = int(request.query.get("limit", str(MAX_LIMIT)))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, "BadRequestError", f"limit must be between 1 and {MAX_LIMIT}")
        ordered = sorted(items, key=key)
        offset = request.query.get("offset")
        if offset:
            try:
                after = tuple(json.loads(unquote(offset)))
            except (ValueError, TypeError):
                return _error(400, "BadRequestError", "invalid offset")
            ordered = [i for i in ordered if tuple(key(i)) > after]
        page = ordered[:limit]
        has_next = len(ordered) > limit
        body: dict[str, Any] = {"data": page, "hasNext": has_next}
        if has_next:
            body["next"] = quote(json.dumps(list(key(page[-1])), separators=(",", ":")))
        return web.json_response(body)

    def _opportunity(self, request: web.Request) -> dict[str, Any] | None:
        return self.state.opportunities.get(request.match_info["id"])

    @staticmethod
    def _not_found(what: str) -> web.Response:
        return _error(404, "ResourceNotFound", f"{what} not found")

    # -- opportunities ----------------------------------------------------------------------
    async def _list_opportunities(self, request: web.Request) -> web.Response:
        query = request.query
        items = list(self.state.opportunities.values())
        try:
            start = int(query["updated_at_start"]) if "updated_at_start" in query else None
            end = int(query["updated_at_end"]) if "updated_at_end" in query else None
        except ValueError:
            return _error(400, "BadRequestError", "invalid timestamp")
        if start is not None:
            items = [o for o in items if o["updatedAt"] >= start]
        if end is not None:
            items = [o for o in items if o["updatedAt"] <= end]
        if "contact_id" in query:
            items = [o for o in items if o["contact"] == query["contact_id"]]
        if "archived" in query:
            wanted = query["archived"].lower() == "true"
            items = [o for o in items if (o["archived"] is not None) == wanted]
        if "stage_id" in query:
            items = [o for o in items if o["stage"] == query["stage_id"]]
        if "tag" in query:
            items = [o for o in items if query["tag"] in o["tags"]]
        if "email" in query:
            items = [o for o in items if query["email"].lower() in map(str.lower, o["emails"])]
        expand = query.getall("expand", [])
        expanded = [self._expanded(o, expand) for o in items]
        return self._page(request, expanded, lambda o: [o["updatedAt"], o["id"]])

    async def _get_opportunity(self, request: web.Request) -> web.Response:
        opportunity = self._opportunity(request)
        if opportunity is None:
            return self._not_found("Opportunity")
        expand = request.query.getall("expand", [])
        return web.json_response({"data": self._expanded(opportunity, expand)})

    async def _tags_body(self, request: web.Request) -> list[str] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return None
        return list(tags)

    async def _add_tags(self, request: web.Request) -> web.Response:
        opportunity = self._opportunity(request)
        if opportunity is None:
            return self._not_found("Opportunity")
        tags = await self._tags_body(request)
        if tags is None:
            return _error(400, "BadRequestError", "tags must be a string array")
        for tag in tags:
            if tag not in opportunity["tags"]:
                opportunity["tags"].append(tag)
        opportunity["updatedAt"] = max(opportunity["updatedAt"], self.wall_ms())
        return web.json_response({"data": self._expanded(opportunity, [])})

    async def _remove_tags(self, request: web.Request) -> web.Response:
        opportunity = self._opportunity(request)
        if opportunity is None:
            return self._not_found("Opportunity")
        tags = await self._tags_body(request)
        if tags is None:
            return _error(400, "BadRequestError", "tags must be a string array")
        opportunity["tags"] = [t for t in opportunity["tags"] if t not in tags]
        opportunity["updatedAt"] = max(opportunity["updatedAt"], self.wall_ms())
        return web.json_response({"data": self._expanded(opportunity, [])})

    async def _add_note(self, request: web.Request) -> web.Response:
        opportunity = self._opportunity(request)
        if opportunity is None:
            return self._not_found("Opportunity")
        try:
            body = await request.json()
        except ValueError:
            body = None
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value.strip():
            return _error(400, "BadRequestError", "value is required")
        note = {
            "id": str(uuid.uuid4()),
            "text": value,
            "user": request.query["perform_as"],
            "createdAt": self.wall_ms(),
        }
        self.state.notes.setdefault(opportunity["id"], []).append(note)
        opportunity["updatedAt"] = max(opportunity["updatedAt"], self.wall_ms())
        return web.json_response({"data": note})

    # -- configuration ----------------------------------------------------------------------
    async def _list_stages(self, request: web.Request) -> web.Response:
        items = [{"id": i, "text": t} for i, t in self.state.stages.items()]
        order = {i: n for n, i in enumerate(self.state.stages)}
        return self._page(request, items, lambda s: [order[s["id"]], s["id"]])

    async def _list_reasons(self, request: web.Request) -> web.Response:
        items = list(self.state.archive_reasons.values())
        return self._page(request, items, lambda r: [r["id"]])

    async def _get_reason(self, request: web.Request) -> web.Response:
        reason = self.state.archive_reasons.get(request.match_info["id"])
        if reason is None:
            return self._not_found("Archive reason")
        return web.json_response({"data": reason})

    async def _get_posting(self, request: web.Request) -> web.Response:
        posting = self.state.postings.get(request.match_info["id"])
        if posting is None:
            return self._not_found("Posting")
        return web.json_response({"data": posting})

    # -- harness routes ---------------------------------------------------------------------
    async def _reset(self, _request: web.Request) -> web.Response:
        self.state = LeverState()
        return web.json_response({"ok": True})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response({**self.stats(), "notes_by_opportunity": self.state.notes})


def main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description="Loopback Lever simulator")
    parser.add_argument("--port", type=int, default=8103)
    parser.add_argument("--api-key", default="test-lever-key")
    parser.add_argument("--rate-limit", type=int, default=10)
    args = parser.parse_args()
    simulator = LeverSimulator(args.api_key, rate_limit=args.rate_limit)
    web.run_app(simulator.app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
