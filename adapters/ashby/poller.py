"""Ashby application poller, for accounts that do not (or cannot) send webhooks.

Reads ``application.list`` page by page (``cursor`` = the previous ``nextCursor`` while
``moreDataAvailable``) and hands the same canonical events the webhooks produce
(``webhooks.application_events``, so both paths normalise alike) to a sink (intake). The
contract facts it rests on are listed in ``adapters.ashby.client``.

Cursor: Ashby's ``syncToken`` [V], saved under ``ashby:applications`` only after the sink
accepted every event of the pass, so a crash re-reads the pass instead of skipping it; the
next sweep sends the token and reads only the applications changed since (the first sweep is
a full sync). What is re-read gives the same event ids, which intake acknowledges as
duplicates. A token Ashby refuses as expired [U] starts a full sync at once. A 429 on a page is
waited out (``Retry-After``, at most ``max_wait`` seconds, ``max_waits`` times; the sleep is
injected) so a long pass need not start over.

What changed is inferred from the application alone (the list shows states, not a change
log), against the stage the engine last saw for it (``PollState.stage``, the memory that
fills ``previous_stage``) and with ``start`` as the lower bound for "recent":

- never seen and ``createdAt >= start`` -> ats.application.created, id
  ``ashby:poll:created:<app>`` (its acceptance remembers the stage it carries);
- a ``currentInterviewStage`` that is not the stage last seen -> ats.application.stage_changed,
  id ``ashby:poll:stage:<app>:<stage id>:<updatedAt>``, preceded, when the status is
  ``Archived`` and ``archivedAt >= start``, by ats.application.rejected, id
  ``ashby:poll:rejected:<app>:<archivedAt>``, whose ``stage`` is null in the Archived stage so
  the engine fills in the stage it last saw (the webhooks' rule and order). A change that
  moves nothing (a custom field, a source) gives no event. A stage left and re-entered between
  two sweeps is missed, and an application the engine never saw, changed after ``start``, is
  reported once in its current stage;
- status ``Hired`` and ``updatedAt >= start`` -> ats.application.hired, id
  ``ashby:poll:hired:<app>``, after the stage change (one hire per application; Ashby gives no
  hire time, so the hire is timed by ``updatedAt``; a later change re-sends it, and intake
  acknowledges the duplicate).

Applications untouched since ``start`` (most of a first full sync) cost no store read.
Candidate-only changes (tags), deletions and merges are not in the application list: they
still need the webhooks. The ids differ from the webhooks' (those come from
``webhookActionId`` or the body's digest), so an account sends its application events by
webhook **or** lets this poller read them; the stage memory is shared, so a stage change seen
through one is not reported again by the other. An application whose shape the normaliser
refuses is logged and skipped, so one bad record cannot stop every later sweep.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from adapters.ashby.client import AshbyClient, Page, SyncTokenExpired
from adapters.ashby.webhooks import application_events
from adapters.normalise import SYSTEM_CLOCK, Clock, JsonObject, PayloadError, expect_object
from engine import AdapterUnavailable, Event

Sink = Callable[[Event], Awaitable[Any]]
CURSOR_NAME = "ashby:applications"
MAX_PAGES = 100_000
MAX_TOKEN_LENGTH = 400  # the store's cursor column
log = logging.getLogger("nurture.ashby.poller")


class PollState(Protocol):
    """Cursors and the engine's stage memory in the store (``engine.cursors.StoreCursors``)."""

    async def get(self, name: str) -> str | None: ...

    async def set(self, name: str, value: str) -> None: ...

    async def stage(self, application_id: str) -> dict[str, Any] | None: ...


def _log(decision: str, **fields: Any) -> None:
    log.warning(json.dumps({"decision": decision, "vendor": "ashby", **fields}))


class ApplicationPoller:
    def __init__(
        self,
        client: AshbyClient,
        state: PollState,
        sink: Sink,
        *,
        start: datetime,
        page_size: int = 100,
        name: str = CURSOR_NAME,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_wait: float = 60.0,
        max_waits: int = 5,
    ) -> None:
        self.client = client
        self.state = state
        self.sink = sink
        self.start = start
        self.page_size = page_size
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait
        self.max_waits = max_waits

    async def poll_once(self) -> int:
        """One sweep from the saved ``syncToken``; returns the events handed to the sink."""
        token = await self.state.get(self.name)
        try:
            return await self._sweep(token)
        except SyncTokenExpired:
            if token is None:
                raise
            _log("sync_token_expired", detail="the saved syncToken expired: full sync")
            return await self._sweep(None)

    async def _sweep(self, token: str | None) -> int:
        cursor: str | None = None
        seen: set[str] = set()
        count = 0
        for _ in range(MAX_PAGES):
            page = await self._page(cursor, token)
            for app in page.items:
                try:
                    count += await self._emit(app)
                except PayloadError as exc:
                    _log("poll_record_skipped", id=app.get("id"), error=str(exc))
            if page.next_cursor is None:
                break
            if page.next_cursor in seen:
                raise AdapterUnavailable(
                    f"application.list repeated the cursor {page.next_cursor!r}", vendor="ashby"
                )
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        else:
            raise AdapterUnavailable(f"application.list: over {MAX_PAGES} pages", vendor="ashby")
        await self._save(page.sync_token, token)
        return count

    async def _save(self, new: str | None, old: str | None) -> None:
        if new is None:
            _log("no_sync_token", detail="the last page had no syncToken: the next sweep is full")
        elif len(new) > MAX_TOKEN_LENGTH:
            raise AdapterUnavailable(
                f"application.list: syncToken of {len(new)} characters does not fit the "
                f"store's {MAX_TOKEN_LENGTH}",
                vendor="ashby",
            )
        elif new != old:
            await self.state.set(self.name, new)

    async def _page(self, cursor: str | None, token: str | None) -> Page:
        """One page; a 429 is waited out here, within ``max_wait`` and ``max_waits``."""
        for waits in range(self.max_waits + 1):
            try:
                return await self.client.list_applications(
                    cursor=cursor, sync_token=token, limit=self.page_size
                )
            except AdapterUnavailable as exc:
                wait = exc.retry_after if exc.retry_after is not None else 1.0
                if exc.status != 429 or waits == self.max_waits or wait > self.max_wait:
                    raise
                await self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _recent(self, moment: datetime | None) -> bool:
        return moment is not None and moment >= self.start

    async def _emit(self, app: dict[str, Any]) -> int:
        """Hand the events this application stands for to the sink, in order (module doc)."""
        node = expect_object(app, "/application")
        app_id = node.id("id")
        created, updated = node.opt_time("createdAt"), node.opt_time("updatedAt")
        if not self._recent(created) and not self._recent(updated):
            return 0
        status = node.opt_text("status")
        stage = node.opt_obj("currentInterviewStage")
        stage_id = stage.opt_id("id") if stage is not None else None
        seen = await self.state.stage(app_id)
        moved = stage_id is not None and (seen is None or str(seen.get("id")) != stage_id)
        data = JsonObject({"application": app}, "")
        events: list[Event] = []
        submitted = seen is None and self._recent(created)
        if submitted:  # its acceptance remembers the stage it carries: no stage change too
            events += application_events(
                "applicationSubmit", data, f"ashby:poll:created:{app_id}", self.clock
            )
        if moved:
            event_id = f"ashby:poll:stage:{app_id}:{stage_id}:{node.opt_text('updatedAt')}"
            pair = application_events("candidateStageChange", data, event_id, self.clock)
            for event in pair:  # the rejection first, as the webhooks order it
                if event.type == "ats.application.rejected":
                    if self._recent(node.opt_time("archivedAt")):
                        archived_at = node.opt_text("archivedAt")
                        rejected_id = f"ashby:poll:rejected:{app_id}:{archived_at}"
                        events.append(event.model_copy(update={"id": rejected_id}))
                elif not submitted:
                    events.append(event)
        if status == "Hired" and self._recent(updated):
            events += application_events(
                "candidateHire", data, f"ashby:poll:hired:{app_id}", self.clock
            )
        for event in events:
            await self.sink(event)
        return len(events)
