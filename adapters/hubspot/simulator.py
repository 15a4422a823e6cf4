"""A loopback HubSpot that behaves like the contract says, for tests, the demo and trials.

Bearer auth (401 with HubSpot's error body), contacts with create / 409 on a taken email /
update / search by email, search that is eventually consistent (a new contact stays invisible
to search for ``search_delay`` seconds, as HubSpot's does), static lists by name, transactional
send de-duplicated by ``sendId``, batch upsert by email (200, or 207 with ``errors[]`` and
``numErrors`` for inputs it refuses, e.g. a malformed address; above ``BATCH_UPSERT_CAP``
inputs a 400), and communication preferences (``simulator_preferences``). Fault injection:
``fail_next(...)`` answers the next requests with 429 + Retry-After, 5xx or any status;
``chaos`` (``adapters.simulation.Chaos``) draws random 5xx, 429 and timeouts and switches an
outage on and off; ``reject_email`` answers 400 for one address. Each accepted send keeps its
wall-clock time ``at``. Harness routes: ``POST /_reset``, ``GET /_stats``, ``POST /_faults``.

Unverified behaviour, flagged as the contract flags it: the cap's 400 message [U].

Run standalone: ``python -m adapters.hubspot.simulator --port 8101 --token T``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.hubspot.simulator_preferences import PORTAL_ID, PreferencesRoutes
from adapters.simulation import Chaos, Fault, FaultInjection, fault_route, take_fault

BATCH_UPSERT_CAP = 100


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, category: str, message: str) -> web.Response:
    return web.json_response(
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        },
        status=status,
    )


@dataclass
class HubSpotState:
    contacts: dict[str, dict[str, str]] = field(default_factory=dict)
    created_at: dict[str, float] = field(default_factory=dict)
    by_email: dict[str, str] = field(default_factory=dict)
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    sends: dict[str, dict[str, Any]] = field(default_factory=dict)
    send_requests: list[str] = field(default_factory=list)
    create_requests: int = 0
    requests: int = 0
    faults: list[Fault] = field(default_factory=list)
    rejected_emails: set[str] = field(default_factory=set)
    email_events: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    # email -> subscription ids it is NOT_SUBSCRIBED to; "*" is an opt-out of all email
    unsubscribed: dict[str, set[str]] = field(default_factory=dict)
    batch_upserts: list[list[str]] = field(default_factory=list)  # the ids of each request
    status_requests: list[str] = field(default_factory=list)


class HubSpotSimulator(PreferencesRoutes, FaultInjection):
    def __init__(
        self, token: str = "test-token", *, search_delay: float = 0.0, latency: float = 0.0
    ) -> None:
        self.token = token
        self.search_delay = search_delay
        self.latency = latency
        self.state = HubSpotState()
        self.chaos = Chaos()
        self._ids = itertools.count(51000)
        self._list_ids = itertools.count(900)

    # -- harness ------------------------------------------------------------------------
    def injected_faults(self) -> list[Fault]:
        return self.state.faults

    def reject_email(self, email: str) -> None:
        self.state.rejected_emails.add(email.lower())

    def add_contact(self, email: str, **properties: str) -> str:
        """A contact someone made in HubSpot outside nurture (a test's starting state)."""
        contact_id = str(next(self._ids))
        email = email.lower()
        self.state.contacts[contact_id] = {**properties, "email": email, "hs_object_id": contact_id}
        self.state.by_email[email] = contact_id
        self.state.created_at[contact_id] = time.monotonic()
        return contact_id

    def stats(self) -> dict[str, Any]:
        emails = [c.get("email", "") for c in self.state.contacts.values()]
        return {
            "contacts": len(self.state.contacts),
            "duplicate_emails": len(emails) - len(set(emails)),
            "create_requests": self.state.create_requests,
            "sends": len(self.state.sends),
            "send_requests": len(self.state.send_requests),
            "requests": self.state.requests,
            "batch_upsert_requests": len(self.state.batch_upserts),
            "status_requests": len(self.state.status_requests),
        }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_post("/crm/v3/objects/contacts/search", self._search)
        r.add_post("/crm/v3/objects/contacts", self._create)
        r.add_post("/crm/v3/objects/contacts/batch/upsert", self._batch_upsert)
        r.add_patch("/crm/v3/objects/contacts/{id}", self._update)
        r.add_get("/crm/v3/objects/contacts/{id}", self._read)
        r.add_get("/crm/v3/lists/object-type-id/{type}/name/{name}", self._list_by_name)
        r.add_put("/crm/v3/lists/{id}/memberships/add", self._list_add)
        r.add_post("/marketing/v3/transactional/single-email/send", self._send)
        r.add_get("/email/public/v1/events", self._email_events)
        r.add_get("/email/public/v1/subscriptions/timeline", self._timeline)
        self.add_preference_routes(r)
        r.add_post("/_reset", self._reset)
        r.add_get("/_stats", self._stats)
        r.add_post("/_faults", fault_route(self.fail_next))
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await handler(request)  # type: ignore[no-any-return]
        self.state.requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)  # the vendor's own latency, simulated
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
        fault = take_fault(self.state.faults, request.path)
        if fault is not None:
            if fault.status == 429:
                return self._rate_limited(fault.headers())
            return _error(fault.status, "INTERNAL_ERROR", "injected fault")
        chaos = self.chaos.draw()
        if chaos == "outage":
            return _error(503, "SERVICE_UNAVAILABLE", "injected outage")
        if chaos == "error":
            return _error(self.chaos.error_status(), "INTERNAL_ERROR", "injected fault")
        if chaos == "rate_limit":
            return self._rate_limited({"Retry-After": str(int(self.chaos.retry_after))})
        if chaos == "timeout":  # the client gives up first; the request is still processed
            await request.read()  # kept by aiohttp, so the handler reads it after the hang-up
            await asyncio.sleep(self.chaos.hang)
        return await handler(request)  # type: ignore[no-any-return]

    @staticmethod
    def _rate_limited(headers: dict[str, str]) -> web.Response:
        return web.json_response(
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
            },
            status=429,
            headers=headers,
        )

    # -- contacts -------------------------------------------------------------------------
    async def _search(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            value = body["filterGroups"][0]["filters"][0]["value"].lower()
        except (KeyError, IndexError, TypeError, AttributeError):
            return _error(400, "VALIDATION_ERROR", "filterGroups with an email filter required")
        contact_id = self.state.by_email.get(value)
        visible = contact_id is not None and (
            time.monotonic() - self.state.created_at[contact_id] >= self.search_delay
        )
        results = (
            [{"id": contact_id, "properties": self.state.contacts[contact_id], "archived": False}]
            if visible and contact_id
            else []
        )
        return web.json_response({"total": len(results), "results": results})

    async def _create(self, request: web.Request) -> web.Response:
        self.state.create_requests += 1
        body = await request.json()
        props = body.get("properties") or {}
        email = str(props.get("email", "")).lower()
        if not email:
            return _error(400, "VALIDATION_ERROR", "Property values were not valid: email")
        if email in self.state.rejected_emails:
            return _error(400, "VALIDATION_ERROR", f"Email address {email} is invalid")
        if email in self.state.by_email:
            existing = self.state.by_email[email]
            return _error(409, "CONFLICT", f"Contact already exists. Existing ID: {existing}")
        contact_id = str(next(self._ids))
        self.state.contacts[contact_id] = {
            **{k: str(v) for k, v in props.items()},
            "email": email,
            "hs_object_id": contact_id,
        }
        self.state.by_email[email] = contact_id
        self.state.created_at[contact_id] = time.monotonic()
        return web.json_response(
            {"id": contact_id, "properties": self.state.contacts[contact_id], "archived": False},
            status=201,
        )

    async def _update(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["id"]
        if contact_id not in self.state.contacts:
            return _error(404, "OBJECT_NOT_FOUND", f"Object not found. objectId are: {contact_id}")
        body = await request.json()
        props = {k: str(v) for k, v in (body.get("properties") or {}).items()}
        if str(props.get("email", "")).lower() in self.state.rejected_emails:
            return _error(400, "VALIDATION_ERROR", "Email address is invalid")
        self.state.contacts[contact_id].update(props)
        return web.json_response({"id": contact_id, "properties": self.state.contacts[contact_id]})

    async def _read(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["id"]
        if contact_id not in self.state.contacts:
            return _error(404, "OBJECT_NOT_FOUND", "Object not found.")
        return web.json_response({"id": contact_id, "properties": self.state.contacts[contact_id]})

    async def _batch_upsert(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "VALIDATION_ERROR", "inputs must be a non-empty array")
        if len(inputs) > BATCH_UPSERT_CAP:
            return _error(
                400,
                "VALIDATION_ERROR",
                f"The maximum number of inputs supported in a batch request is "
                f"{BATCH_UPSERT_CAP}. Received {len(inputs)}.",
            )
        ids = [str(i.get("id", "")).strip().lower() for i in inputs if isinstance(i, dict)]
        if len(ids) != len(inputs) or any(
            i.get("idProperty") != "email" for i in inputs if isinstance(i, dict)
        ):
            return _error(400, "VALIDATION_ERROR", "every input needs an id and idProperty email")
        if len(set(ids)) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            return _error(
                400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: {duplicates}"
            )
        self.state.batch_upserts.append(ids)
        now = _iso_now()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for email, item in zip(ids, inputs, strict=True):
            if "@" not in email or email in self.state.rejected_emails:
                detail = f"Email address {item.get('id')} is invalid"
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": 'Property values were not valid: [{"isValid":false,'
                        f'"message":"{detail}","error":"INVALID_EMAIL",'
                        '"name":"email"}]',
                        "context": {"ids": [str(item.get("id"))]},
                        "errors": [],
                        "links": {},
                    }
                )
                continue
            props = {k: str(v) for k, v in (item.get("properties") or {}).items()}
            contact_id = self.state.by_email.get(email)
            new = contact_id is None
            if contact_id is None:
                contact_id = str(next(self._ids))
                self.state.contacts[contact_id] = {"hs_object_id": contact_id, "createdate": now}
                self.state.by_email[email] = contact_id
                self.state.created_at[contact_id] = time.monotonic()
            contact = self.state.contacts[contact_id]
            contact.update({**props, "email": email, "lastmodifieddate": now})
            results.append(
                {
                    "id": contact_id,
                    "new": new,
                    "properties": dict(contact),
                    "createdAt": contact.get("createdate", now),
                    "updatedAt": now,
                    "archived": False,
                }
            )
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "requestedAt": now,
            "startedAt": now,
            "completedAt": now,
        }
        if errors:
            answer.update(numErrors=len(errors), errors=errors)
        return web.json_response(answer, status=207 if errors else 200)

    # -- lists and email ------------------------------------------------------------------
    async def _list_by_name(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        entry = self.state.lists.setdefault(
            name, {"listId": str(next(self._list_ids)), "name": name, "members": []}
        )
        return web.json_response({"list": {"listId": entry["listId"], "name": name}})

    async def _list_add(self, request: web.Request) -> web.Response:
        list_id = request.match_info["id"]
        entry = next((e for e in self.state.lists.values() if e["listId"] == list_id), None)
        if entry is None:
            return _error(404, "OBJECT_NOT_FOUND", f"List {list_id} not found")
        ids = await request.json()
        added = [i for i in ids if i not in entry["members"]]
        entry["members"].extend(added)
        return web.json_response(
            {"recordsIdsAdded": added, "recordIdsMissing": [], "recordIdsRemoved": []}
        )

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        message = body.get("message") or {}
        send_id = message.get("sendId") or str(uuid.uuid4())
        self.state.send_requests.append(send_id)
        if send_id in self.state.sends:
            return _error(409, "CONFLICT", f"A send with sendId {send_id} already exists")
        self.state.sends[send_id] = {
            "to": message.get("to"),
            "emailId": body.get("emailId"),
            "customProperties": body.get("customProperties") or {},
            "at": time.time(),
        }
        return web.json_response(
            {"statusId": str(uuid.uuid4()), "status": "PENDING", "sendResult": "QUEUED"}
        )

    # -- engagement (polled: HubSpot pushes no email events) -------------------------------
    def add_email_event(
        self, kind: str, recipient: str, created_ms: int, url: str | None = None
    ) -> None:
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "created": created_ms,
            "type": kind,
            "recipient": recipient,
            "portalId": PORTAL_ID,
            "sentBy": {"id": str(uuid.uuid4()), "created": created_ms - 1000},
        }
        if url is not None:
            event["url"] = url
        self.state.email_events.append(event)

    def add_unsubscribe(self, recipient: str, created_ms: int) -> None:
        """The person unsubscribes from nurture mail (subscription 7) at ``created_ms``."""
        self.unsubscribe(recipient, "7", created_ms)

    @staticmethod
    def _page(
        items: list[dict[str, Any]], request: web.Request, key: str, stamp: str
    ) -> web.Response:
        since = int(request.query.get("startTimestamp", "0"))
        limit = min(int(request.query.get("limit", "100")), 1000)
        start = int(request.query.get("offset") or 0)
        matching = sorted((i for i in items if i[stamp] >= since), key=lambda i: i[stamp])
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        return web.json_response(
            {key: page, "hasMore": more, "offset": str(start + limit) if more else None}
        )

    async def _email_events(self, request: web.Request) -> web.Response:
        return self._page(self.state.email_events, request, "events", "created")

    async def _timeline(self, request: web.Request) -> web.Response:
        return self._page(self.state.timeline, request, "timeline", "timestamp")

    # -- harness routes -------------------------------------------------------------------
    async def _reset(self, _request: web.Request) -> web.Response:
        self.state = HubSpotState()
        return web.json_response({"ok": True})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                **self.stats(),
                "sends_by_id": self.state.sends,
                "contacts_by_email": self.state.by_email,
            }
        )


def main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description="Loopback HubSpot simulator")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--search-delay", type=float, default=0.0)
    args = parser.parse_args()
    simulator = HubSpotSimulator(args.token, search_delay=args.search_delay)
    web.run_app(simulator.app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
