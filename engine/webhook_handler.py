"""The webhook handler the daemon and its acceptor share: ``POST /webhooks/{source}``.

It verifies and normalises a delivery through its source, hands the events to where they are
accepted (the daemon's intake, or the acceptor's spool) and answers 2xx only once that is
done; bad input gets 400/401/404/413 with ``{"error": ..., "detail": ...}``, and a store that
cannot take the event, a vendor that cannot be read back or a shutdown gets 503, so the vendor
retries. It imports neither the store nor the config models: the acceptor process stays small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from engine.errors import AdapterError, StoreError
from engine.events import MAX_ID_CHARS, Event
from engine.log_lines import json_line
from engine.metrics import Metrics

if TYPE_CHECKING:
    from engine.evaluate import Decision

log = logging.getLogger("nurture.server")


class InputRejected(Exception):
    """A delivery we refuse: its HTTP status, a short error code and a detail for the sender."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


@dataclass(frozen=True)
class Received:
    events: tuple[Event, ...] = ()
    ignored: str | None = None  # why a known-but-unmapped delivery was left out
    # the digest of what was signed, when the delivery id is not signed (Greenhouse):
    # stored with the event, so the same delivery replayed under a new id is a duplicate
    replay_key: str | None = None

    def replay_key_of(self, index: int) -> str | None:
        if self.replay_key is None:
            return None
        return self.replay_key if len(self.events) == 1 else f"{self.replay_key}.{index}"


class Accepting(Protocol):
    """Where the handler hands events: the intake, or the acceptor's spool."""

    async def accept(self, event: Event, replay_key: str | None = None) -> Accepted: ...


class WebhookSource(Protocol):
    """One inbound vendor: verifies and normalises a delivery (adapters implement it)."""

    name: str

    async def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Received: ...


@dataclass(frozen=True)
class Accepted:
    """What accepting an event did: its stored id (none in a spool), whether it was a
    redelivery, and (from the intake) the rules' decisions and how many actions were queued."""

    event_id: int | None
    duplicate: bool
    decisions: tuple[Decision, ...] = ()
    queued: int = 0


def error_response(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (no route, wrong method) in the ``{"error", "detail"}`` shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = _HTTP_ERRORS.get(exc.status, "http_error")
        return error_response(
            exc.status, code, f"{exc.reason}: {request.method} {request.path[:200]}", allow
        )


@dataclass
class ServerState:
    accepting: bool = True
    config_loaded: bool = True
    claimer_running: Callable[[], bool] = lambda: True
    acceptor_running: Callable[[], bool] = lambda: True  # true when none is configured
    last_reload_ok: bool = True
    last_reload_at: float = field(default_factory=time.time)


class WebhookHandler:
    """``POST /webhooks/{source}`` and ``/healthz``; ``unavailable``: the errors that mean the
    events could not be taken now (answered 503)."""

    def __init__(
        self,
        intake: Callable[[], Accepting],
        sources: Mapping[str, WebhookSource],
        metrics: Metrics,
        *,
        max_body: int = 1_048_576,
        state: ServerState | None = None,
        on_accepted: Callable[[], None] | None = None,
        public_url: str | None = None,
        unavailable: tuple[type[BaseException], ...] = (StoreError,),
    ) -> None:
        self.intake = intake
        self.metrics = metrics
        self.max_body = max_body
        self.state = state or ServerState()
        self.on_accepted = on_accepted or (lambda: None)  # wakes the outbox workers
        self.unavailable = unavailable
        self.route_sources(sources, public_url)
        metrics.declare("nurture_webhooks_total", "counter", "webhook deliveries by outcome")
        metrics.declare("nurture_events_total", "counter", "events accepted by source and type")
        metrics.declare("nurture_webhook_seconds", "histogram", "webhook handling latency")

    # -- webhooks ---------------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        name = request.match_info["source"]
        response = await self._handle(request, name)
        # the path is the sender's: a made-up name must not become a label (unbounded series)
        label = name if name in self.sources else "unknown"
        self.metrics.inc("nurture_webhooks_total", source=label, status=str(response.status))
        self.metrics.observe("nurture_webhook_seconds", time.perf_counter() - started, source=label)
        return response

    async def _handle(self, request: web.Request, name: str) -> web.Response:
        if not self.state.accepting:
            return error_response(503, "shutting_down", "not accepting webhooks; retry later")
        source = self.sources.get(name)
        if source is None:
            return error_response(
                404,
                "unknown_source",
                f"no webhook source {name!r}; known: " + ", ".join(sorted(self.sources)),
            )
        if request.content_length is not None and request.content_length > self.max_body:
            return error_response(413, "too_large", f"body over {self.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # also a compressed body that inflates past it
            return error_response(413, "too_large", f"body over {self.max_body} bytes")
        except web.RequestPayloadError:
            return error_response(
                400, "bad_encoding", "the body does not decode as its Content-Encoding"
            )
        if len(body) > self.max_body:
            return error_response(413, "too_large", f"body over {self.max_body} bytes")
        try:
            received = await source.receive(
                request.method, self._called_url(request), request.headers, body
            )
        except InputRejected as rejected:
            log.info(
                json_line(
                    decision="rejected", source=name, status=rejected.status, error=rejected.error
                )
            )
            return error_response(rejected.status, rejected.error, rejected.detail)
        except AdapterError as exc:  # a read-back (Lever opportunity, HubSpot contact) failed
            log.warning(
                json_line(
                    decision="vendor_unavailable",
                    source=name,
                    error=type(exc).__name__,
                    status=getattr(exc, "status", None),
                )
            )
            return error_response(
                503, "vendor_unavailable", f"{name} could not be read back; retry later"
            )
        if received.ignored is not None and not received.events:
            log.debug(json_line(decision="ignored", source=name, reason=received.ignored))
            return web.json_response({"status": "ignored", "reason": received.ignored}, status=202)
        for event in received.events:
            # PostgreSQL refuses a longer one as a database error, which would be a 503 and a
            # retry of what can never be stored (SQLite would store it: backends must agree)
            for what, value in (("delivery id", event.id), ("subject", event.subject or "")):
                if len(value) > MAX_ID_CHARS:
                    detail = (
                        f"the event's {what} is {len(value)} characters; at most {MAX_ID_CHARS}"
                    )
                    return error_response(400, "bad_payload", detail)
        accepted = duplicates = 0
        try:
            intake = self.intake()
            for index, event in enumerate(received.events):
                outcome = await intake.accept(event, received.replay_key_of(index))
                duplicates += outcome.duplicate
                accepted += not outcome.duplicate
                self.note_accepted(event, outcome)
        except self.unavailable as exc:
            log.error(
                json_line(decision="store_unavailable", source=name, error=type(exc).__name__)
            )
            return error_response(
                503, "store_unavailable", "the event could not be stored; retry later"
            )
        if accepted:
            self.on_accepted()
        return web.json_response({"accepted": accepted, "duplicates": duplicates})

    def route_sources(self, sources: Mapping[str, WebhookSource], public_url: str | None) -> None:
        """What the config says about webhooks; a reload calls it again."""
        self.sources = sources
        self.public_url = public_url.rstrip("/") if public_url else None

    def _called_url(self, request: web.Request) -> str:
        """The URL the vendor called, as HubSpot signs it. Behind a TLS proxy aiohttp sees http
        and the proxy's Host, so the base is the configured public URL; the path and query are
        the bytes as sent (``request.url`` re-encodes escapes such as ``%7E``)."""
        base = self.public_url or f"{request.scheme}://{request.host}"
        return base + request.raw_path

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    def note_accepted(self, event: Event, outcome: Accepted) -> None:
        """What is recorded of an event once accepted (metrics, log lines)."""
        if not outcome.duplicate:
            self.metrics.inc("nurture_events_total", source=event.source, type=event.type)
