"""A loopback Greenhouse Harvest that behaves like the contract says, for tests, demo and trials.

What it does (shared/contracts section 1.2 / 1.3; [V] unless marked):

- Auth: HTTP Basic with the API key as username (any password); a bad or missing key answers
  401 ``{"message": ...}`` [V status / U body text]. When ``oauth_clients`` is set, ``POST
  /token`` (HTTP Basic ``client_id:client_secret``, form ``grant_type=client_credentials&sub=``)
  issues bearer tokens with ``expires_in``; Harvest routes then also accept ``Bearer <token>``
  until it expires on the simulator's monotonic clock. Token answer fields are standard OAuth2
  [U]; a bad client answers 401 ``{"error": "invalid_client"}`` [U].
- Writes (POST/PUT/PATCH/DELETE) need ``On-Behalf-Of``; a missing one answers **403**
  ``{"message": "Missing required header: On-Behalf-Of"}`` [U: the status and text are our
  choice; the docs only say writes need the header]. A GET with a body answers 403 [V].
- Rate limit: a fixed window of ``window`` seconds (10 [V]) allowing ``rate_limit`` requests
  (docs example 50 [V]). Every Harvest answer carries ``X-RateLimit-Limit`` and
  ``X-RateLimit-Remaining`` [V]; past the cap, 429 with ``Retry-After`` (whole seconds) and
  ``X-RateLimit-Reset`` (Unix time, from the wall clock) [V headers] and body ``{"message":
  "Rate limit exceeded"}`` [U]. Both clocks are injectable, so tests never sleep.
- Tag catalogue: ``GET /v1/tags/candidate`` paginated by ``per_page`` (1-500, default 100) and
  ``page``, with a ``Link`` header (``next``/``prev``/``last``) only when there is more than one
  page [V]; ``POST /v1/tags/candidate {name}`` is case-insensitive, 200 when it existed, 201 when
  created, ``{id, name}`` either way [V].
- ``PUT`` / ``DELETE /v1/candidates/{cid}/tags/{tag_id}``: apply answers the documented
  message [V]; applying twice is a 200 again [U]; unknown tag id -> 404 [U]; removing a tag that
  is not on the candidate -> 404 [U]; ``GET /v1/candidates/{cid}/tags`` lists applied tags [V
  route / U shape ``[{id, name}]``].
- ``POST /v1/candidates/{cid}/activity_feed/notes {user_id, body, visibility}``: 201 [U status]
  echoing the note with ``visibility`` and the legacy misspelt ``visiblity`` [V]; an unknown
  visibility answers the contract's example 422 [V].
- Candidates exist implicitly for tags and notes (any id). Validation errors are
  ``{"message": "Validation error", "errors": [{"message", "field"}]}`` with 422 [V].

Recruiting records for the pollers (candidates, applications, scheduled interviews; their
filters and harness) live in ``simulator_records.py``, reached as ``simulator.records``; their
list routes page like the tag catalogue and carry the same rate-limit headers and faults.

Fault injection: ``fail_next(status, ...)`` answers the next matching requests with any status
(429 with the rate headers); ``reject_candidate(id)`` answers 422 to every write on that
candidate; ``revoke_tokens()`` makes every issued bearer token answer 401. Every request is kept
in ``requests`` (method, path, query, headers, JSON body). Harness routes (no auth, not counted):
``POST /_reset``, ``GET /_stats``, ``POST /_faults``.

Run standalone: ``python -m adapters.greenhouse.simulator --port 8102 --api-key K``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.greenhouse.simulator_records import HarvestRecords, paginated
from adapters.simulation import (
    Fault,
    FaultInjection,
    basic_credentials,
    fault_route,
    take_fault,
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VISIBILITIES = ("admin_only", "private", "public")


def _message(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


def _validation_error(field_name: str, message: str) -> web.Response:
    return web.json_response(
        {"message": "Validation error", "errors": [{"message": message, "field": field_name}]},
        status=422,
    )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class HarvestState:
    tags: dict[int, str] = field(default_factory=dict)
    applied: dict[str, list[int]] = field(default_factory=dict)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    rejected_candidates: set[str] = field(default_factory=set)
    tag_create_requests: int = 0
    tags_created: int = 0
    tokens_issued: int = 0
    rate_limited: int = 0
    window_start: float | None = None
    window_count: int = 0


class HarvestSimulator(FaultInjection):
    default_fault_prefix = "/v1"  # Harvest routes: ``/token`` is faulted only when asked for

    def __init__(
        self,
        api_key: str = "test-harvest-key",
        *,
        oauth_clients: dict[str, str] | None = None,
        token_ttl: int = 3600,
        rate_limit: int = 50,
        window: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.oauth_clients = dict(oauth_clients or {})
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self.window = window
        self.monotonic = monotonic
        self.wall = wall
        self.state = HarvestState()
        self._ids = itertools.count(365000)
        self._note_ids = itertools.count(330000000)
        self.records = HarvestRecords(self.tags_of)

    # -- harness ----------------------------------------------------------------------------
    def injected_faults(self) -> list[Fault]:
        return self.state.faults

    def reject_candidate(self, candidate_id: str) -> None:
        self.state.rejected_candidates.add(str(candidate_id))

    def revoke_tokens(self) -> None:
        self.state.tokens.clear()

    def add_tags(self, *names: str) -> list[int]:
        """Seed the catalogue (no request counted); returns the ids."""
        return [self._create(name)[0] for name in names]

    def tags_of(self, candidate_id: str) -> list[str]:
        return [self.state.tags[t] for t in self.state.applied.get(str(candidate_id), [])]

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [
            r for r in self.state.requests if r.method == method and r.path.startswith(path_prefix)
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self.state.requests),
            "tags": len(self.state.tags),
            "tag_create_requests": self.state.tag_create_requests,
            "tags_created": self.state.tags_created,
            "applied": {cid: self.tags_of(cid) for cid in self.state.applied},
            "notes": sum(len(n) for n in self.state.notes.values()),
            "tokens_issued": self.state.tokens_issued,
            "rate_limited": self.state.rate_limited,
        }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_post("/token", self._token)
        r.add_get("/v1/tags/candidate", self._list_tags)
        r.add_post("/v1/tags/candidate", self._create_tag)
        r.add_get("/v1/candidates/{cid}/tags", self._candidate_tags)
        r.add_put("/v1/candidates/{cid}/tags/{tag_id}", self._apply_tag)
        r.add_delete("/v1/candidates/{cid}/tags/{tag_id}", self._remove_tag)
        r.add_post("/v1/candidates/{cid}/activity_feed/notes", self._add_note)
        self.records.add_routes(r)
        r.add_post("/_reset", self._reset)
        r.add_get("/_stats", self._stats)
        r.add_post("/_faults", fault_route(self.fail_next, self.default_fault_prefix))
        return app

    # -- middleware: record, auth, audit header, rate limit, faults --------------------------
    async def _record(self, request: web.Request) -> None:
        text = await request.text() if request.can_read_body else ""
        body: Any
        if request.content_type == "application/json" and text:
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        elif request.content_type == "application/x-www-form-urlencoded":
            body = dict(await request.post())
        else:
            body = text or None
        self.state.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), dict(request.headers), body
            )
        )

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            expiry = self.state.tokens.get(header[7:].strip())
            return expiry is not None and self.monotonic() < expiry
        credentials = basic_credentials(header)
        return credentials is not None and credentials[0] == self.api_key

    def _rate_headers(self) -> dict[str, str]:
        remaining = max(0, self.rate_limit - self.state.window_count)
        return {"X-RateLimit-Limit": str(self.rate_limit), "X-RateLimit-Remaining": str(remaining)}

    def _count(self) -> web.Response | None:
        """Count one request in the window; a 429 when it is over the cap."""
        now = self.monotonic()
        start = self.state.window_start
        if start is None or now - start >= self.window:
            self.state.window_start, self.state.window_count = now, 0
            start = now
        self.state.window_count += 1
        if self.state.window_count <= self.rate_limit:
            return None
        self.state.rate_limited += 1
        return self._too_many(start + self.window - now)

    def _too_many(self, wait: float) -> web.Response:
        wait = max(1, math.ceil(wait))
        return _message(
            429,
            "Rate limit exceeded",
            {
                **self._rate_headers(),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(self.wall() + wait)),
                "Retry-After": str(wait),
            },
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await handler(request)  # type: ignore[no-any-return]
        await self._record(request)
        if request.path == "/token":
            return await handler(request)  # type: ignore[no-any-return]
        if not self._authorised(request):
            return _message(401, "Invalid Basic Auth credentials")
        limited = self._count()
        if limited is not None:
            return limited
        response = await self._guarded(request, handler)
        response.headers.update(self._rate_headers())
        return response

    async def _guarded(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET" and request.can_read_body and await request.read():
            return _message(403, "A request body is not allowed on GET")
        if request.method in WRITE_METHODS and not request.headers.get("On-Behalf-Of"):
            return _message(403, "Missing required header: On-Behalf-Of")
        fault = take_fault(self.state.faults, request.path)
        if fault is not None:
            if fault.status == 429:
                self.state.rate_limited += 1
                return self._too_many(fault.retry_after or 1)
            return _message(fault.status, "injected fault", fault.headers())
        cid = request.match_info.get("cid")
        if (
            request.method in WRITE_METHODS
            and cid is not None
            and cid in self.state.rejected_candidates
        ):
            return _validation_error("candidate_id", f"Candidate {cid} cannot be modified")
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except web.HTTPException as exc:  # unmatched route or method, in Harvest's shape
            return _message(exc.status, exc.reason)

    # -- OAuth ------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None or self.oauth_clients.get(credentials[0]) != credentials[1]:
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if not form.get("sub"):
            return web.json_response({"error": "invalid_request"}, status=400)
        token = f"sim-{uuid.uuid4().hex}"
        self.state.tokens[token] = self.monotonic() + self.token_ttl
        self.state.tokens_issued += 1
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        )

    # -- tags -------------------------------------------------------------------------------
    def _create(self, name: str) -> tuple[int, bool]:
        for tag_id, existing in self.state.tags.items():
            if existing.lower() == name.lower():
                return tag_id, False
        tag_id = next(self._ids)
        self.state.tags[tag_id] = name
        self.state.tags_created += 1
        return tag_id, True

    async def _list_tags(self, request: web.Request) -> web.Response:
        items = [{"id": i, "name": n} for i, n in sorted(self.state.tags.items())]
        return paginated(request, items)

    async def _create_tag(self, request: web.Request) -> web.Response:
        self.state.tag_create_requests += 1
        try:
            body = await request.json()
        except ValueError:
            return _validation_error("name", "can't be blank")
        name = str((body or {}).get("name") or "").strip() if isinstance(body, dict) else ""
        if not name:
            return _validation_error("name", "can't be blank")
        tag_id, created = self._create(name)
        return web.json_response(
            {"id": tag_id, "name": self.state.tags[tag_id]}, status=201 if created else 200
        )

    def _tag_id(self, request: web.Request) -> int | None:
        raw = request.match_info["tag_id"]
        return int(raw) if raw.isdigit() and int(raw) in self.state.tags else None

    async def _candidate_tags(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        applied = self.state.applied.get(cid, [])
        return web.json_response([{"id": t, "name": self.state.tags[t]} for t in applied])

    async def _apply_tag(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        tag_id = self._tag_id(request)
        if tag_id is None:
            return _message(404, "Resource not found")
        applied = self.state.applied.setdefault(cid, [])
        if tag_id not in applied:
            applied.append(tag_id)
        name = self.state.tags[tag_id]
        return _message(200, f"Tag {tag_id}, '{name}', has been applied to candidate {cid}")

    async def _remove_tag(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        tag_id = self._tag_id(request)
        applied = self.state.applied.get(cid, [])
        if tag_id is None or tag_id not in applied:
            return _message(404, "Resource not found")
        applied.remove(tag_id)
        return _message(200, f"Tag {tag_id} has been removed from candidate {cid}")

    # -- notes ------------------------------------------------------------------------------
    async def _add_note(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _validation_error("body", "can't be blank")
        if body.get("user_id") in (None, ""):
            return _validation_error("user_id", "can't be blank")
        if not body.get("body"):
            return _validation_error("body", "can't be blank")
        visibility = body.get("visibility")
        if visibility not in VISIBILITIES:
            return _validation_error("visibility", "Must be one of: admin_only, private, public")
        note = {
            "id": next(self._note_ids),
            "created_at": datetime.fromtimestamp(self.wall(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "body": body["body"],
            "user": {"id": body["user_id"], "name": f"User {body['user_id']}"},
            "private": visibility != "public",
            "visiblity": visibility,
            "visibility": visibility,
        }
        self.state.notes.setdefault(cid, []).append(note)
        return web.json_response(note, status=201)

    # -- harness routes ---------------------------------------------------------------------
    async def _reset(self, _request: web.Request) -> web.Response:
        self.state = HarvestState()
        self.records.reset()
        return web.json_response({"ok": True})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                **self.stats(),
                "catalogue": {str(k): v for k, v in self.state.tags.items()},
                "notes_by_candidate": self.state.notes,
            }
        )


def main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description="Loopback Greenhouse Harvest simulator")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--api-key", default="test-harvest-key")
    parser.add_argument("--rate-limit", type=int, default=50)
    parser.add_argument(
        "--oauth-client", action="append", default=[], help="client_id:client_secret"
    )
    args = parser.parse_args()
    clients = dict(c.split(":", 1) for c in args.oauth_client)
    simulator = HarvestSimulator(args.api_key, oauth_clients=clients, rate_limit=args.rate_limit)
    web.run_app(simulator.app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
