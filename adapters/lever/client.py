"""Lever Data API v1 client: the ``AtsPort`` (tags, notes) and the reads the webhooks need.

Routes (shared/contracts section 2.2; [P] = community code / community OpenAPI only, [U] =
unverified, nothing here is [V] because Lever's own reference was not reachable):

- Base URL ``https://api.lever.co/v1`` (sandbox ``https://api.sandbox.lever.co/v1``) [P].
- Auth: HTTP Basic, the API key as username and an empty password [P]. OAuth is not
  implemented (its token URL was not captured [U]).
- Single answers are ``{"data": {...}}``, lists ``{"data": [...], "hasNext", "next"}``; pages
  are asked for with ``limit`` (1-100) and ``offset=<the previous answer's next>`` [P].
- Reads: ``GET /opportunities/{id}?expand=stage&expand=owner&expand=applications`` [P],
  ``GET /opportunities?contact_id=..`` (and ``updated_at_start`` for the poller) [P],
  ``GET /stages`` [P], ``GET /archive_reasons/{id}`` [P], ``GET /postings/{id}`` [P].
- Writes carry ``?perform_as=<Lever user id>`` [P]: ``POST /opportunities/{id}/addTags`` and
  ``/removeTags`` with ``{"tags": [..]}`` [P add / U remove], ``POST /opportunities/{id}/notes``
  with ``{"value": <text>}`` [P].
- Errors ``{"code", "message"}`` [U]; ``adapters.http.request_json`` keeps ``message``. 429
  (and 5xx, 408, 409) -> ``AdapterUnavailable``; other 4xx -> ``AdapterRejected``.
- Rate: about 10 requests/s, burst 20 [U]. Every call waits on a ``WindowLimiter`` (default
  10 per second, shared by every caller of the client). Whether Lever sends ``Retry-After`` on
  429 is disputed [U]: a 429 without it is reported with ``retry_after=1.0`` (the limit is per
  second), so the engine's retry does not hammer.

Canonical identity (decision): Lever keeps tags and notes on the **opportunity** (one per
application), while the shipped rules write back with ``candidate_id: candidate.id`` and the
CRM link (email -> ATS id) is per person. So canonical ``candidate.id`` (and ``Event.subject``)
is Lever's **contact** id, stable across a person's opportunities, and ``application.id`` is the
opportunity id. The ``AtsPort`` methods therefore take a contact id and resolve it with
``GET /opportunities?contact_id=<id>``:

- ``add_tag`` / ``add_note`` write to the contact's most recently updated opportunity (the one
  the triggering event was about, in every shipped rule: a rejection, a click on a nurture
  email sent because of it). ``add_tag`` skips the write when that opportunity already has the
  tag (case-insensitive), so a retried action adds nothing.
- ``remove_tag`` removes the tag from every opportunity of the contact that carries it (a tag a
  rule takes away should not survive on an older opportunity); none carrying it is a success.
- A contact with no opportunity answers ``AdapterRejected`` (status 404): permanent, an operator
  must look.
- ``visibility`` of ``add_note`` is not sent: the contract names no visibility for Lever notes.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.http import request_json
from adapters.ratelimit import WindowLimiter
from engine import AdapterRejected, AdapterUnavailable

VENDOR = "lever"
DEFAULT_BASE_URL = "https://api.lever.co/v1"
SANDBOX_BASE_URL = "https://api.sandbox.lever.co/v1"
RATE_PER_SECOND = 10
MAX_PAGE_SIZE = 100
MAX_PAGES = 1000
OPPORTUNITY_EXPAND: tuple[str, ...] = ("stage", "owner", "applications")
POSTING_TTL = 300.0
DEFAULT_RETRY_AFTER = 1.0


def basic_authorization(api_key: str) -> str:
    """``Authorization`` value for Lever: Basic with the key as username, empty password."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode("ascii")


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint: its items and the token of the next page, if any."""

    items: list[dict[str, Any]]
    next: str | None


def _data(body: Any, what: str) -> Any:
    if not isinstance(body, dict) or "data" not in body:
        raise AdapterUnavailable(f"{what}: answer has no 'data' envelope", vendor=VENDOR)
    return body["data"]


def _stamp(item: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


class LeverClient:
    """One Lever account, authenticated with an API key; writes act as ``perform_as``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        perform_as: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        limiter: WindowLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not perform_as:
            raise ValueError("perform_as (a Lever user id) is required for write-backs")
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.perform_as = perform_as
        self.timeout = timeout
        self.limiter = limiter if limiter is not None else WindowLimiter(RATE_PER_SECOND, 1.0)
        self._monotonic = monotonic
        self._headers = {
            "Authorization": basic_authorization(api_key),
            "Accept": "application/json",
        }
        self._stages: dict[str, str] = {}
        self._reasons: dict[str, dict[str, Any]] = {}
        self._postings: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def __repr__(self) -> str:  # never show the key
        return f"LeverClient(base_url={self.base_url!r}, perform_as={self.perform_as!r})"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        json: Any = None,
    ) -> Any:
        await self.limiter.acquire()
        kwargs: dict[str, Any] = {"headers": self._headers, "params": list(params)}
        if json is not None:
            kwargs["json"] = json
        try:
            _, body = await request_json(
                self.session,
                method,
                self.base_url + path,
                vendor=VENDOR,
                timeout=self.timeout,
                **kwargs,
            )
        except AdapterUnavailable as exc:
            if exc.status == 429 and exc.retry_after is None:
                raise AdapterUnavailable(
                    str(exc).removeprefix(f"{VENDOR}: "),
                    vendor=VENDOR,
                    status=429,
                    retry_after=DEFAULT_RETRY_AFTER,
                    correlation_id=exc.correlation_id,
                ) from exc
            raise
        return body

    def _write_params(self) -> list[tuple[str, str]]:
        return [("perform_as", self.perform_as)]

    # -- reads ------------------------------------------------------------------------------
    async def get_opportunity(
        self, opportunity_id: str, *, expand: Sequence[str] = OPPORTUNITY_EXPAND
    ) -> dict[str, Any]:
        """``GET /opportunities/{id}`` with ``expand``; 404 raises ``AdapterRejected``."""
        body = await self._call(
            "GET",
            f"/opportunities/{quote(opportunity_id, safe='')}",
            params=[("expand", e) for e in expand],
        )
        data = _data(body, "opportunity")
        if not isinstance(data, dict):
            raise AdapterUnavailable("opportunity: 'data' is not an object", vendor=VENDOR)
        return data

    async def list_page(
        self,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        offset: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        """One page of a list endpoint (``limit`` 1-100, ``offset`` = previous ``next``)."""
        query = [*params, ("limit", str(max(1, min(limit, MAX_PAGE_SIZE))))]
        if offset:
            query.append(("offset", offset))
        body = await self._call("GET", path, params=query)
        data = _data(body, path)
        items = [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
        has_next = isinstance(body, dict) and body.get("hasNext") is True
        token = body.get("next") if isinstance(body, dict) else None
        return Page(items, str(token) if has_next and token else None)

    async def iterate(
        self,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        limit: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list endpoint, page by page while ``hasNext``."""
        offset: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = await self.list_page(path, params, offset=offset, limit=limit)
            for item in page.items:
                yield item
            if page.next is None or page.next in seen:
                return
            seen.add(page.next)
            offset = page.next

    async def opportunities_of_contact(self, contact_id: str) -> list[dict[str, Any]]:
        """Every opportunity of one contact (``GET /opportunities?contact_id=``)."""
        return [item async for item in self.iterate("/opportunities", [("contact_id", contact_id)])]

    async def stages(self) -> dict[str, str]:
        """Stage id -> name, from ``GET /stages`` (all pages); refreshes the cache."""
        stages = {
            str(item["id"]): str(item.get("text") or item["id"])
            async for item in self.iterate("/stages")
            if item.get("id") is not None
        }
        self._stages = stages
        return stages

    async def stage_name(self, stage_id: str) -> str | None:
        """A stage's name; the list is read again once when the id is not cached."""
        if stage_id not in self._stages:
            await self.stages()
        return self._stages.get(stage_id)

    async def archive_reason(self, reason_id: str) -> dict[str, Any] | None:
        """``GET /archive_reasons/{id}`` (cached: reasons are configuration); None on 404."""
        if reason_id not in self._reasons:
            try:
                body = await self._call("GET", f"/archive_reasons/{quote(reason_id, safe='')}")
            except AdapterRejected as exc:
                if exc.status == 404:
                    return None
                raise
            data = _data(body, "archive reason")
            if not isinstance(data, dict):
                return None
            self._reasons[reason_id] = data
        return self._reasons[reason_id]

    async def posting(self, posting_id: str) -> dict[str, Any] | None:
        """``GET /postings/{id}``, cached for ``POSTING_TTL`` seconds; None on 404."""
        cached = self._postings.get(posting_id)
        now = self._monotonic()
        if cached is not None and now - cached[0] < POSTING_TTL:
            return cached[1]
        try:
            body = await self._call("GET", f"/postings/{quote(posting_id, safe='')}")
        except AdapterRejected as exc:
            if exc.status != 404:
                raise
            data: Any = None
        else:
            data = _data(body, "posting")
        posting = data if isinstance(data, dict) else None
        self._postings[posting_id] = (now, posting)
        return posting

    # -- AtsPort ----------------------------------------------------------------------------
    async def _latest_opportunity(self, contact_id: str) -> dict[str, Any]:
        opportunities = await self.opportunities_of_contact(contact_id)
        if not opportunities:
            raise AdapterRejected(
                f"contact {contact_id!r} has no opportunity to write to",
                vendor=VENDOR,
                status=404,
            )
        return max(opportunities, key=lambda o: (_stamp(o, "updatedAt", "createdAt"), o["id"]))

    async def add_tag(self, candidate_id: str, tag: str) -> None:
        """Tag the contact's most recently updated opportunity (skipped if already tagged)."""
        opportunity = await self._latest_opportunity(candidate_id)
        if any(str(t).lower() == tag.lower() for t in opportunity.get("tags") or []):
            return
        await self._call(
            "POST",
            f"/opportunities/{quote(str(opportunity['id']), safe='')}/addTags",
            params=self._write_params(),
            json={"tags": [tag]},
        )

    async def remove_tag(self, candidate_id: str, tag: str) -> None:
        """Remove the tag from every opportunity of the contact that carries it."""
        for opportunity in await self.opportunities_of_contact(candidate_id):
            present = [t for t in opportunity.get("tags") or [] if str(t).lower() == tag.lower()]
            if not present:
                continue
            await self._call(
                "POST",
                f"/opportunities/{quote(str(opportunity['id']), safe='')}/removeTags",
                params=self._write_params(),
                json={"tags": [str(t) for t in present]},
            )

    async def add_note(self, candidate_id: str, body: str, visibility: str) -> None:
        """A note on the contact's most recently updated opportunity; ``visibility`` unused."""
        opportunity = await self._latest_opportunity(candidate_id)
        await self.add_opportunity_note(str(opportunity["id"]), body)

    async def add_opportunity_note(self, opportunity_id: str, body: str) -> str | None:
        """``POST /opportunities/{id}/notes {"value"}``; returns the note id when answered."""
        answer = await self._call(
            "POST",
            f"/opportunities/{quote(opportunity_id, safe='')}/notes",
            params=self._write_params(),
            json={"value": body},
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        return str(data["id"]) if isinstance(data, dict) and data.get("id") else None
