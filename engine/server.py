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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from engine.clock import Clock
from engine.events import Event
from engine.links import LinkRefused, LinkSigner
from engine.log_lines import json_line
from engine.metrics import Metrics
from engine.store import queries
from engine.store.store import STORE_DOWN, Store
from engine.webhook_handler import (
    Accepted,
    Accepting,
    ServerState,
    WebhookHandler,
    WebhookSource,
    error_response,
    json_errors,
)

log = logging.getLogger("nurture.server")


class _BadRequest(Exception):
    """An admin request body the operation cannot take (answered 400 with the reason)."""


MAX_SCOPE = 200  # characters of a rule id given to pause/resume
MAX_ID = 2**63 - 1  # the largest id a store column holds


class WebhookServer(WebhookHandler):
    """The daemon's whole HTTP face: the webhook handler on the intake, and the rest."""

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
        super().__init__(
            intake,
            sources,
            metrics,
            max_body=max_body,
            state=state,
            on_accepted=on_accepted,
            public_url=public_url,
            unavailable=STORE_DOWN,
        )
        self.store = store
        self.clock = clock
        self.admin_token = admin_token
        self.links = links
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

    def serve(
        self,
        sources: Mapping[str, WebhookSource],
        links: LinkSigner | None,
        public_url: str | None,
    ) -> None:
        """What the config says about webhooks and links; a reload calls it again."""
        self.route_sources(sources, public_url)
        self.links = links

    # -- operations -------------------------------------------------------------------------
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
                return error_response(401, "unauthorized", "admin endpoints need the bearer token")
            try:
                return await handler(request)
            except _BadRequest as bad:
                return error_response(400, "bad_request", str(bad))
            except STORE_DOWN as exc:  # else aiohttp's plain-text 500
                log.error(json_line(decision="store_unavailable", error=type(exc).__name__))
                return error_response(
                    503, "store_unavailable", "the store cannot be reached; retry later"
                )

        return guarded

    def note_accepted(self, event: Event, outcome: Accepted) -> None:
        """Metrics and log lines for an event intake took (from a webhook, a link or a poller):
        ``accepted``, then a line per rule that matched or failed, each carrying the stored
        event's id (``event``) as every later line about its actions does; a rule that did
        not match, at debug. A redelivery changed nothing and says nothing."""
        super().note_accepted(event, outcome)
        if outcome.duplicate:
            return
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
