"""HubSpot engagement poller: email opens, clicks and unsubscribes, which HubSpot never pushes.

Reads ``GET /email/public/v1/events`` and ``GET /email/public/v1/subscriptions/timeline``
(contract 4.6) from a durable cursor, page by page (``offset`` / ``hasMore``), and hands each
canonical event to the engine. The cursor is the newest item time seen (kinds the engine
skips, such as SENT or DELIVERED, included), saved only after every event up to it was
accepted, so a crash re-reads instead of skipping; each poll also re-reads a short
``overlap`` behind the cursor, for events HubSpot records late. Re-read events
are duplicates by id, which intake acknowledges without effect: no gaps, no doubles.

Unverified ([U]): the query parameter names ``startTimestamp``/``offset``/``limit`` on both
endpoints, and the list envelope of the events endpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp

from adapters.http import request_json
from adapters.hubspot.email_events import (
    PolledPage,
    parse_email_events,
    parse_subscription_timeline,
)
from adapters.ratelimit import WindowLimiter
from engine import Event

Sink = Callable[[Event], Awaitable[Any]]


class CursorStore(Protocol):
    """Where cursors live (``engine.cursors.StoreCursors`` keeps them in the store)."""

    async def get(self, name: str) -> str | None: ...

    async def set(self, name: str, value: str) -> None: ...


FEEDS: tuple[tuple[str, str, Callable[[bytes], PolledPage]], ...] = (
    ("hubspot:email-events", "/email/public/v1/events", parse_email_events),
    (
        "hubspot:subscriptions",
        "/email/public/v1/subscriptions/timeline",
        parse_subscription_timeline,
    ),
)


class EngagementPoller:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        cursors: CursorStore,
        sink: Sink,
        *,
        start: datetime,
        overlap: timedelta = timedelta(minutes=5),
        page_size: int = 100,
        limiter: WindowLimiter | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.cursors = cursors
        self.sink = sink
        self.start = start
        self.overlap = overlap
        self.page_size = page_size
        self.limiter = limiter

    async def poll_once(self) -> int:
        """Read every feed up to now; returns how many events went to the sink."""
        total = 0
        for name, path, parse in FEEDS:
            total += await self._feed(name, path, parse)
        return total

    async def _feed(self, name: str, path: str, parse: Callable[[bytes], PolledPage]) -> int:
        saved = await self.cursors.get(name)
        cursor = datetime.fromisoformat(saved) if saved else self.start
        since_ms = int((cursor - self.overlap).timestamp() * 1000)
        newest = cursor
        offset: str | None = None
        count = 0
        while True:
            params: dict[str, str] = {"startTimestamp": str(since_ms), "limit": str(self.page_size)}
            if offset:
                params["offset"] = offset
            if self.limiter is not None:
                await self.limiter.acquire()
            _, body = await request_json(
                self.session,
                "GET",
                self.base_url + path,
                vendor="hubspot",
                headers=self._headers,
                params=params,
                ok=(200,),
                raw=True,
            )
            page = parse(body)
            for event in page.events:
                await self.sink(event)
                count += 1
                newest = max(newest, event.time.astimezone(UTC))
            if page.newest is not None:  # skipped kinds too (SENT, DELIVERED, SUBSCRIBED...):
                newest = max(newest, page.newest)  # else each sweep re-reads them all again
            if not page.has_more or not page.offset:
                break
            offset = page.offset
        if newest > cursor:
            await self.cursors.set(name, newest.isoformat())
        return count
