"""The HubSpot simulator's communication preferences (contract 4.6), a part of
``HubSpotSimulator``: ``GET /communication-preferences/v3/status/email/{email}``, ``POST
.../unsubscribe`` and ``.../subscribe``, and the harness call ``unsubscribe``.

An unsubscribe also goes on the subscriptions timeline the engagement poller reads: in
HubSpot the status and the timeline are two views of one fact. [U]: a contact that never chose
is SUBSCRIBED to every subscription here (a non-GDPR portal); unsubscribing an address that
is already unsubscribed answers 400.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from adapters.hubspot.simulator import HubSpotState

SUBSCRIPTIONS = {
    "7": ("Marketing Information", "News and job openings"),
    "8": ("One to One", "Personal messages from the recruiting team"),
}
"""The portal's subscription definitions: id -> (name, description)."""
PORTAL_ID = 44001234


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": "VALIDATION_ERROR",
        },
        status=status,
    )


class PreferencesRoutes:
    """Mixed into ``HubSpotSimulator``, whose ``state`` it reads and writes."""

    state: HubSpotState

    def add_preference_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/communication-preferences/v3/status/email/{email}", self._status)
        router.add_post("/communication-preferences/v3/unsubscribe", self._unsubscribe)
        router.add_post("/communication-preferences/v3/subscribe", self._subscribe)

    def unsubscribe(
        self, email: str, subscription_id: str = "7", created_ms: int | None = None
    ) -> None:
        """Harness: the person unsubscribes (``"*"``: from all email), seen by both the
        status endpoint and the subscriptions timeline."""
        email = email.strip().lower()
        self.state.unsubscribed.setdefault(email, set()).add(subscription_id)
        stamp = created_ms if created_ms is not None else int(time.time() * 1000)
        wide = subscription_id == "*"
        change: dict[str, Any] = {
            "change": "UNSUBSCRIBED",
            "source": "SOURCE_RECIPIENT",
            "portalId": PORTAL_ID,
            "changeType": "PORTAL_STATUS" if wide else "SUBSCRIPTION_STATUS",
            "causedByEvent": {"id": str(uuid.uuid4()), "created": stamp},
        }
        if not wide:
            change["subscriptionId"] = int(subscription_id)
        self.state.timeline.append(
            {"timestamp": stamp, "portalId": PORTAL_ID, "recipient": email, "changes": [change]}
        )

    def _statuses(self, email: str) -> list[dict[str, Any]]:
        off = self.state.unsubscribed.get(email, set())
        return [
            {
                "id": ident,
                "name": name,
                "description": description,
                "status": "NOT_SUBSCRIBED" if "*" in off or ident in off else "SUBSCRIBED",
                "sourceOfStatus": "PORTAL_WIDE_STATUS" if "*" in off else "SUBSCRIPTION_STATUS",
            }
            for ident, (name, description) in SUBSCRIPTIONS.items()
        ]

    async def _status(self, request: web.Request) -> web.Response:
        email = request.match_info["email"].strip().lower()
        self.state.status_requests.append(email)
        if "@" not in email:
            return _error(400, f"{email} is not a valid email address")
        return web.json_response(
            {"recipient": email, "subscriptionStatuses": self._statuses(email)}
        )

    async def _change(self, request: web.Request, subscribe: bool) -> web.Response:
        body = await request.json()
        email = str((body or {}).get("emailAddress", "")).strip().lower()
        ident = str((body or {}).get("subscriptionId", ""))
        if "@" not in email or ident not in SUBSCRIPTIONS:
            return _error(400, "emailAddress and a known subscriptionId needed")
        off = self.state.unsubscribed.setdefault(email, set())
        if not subscribe:
            if ident in off:
                return _error(400, f"{email} is already unsubscribed")
            self.unsubscribe(email, ident)
        else:
            off.discard(ident)
        [status] = [s for s in self._statuses(email) if s["id"] == ident]
        for key in ("legalBasis", "legalBasisExplanation"):
            if body.get(key):
                status[key] = body[key]
        return web.json_response(status)

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        return await self._change(request, subscribe=False)

    async def _subscribe(self, request: web.Request) -> web.Response:
        return await self._change(request, subscribe=True)
