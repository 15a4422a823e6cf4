"""A loopback Ashby API that behaves like the contract says, for tests, demo and trials.

What it does (shared/contracts section 3; the markers are those of ``adapters.ashby.client``,
whose module docstring lists every assumption; [U] behaviour is implemented but unverified):

- RPC: ``POST /<category>.<method>`` with a JSON object body; any other method answers 405, an
  unknown endpoint 404 ``unknown_endpoint`` [U code].
- Auth: HTTP Basic with the API key as username. No key: 401 ``unauthenticated`` [U code]; a
  wrong or deactivated key (``deactivate``): 403 ``invalid_api_key`` [U code]; an endpoint the
  key may not call (``deny``): 403 ``missing_endpoint_permission``, the contract's example body.
- Envelope: ``{"success": true, "results": ...}``; refusals ``{"success": false, "errors":
  [<code>]}`` with HTTP 200 (bad input, unknown ids) [U].
- Lists (``application.list``, ``candidateTag.list``): ``limit`` capped to 1..100 [U],
  ``cursor`` = the previous ``nextCursor`` while ``moreDataAvailable``; the last page carries
  ``syncToken``. ``application.list`` with a ``syncToken`` returns only the applications changed
  since that token. Every change to an application takes the next number of a change counter;
  a pass is ordered by that number and its cursor is the last number returned, so an
  application changed while a client pages moves behind the cursor and is still seen, and the
  final token (the counter at the end of the pass) leaves no gap. ``expire_sync_tokens``
  makes every earlier token fail with ``sync_token_expired`` [U].
- Endpoints: ``candidate.search`` {email|name}, ``candidate.info`` {id},
  ``candidateTag.list``, ``candidateTag.create`` {title}, ``candidate.addTag`` /
  ``candidate.removeTag`` {candidateId, tagId} (answer the candidate; adding a present tag or
  removing an absent one changes nothing [U]), ``candidate.createNote`` {candidateId, note
  (text or {type, value}), sendNotifications?}, ``application.list``.
- Rate limit: a sliding window of ``rate_limit`` requests per ``window`` seconds (default 10 per
  second [U]); past it 429 ``rate_limit_exceeded`` with ``Retry-After`` in whole seconds. Clocks
  are injected, so tests never sleep.

The records and what each RPC does with them live in ``simulator_records.py``; this module
serves them. Fault injection: ``fail_next(status, ...)`` (shared ``adapters.simulation``).
Every request is kept in ``traffic.requests`` (``requests_to(endpoint)``). Harness routes (no
auth, not counted): ``POST /_reset``, ``GET /_stats``, ``POST /_faults``. Webhook helpers
``sign`` / ``signed_webhook`` build deliveries with the real ``Ashby-Signature: sha256=<hex>``
scheme.

Run standalone: ``python -m adapters.ashby.simulator --port 8104 --api-key K``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.ashby.simulator_records import AshbyRecords, Records, Refused
from adapters.ashby.simulator_records import iso as iso
from adapters.simulation import (
    Fault,
    FaultInjection,
    basic_credentials,
    fault_route,
    recorded_body,
    sliding_window_wait,
    take_fault,
)


def sign(body: bytes, secret: str) -> str:
    """The ``Ashby-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_webhook(
    action: str, data: Mapping[str, Any], *, secret: str, action_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A signed Ashby delivery (body, headers), as Ashby would post it."""
    document: dict[str, Any] = {"action": action, "data": dict(data)}
    if action_id is not None:
        document["webhookActionId"] = action_id
    body = json.dumps(document).encode()
    return body, {"Content-Type": "application/json", "Ashby-Signature": sign(body, secret)}


def _fail(status: int, *codes: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"success": False, "errors": list(codes)}, status=status, headers=headers
    )


@dataclass
class RecordedRequest:
    method: str
    endpoint: str
    headers: dict[str, str]
    body: Any


@dataclass
class Traffic:
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    sent: deque[float] = field(default_factory=deque)
    rate_limited: int = 0


class AshbySimulator(AshbyRecords, FaultInjection):
    def __init__(
        self,
        api_key: str = "test-ashby-key",
        *,
        rate_limit: int = 10,
        window: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(wall)
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.window = window
        self.monotonic = monotonic
        self.deactivated: set[str] = set()
        self.denied: set[str] = set()
        self.traffic = Traffic()

    def deactivate(self, api_key: str) -> None:
        self.deactivated.add(api_key)

    def deny(self, endpoint: str) -> None:
        """The key lacks the permission for ``endpoint``."""
        self.denied.add(endpoint)

    # -- harness ----------------------------------------------------------------------------
    def injected_faults(self) -> list[Fault]:
        return self.traffic.faults

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        return [r for r in self.traffic.requests if r.endpoint == endpoint]

    def stats(self) -> dict[str, Any]:
        records = self.records
        return {
            "requests": len(self.traffic.requests),
            "applications": len(records.applications),
            "candidates": len(records.candidates),
            "tags": {c: self.tags_of(c) for c, v in records.candidates.items() if v["tags"]},
            "notes": sum(len(n) for n in records.notes.values()),
            "rate_limited": self.traffic.rate_limited,
        }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_post("/_reset", self._reset)
        r.add_get("/_stats", self._stats)
        r.add_post("/_faults", fault_route(self.fail_next))
        r.add_route("*", "/{endpoint}", self._rpc)
        return app

    # -- middleware: record, auth, rate limit, faults, permissions --------------------------
    def _count(self) -> web.Response | None:
        wait = sliding_window_wait(
            self.traffic.sent, self.monotonic(), self.rate_limit, self.window
        )
        return None if wait is None else self._too_many(wait)

    def _too_many(self, wait: float) -> web.Response:
        self.traffic.rate_limited += 1
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        return _fail(429, "rate_limit_exceeded", headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await handler(request)  # type: ignore[no-any-return]
        endpoint = request.path.lstrip("/")
        body = await recorded_body(request)
        self.traffic.requests.append(
            RecordedRequest(request.method, endpoint, dict(request.headers), body)
        )
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None or not credentials[0]:
            return _fail(401, "unauthenticated")
        user = credentials[0]
        if user != self.api_key or user in self.deactivated:
            return _fail(403, "invalid_api_key")
        limited = self._count()
        if limited is not None:
            return limited
        fault = take_fault(self.traffic.faults, request.path)
        if fault is not None:
            if fault.status == 429:
                return self._too_many(fault.retry_after or 1)
            return _fail(fault.status, "injected_fault", headers=fault.headers())
        if endpoint in self.denied:
            return _fail(403, "missing_endpoint_permission")
        return await handler(request)  # type: ignore[no-any-return]

    async def _rpc(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _fail(405, "method_not_allowed")
        handler = self.handlers().get(request.match_info["endpoint"])
        if handler is None:
            return _fail(404, "unknown_endpoint")
        try:
            body = await request.json()
        except ValueError:
            return _fail(400, "invalid_json")
        if not isinstance(body, dict):
            return _fail(400, "invalid_json")
        try:
            results, extra = handler(body)
        except Refused as refused:
            return _fail(200, refused.code)
        return web.json_response({"success": True, "results": results, **extra})

    # -- harness routes ---------------------------------------------------------------------
    async def _reset(self, _request: web.Request) -> web.Response:
        self.records, self.traffic = Records(), Traffic()
        return web.json_response({"ok": True})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response({**self.stats(), "notes_by_candidate": self.records.notes})


def main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description="Loopback Ashby simulator")
    parser.add_argument("--port", type=int, default=8104)
    parser.add_argument("--api-key", default="test-ashby-key")
    parser.add_argument("--rate-limit", type=int, default=10)
    args = parser.parse_args()
    simulator = AshbySimulator(args.api_key, rate_limit=args.rate_limit)
    web.run_app(simulator.app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
