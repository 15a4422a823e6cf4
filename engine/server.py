"""The daemon's HTTP face: webhooks in, operations endpoints, one-click links.

``POST /webhooks/{source}`` answers 2xx only after every event of the delivery is committed;
bad input gets 400/401/404/413 with ``{"error": ..., "detail": ...}``, and a store that cannot
commit, a vendor API a delivery must be read back from that cannot answer, or a shutdown in
progress gets 503, so the vendor retries and nothing is lost.
``/healthz`` (alive), ``/readyz`` (store reachable, config loaded, claimer running),
``/metrics`` (Prometheus), ``/admin/*`` (bearer token), ``GET /l/{token}`` (signed links).
Unknown paths and methods get the same JSON error shape; ``schema/openapi.yaml`` documents it all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from engine.clock import Clock
from engine.errors import AdapterError
from engine.events import Event
from engine.intake import Accepted
from engine.links import LinkRefused, LinkSigner
from engine.log_lines import json_line
from engine.metrics import Metrics
from engine.store import queries
from engine.store.store import STORE_DOWN, Store
from engine.store.tables import inbox

log = logging.getLogger("nurture.server")


class _BadRequest(Exception):
    """An admin request body the operation cannot take (answered 400 with the reason)."""


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


def _error(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
# what the inbox keeps of a delivery id and a subject, in characters
_KEPT_ID: int = inbox.c.delivery_id.type.length  # type: ignore[attr-defined]
_KEPT_SUBJECT: int = inbox.c.subject.type.length  # type: ignore[attr-defined]
MAX_SCOPE = 200  # characters of a rule id given to pause/resume
MAX_ID = 2**63 - 1  # the largest id a store column holds


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
        return _error(
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


class WebhookServer:
    def __init__(
        self,
        intake: Callable[[], Accepting],
        store: Store,
        sources: Mapping[str, WebhookSource],
        clock: Clock,
        metrics: Metrics,
        *,
        max_body: int = 1_048_576,
        admin_token: str | None = None,
        links: LinkSigner | None = None,
        state: ServerState | None = None,
        on_accepted: Callable[[], None] | None = None,
        public_url: str | None = None,
    ) -> None:
        self.intake = intake
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.max_body = max_body
        self.admin_token = admin_token
        self.state = state or ServerState()
        self.on_accepted = on_accepted or (lambda: None)  # wakes the outbox workers
        self.serve(sources, links, public_url)
        metrics.declare("nurture_webhooks_total", "counter", "webhook deliveries by outcome")
        metrics.declare("nurture_events_total", "counter", "events accepted by source and type")
        metrics.declare("nurture_webhook_seconds", "histogram", "webhook handling latency")
        metrics.declare("nurture_rule_matches_total", "counter", "events a rule matched")
        metrics.declare("nurture_rule_errors_total", "counter", "evaluation errors by rule")
        metrics.declare("nurture_actions", "gauge", "outbox actions still open, by status")
        metrics.declare("nurture_steps_pending", "gauge", "sequence steps waiting to fire")
        metrics.declare(
            "nurture_steps_overdue_seconds", "gauge", "how long the oldest due step has waited"
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body + 1, middlewares=[json_errors])
        r = app.router
        r.add_post("/webhooks/{source}", self._webhook)
        r.add_get("/healthz", self._healthz)
        r.add_get("/readyz", self._readyz)
        r.add_get("/metrics", self._metrics)
        # no HEAD: link checkers and mail scanners send it, and a HEAD is not a click
        r.add_get("/l/{token}", self._link, allow_head=False)
        r.add_get("/admin/status", self._admin(self._status))
        r.add_post("/admin/pause", self._admin(self._pause))
        r.add_post("/admin/resume", self._admin(self._resume))
        r.add_post("/admin/dlq/replay", self._admin(self._replay))
        return app

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
            return _error(503, "shutting_down", "not accepting webhooks; retry later")
        source = self.sources.get(name)
        if source is None:
            return _error(
                404,
                "unknown_source",
                f"no webhook source {name!r}; known: " + ", ".join(sorted(self.sources)),
            )
        if request.content_length is not None and request.content_length > self.max_body:
            return _error(413, "too_large", f"body over {self.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # also a compressed body that inflates past it
            return _error(413, "too_large", f"body over {self.max_body} bytes")
        except web.RequestPayloadError:
            return _error(400, "bad_encoding", "the body does not decode as its Content-Encoding")
        if len(body) > self.max_body:
            return _error(413, "too_large", f"body over {self.max_body} bytes")
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
            return _error(rejected.status, rejected.error, rejected.detail)
        except AdapterError as exc:  # a read-back (Lever opportunity, HubSpot contact) failed
            log.warning(
                json_line(
                    decision="vendor_unavailable",
                    source=name,
                    error=type(exc).__name__,
                    status=getattr(exc, "status", None),
                )
            )
            return _error(503, "vendor_unavailable", f"{name} could not be read back; retry later")
        if received.ignored is not None and not received.events:
            log.debug(json_line(decision="ignored", source=name, reason=received.ignored))
            return web.json_response({"status": "ignored", "reason": received.ignored}, status=202)
        for event in received.events:
            # PostgreSQL refuses a longer one as a database error, which would be a 503 and a
            # retry of what can never be stored (SQLite would store it: backends must agree)
            for what, value, most in (
                ("delivery id", event.id, _KEPT_ID),
                ("subject", event.subject or "", _KEPT_SUBJECT),
            ):
                if len(value) > most:
                    detail = f"the event's {what} is {len(value)} characters; at most {most}"
                    return _error(400, "bad_payload", detail)
        accepted = duplicates = 0
        try:
            intake = self.intake()
            for index, event in enumerate(received.events):
                outcome = await intake.accept(event, received.replay_key_of(index))
                duplicates += outcome.duplicate
                accepted += not outcome.duplicate
                self.note_accepted(event, outcome)
        except STORE_DOWN as exc:
            log.error(
                json_line(decision="store_unavailable", source=name, error=type(exc).__name__)
            )
            return _error(503, "store_unavailable", "the event could not be stored; retry later")
        if accepted:
            self.on_accepted()
        return web.json_response({"accepted": accepted, "duplicates": duplicates})

    def serve(
        self,
        sources: Mapping[str, WebhookSource],
        links: LinkSigner | None,
        public_url: str | None,
    ) -> None:
        """What the config says about webhooks and links; a reload calls it again."""
        self.sources = sources
        self.links = links
        self.public_url = public_url.rstrip("/") if public_url else None

    def _called_url(self, request: web.Request) -> str:
        """The URL the vendor called, as HubSpot signs it. Behind a TLS proxy aiohttp sees http
        and the proxy's Host, so the base is the configured public URL; the path and query are
        the bytes as sent (``request.url`` re-encodes escapes such as ``%7E``)."""
        base = self.public_url or f"{request.scheme}://{request.host}"
        return base + request.raw_path

    # -- operations -------------------------------------------------------------------------
    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        checks = {
            "store": await self.store.ping(),
            "config": self.state.config_loaded,
            "claimer": self.state.claimer_running(),
            "accepting": self.state.accepting,
            "acceptor": self.state.acceptor_running(),
        }
        return web.json_response(
            {"ready": all(checks.values()), "checks": checks},
            status=200 if all(checks.values()) else 503,
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        self.metrics.set("nurture_last_reload_success", float(self.state.last_reload_ok))
        self.metrics.set("nurture_last_reload_timestamp_seconds", self.state.last_reload_at)
        try:
            async with self.store.read() as conn:
                # open statuses only: counting the done history would grow with every day
                for status, count in (await queries.open_action_counts(conn)).items():
                    self.metrics.set("nurture_actions", count, status=status)
                pending, oldest = await queries.pending_steps(conn)
            overdue = (self.clock.now() - oldest).total_seconds() if oldest else 0.0
            self.metrics.set("nurture_steps_pending", pending)
            self.metrics.set("nurture_steps_overdue_seconds", max(overdue, 0.0))
        except STORE_DOWN:
            pass  # metrics must answer even when the store does not
        # the exposition format's version is a parameter of the content type, as scrapers read it
        return web.Response(
            body=self.metrics.render().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    def _admin(
        self, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def guarded(request: web.Request) -> web.Response:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {self.admin_token}" if self.admin_token else None
            if expected is None or not hmac.compare_digest(
                given.encode("utf-8", "surrogateescape"), expected.encode()
            ):
                return _error(401, "unauthorized", "admin endpoints need the bearer token")
            try:
                return await handler(request)
            except _BadRequest as bad:
                return _error(400, "bad_request", str(bad))
            except STORE_DOWN as exc:  # else aiohttp's plain-text 500
                log.error(json_line(decision="store_unavailable", error=type(exc).__name__))
                return _error(503, "store_unavailable", "the store cannot be reached; retry later")

        return guarded

    def note_accepted(self, event: Event, outcome: Accepted) -> None:
        """Metrics and log lines for an event intake took (from a webhook, a link or a poller):
        ``accepted``, then a line per rule that matched or failed, each carrying the stored
        event's id (``event``) as every later line about its actions does; a rule that did
        not match, at debug. A redelivery changed nothing and says nothing."""
        if outcome.duplicate:
            return
        self.metrics.inc("nurture_events_total", source=event.source, type=event.type)
        log.info(
            json_line(
                decision="accepted",
                event=outcome.event_id,
                event_id=event.id,
                source=event.source,
                type=event.type,
                queued=outcome.queued,
            )
        )
        for decision in outcome.decisions:
            line = {"event": outcome.event_id, "rule": decision.rule_id}
            if decision.error is not None:
                self.metrics.inc("nurture_rule_errors_total", rule=decision.rule_id)
                log.warning(json_line(decision="rule_error", error=decision.error, **line))
            elif decision.matched:
                self.metrics.inc("nurture_rule_matches_total", rule=decision.rule_id)
                log.info(json_line(decision="rule_matched", actions=len(decision.actions), **line))
            elif log.isEnabledFor(logging.DEBUG):
                log.debug(json_line(decision="rule_not_matched", **line))

    async def _status(self, _request: web.Request) -> web.Response:
        async with self.store.read() as conn:
            counts = await queries.status_counts(conn)
            paused = await queries.paused_scopes(conn)
        return web.json_response(
            {"actions": counts, "paused": paused, "accepting": self.state.accepting}
        )

    async def _json(self, request: web.Request) -> dict[str, Any]:
        """The body as a JSON object; no body is ``{}``, anything else not an object is 400
        (whitespace alone included: it is a body, and not JSON)."""
        try:
            raw = await request.read()
        except web.RequestPayloadError:
            raise _BadRequest("the body does not decode as its Content-Encoding") from None
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise _BadRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise _BadRequest("the body is not a JSON object")
        return body

    async def _scope(self, request: web.Request) -> str:
        body = await self._json(request)
        if "rule" not in body:
            return "*"
        rule = body["rule"]
        if not isinstance(rule, str) or not 0 < len(rule) <= MAX_SCOPE or "\x00" in rule:
            raise _BadRequest(f'"rule" must be a rule id (1-{MAX_SCOPE} characters) or absent')
        return rule

    async def _pause(self, request: web.Request) -> web.Response:
        scope = await self._scope(request)
        async with self.store.transaction() as conn:
            await queries.pause(conn, scope, self.clock.now())
            paused = await queries.paused_scopes(conn)
        return web.json_response({"paused": paused})

    async def _resume(self, request: web.Request) -> web.Response:
        scope = await self._scope(request)
        async with self.store.transaction() as conn:
            await queries.resume(conn, scope)
            paused = await queries.paused_scopes(conn)
        return web.json_response({"paused": paused})

    async def _replay(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        every = body.get("all") is True
        action_id = body.get("id")
        valid_id = type(action_id) is int and 0 < action_id <= MAX_ID  # bool is no id
        if not every and not valid_id:
            raise _BadRequest('give {"id": <dead letter id>} or {"all": true}')
        async with self.store.transaction() as conn:
            count = await queries.replay(conn, self.clock.now(), None if every else action_id)
        return web.json_response({"replayed": count})

    # -- one-click links --------------------------------------------------------------------
    async def _link(self, request: web.Request) -> web.Response:
        page = "<!doctype html><title>{0}</title><p>{0}</p>"
        if self.links is None:
            return web.Response(
                status=404, text=page.format("Link not found."), content_type="text/html"
            )
        token = request.match_info["token"]
        try:
            claim = self.links.verify(token, self.clock.now())
        except LinkRefused as refused:
            reason = (
                "This link has expired."
                if str(refused) == "expired"
                else ("This link is not valid.")
            )
            return web.Response(status=400, text=page.format(reason), content_type="text/html")
        now = self.clock.now()
        event = Event(
            id=hashlib.sha256(token.encode()).hexdigest()[:32],
            source="nurture/links",
            type="link.clicked",
            time=now,
            subject=claim.candidate_id,
            data={
                "link": {
                    "name": claim.name,
                    "clicked_at": now.isoformat(),
                    "sequence": claim.sequence,
                    "step": claim.step,
                },
                "candidate": {"id": claim.candidate_id, "email": claim.email},
            },
        )
        try:
            self.note_accepted(event, await self.intake().accept(event))
        except STORE_DOWN:
            return web.Response(
                status=503,
                text=page.format("Please try again in a minute."),
                content_type="text/html",
            )
        return web.Response(
            text=page.format("Thank you - we will keep you posted."), content_type="text/html"
        )
