"""Ashby API client: the ``AtsPort`` (tags, notes) and the ``application.list`` reads the poller
needs.

Canonical identity: ``candidate.id`` is Ashby's candidate id (as in the webhooks), so the port
methods write to that candidate directly; no lookup is needed.

Every contract assumption this module rests on, in one place ([V] seen in Ashby's own
documentation, [P] community code or third-party pages only, [U] unverified):

- [V] RPC style: ``POST <base>/<category>.<method>`` with a JSON body, even for reads; base
  ``https://api.ashbyhq.com``; ``Accept: application/json; version=1`` as the docs' curl sends.
- [V] Auth: HTTP Basic with the API key as username and an empty password. A missing key
  answers 401, a bad or deactivated key 403, a key without the module's permission 403 with the
  error ``missing_endpoint_permission``.
- [V] Successful answers are ``{"success": true, "results": ...}``; lists add
  ``moreDataAvailable`` and ``nextCursor`` and take ``limit`` and ``cursor``; the last page of a
  pass carries ``syncToken``, which the next sync sends to read only what changed
  (developers.ashbyhq.com/docs/pagination-and-incremental-sync; the contract still says [P]).
- [P] Later pages of an incremental sync send the ``syncToken`` together with the ``cursor``.
- [U] Failures are ``{"success": false, "errors": [<code or message>, ...]}``; an object item's
  ``code``/``message`` and an ``errorInfo`` object are read too. A failure answered with a 2xx
  status is permanent (``AdapterRejected`` carrying that status and Ashby's codes), as
  ``adapters.http`` classifies by status; a non-2xx failure is classified by its status there
  (429, 5xx, 408, 409 retryable with ``Retry-After``; other 4xx permanent).
- [U] An expired sync token fails with the code ``sync_token_expired`` (one community client);
  it raises ``SyncTokenExpired`` and the poller falls back to a full sync.
- [U] Rate limits are not published in what we captured. Every call waits on a ``WindowLimiter``
  of ``RATE_PER_SECOND`` (5) requests per second, shared by every caller of one client; a 429
  still reaches the engine's retry with its ``Retry-After``.
- [U] Page size: at most ``MAX_PAGE_SIZE`` (100) per page; Ashby caps ``limit`` itself.
- [V] ``candidateTag.create`` ``{"title"}`` answers the tag ``{id, title, isArchived}``.
  [P] ``candidateTag.list`` (paginated like other lists) lists the catalogue; whether ``create``
  refuses or duplicates an existing title is [U], so ``add_tag`` looks the title up first
  (case-insensitive, non-archived tags preferred) and creates it only when missing. Tag ids are
  cached; a write that fails with a cached id (the tag was deleted) looks it up again, once.
- [P] ``candidate.addTag`` ``{"candidateId", "tagId"}`` (the contract example's body). Adding a
  tag the candidate already has is assumed to succeed unchanged [U], so a retried action is
  harmless.
- [P] ``candidate.removeTag`` ``{"candidateId", "tagId"}``: not in the contract; several
  community clients call it. A tag missing from the catalogue is a success without a call
  (nothing can carry it).
- [P] ``candidate.createNote`` ``{"candidateId", "note", "sendNotifications"}``: ``note`` is plain
  text; ``sendNotifications`` is false so an automated note emails nobody. The port's
  ``visibility`` is not sent: Ashby's ``isPrivate`` needs a key permission that is off by
  default [P], and a refused note would dead-letter every write-back.
- [P] ``candidate.search`` ``{"email"}`` answers a list of candidates (contract example).
- [P] ``application.list`` results have the shape of the webhooks' ``data.application`` (see
  ``adapters.ashby.webhooks``).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.http import Answer, request
from adapters.ratelimit import WindowLimiter
from engine import AdapterError, AdapterRejected, AdapterTimeout, AdapterUnavailable

VENDOR = "ashby"
DEFAULT_BASE_URL = "https://api.ashbyhq.com"
ACCEPT = "application/json; version=1"
RATE_PER_SECOND = 5
MAX_PAGE_SIZE = 100
MAX_PAGES = 1000
SYNC_TOKEN_EXPIRED = "sync_token_expired"
MISSING_PERMISSION = "missing_endpoint_permission"


def basic_authorization(api_key: str) -> str:
    """``Authorization`` value for Ashby: Basic with the key as username, empty password."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode("ascii")


class SyncTokenExpired(AdapterRejected):
    """Ashby no longer accepts the saved ``syncToken``: only a full sync can continue."""


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint: its items, the cursor of the next page, and the
    ``syncToken`` that the last page of a pass carries."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    sync_token: str | None


def error_codes(body: dict[str, Any]) -> list[str]:
    """Ashby's error codes or messages from a ``success: false`` answer, in order."""
    codes: list[str] = []
    errors = body.get("errors")
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, str) and error:
            codes.append(error)
        elif isinstance(error, dict):
            text = error.get("code") or error.get("message")
            if text:
                codes.append(str(text))
    info = body.get("errorInfo")
    if isinstance(info, dict):
        text = info.get("code") or info.get("message")
        if text and str(text) not in codes:
            codes.append(str(text))
    return codes


def _hint(status: int | None, message: str) -> str:
    """What an operator should check, for the answers that mean "the key is wrong"."""
    if MISSING_PERMISSION in message:
        return " (the API key lacks this endpoint's permission: Ashby Admin > API Keys)"
    if status == 401:
        return " (no API key was accepted: check vendors.ashby.api_key_env)"
    if status == 403:
        return " (the API key is invalid or deactivated)"
    return ""


class AshbyClient:
    """One Ashby account, authenticated with an API key."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        limiter: WindowLimiter | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.limiter = limiter if limiter is not None else WindowLimiter(RATE_PER_SECOND, 1.0)
        self._headers = {"Authorization": basic_authorization(api_key), "Accept": ACCEPT}
        self._tag_ids: dict[str, str] = {}

    def __repr__(self) -> str:  # never show the key
        return f"AshbyClient(base_url={self.base_url!r})"

    async def call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one RPC; returns the whole ``success: true`` envelope or raises an
        AdapterError whose message names the endpoint and keeps Ashby's error codes."""
        await self.limiter.acquire()
        try:
            answer = await request(
                self.session,
                "POST",
                f"{self.base_url}/{endpoint}",
                vendor=VENDOR,
                ok=(200, 201),
                timeout=self.timeout,
                headers=self._headers,
                json=body,
            )
        except AdapterTimeout:
            raise  # its message already names the URL
        except AdapterError as exc:
            raise _named(exc, endpoint) from exc
        return _envelope(answer, endpoint)

    # -- reads ------------------------------------------------------------------------------
    async def search_candidates(self, email: str) -> list[dict[str, Any]]:
        """``candidate.search {"email"}``: the candidates with this address."""
        return _result_list(
            await self.call("candidate.search", {"email": email}), "candidate.search"
        )

    async def list_page(
        self,
        endpoint: str,
        *,
        cursor: str | None = None,
        sync_token: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        **filters: Any,
    ) -> Page:
        """One page of a paginated list endpoint (``limit``, ``cursor``, ``syncToken``)."""
        body: dict[str, Any] = {**filters, "limit": max(1, min(limit, MAX_PAGE_SIZE))}
        if cursor:
            body["cursor"] = cursor
        if sync_token:
            body["syncToken"] = sync_token
        envelope = await self.call(endpoint, body)
        items = _result_list(envelope, endpoint)
        more = envelope.get("moreDataAvailable") is True
        next_cursor = envelope.get("nextCursor")
        token = envelope.get("syncToken")
        return Page(
            items,
            str(next_cursor) if more and next_cursor else None,
            str(token) if token else None,
        )

    async def list_applications(
        self, *, cursor: str | None = None, sync_token: str | None = None, limit: int = 100
    ) -> Page:
        """One page of ``application.list`` (a full sync without ``sync_token``)."""
        return await self.list_page(
            "application.list", cursor=cursor, sync_token=sync_token, limit=limit
        )

    async def tags(self) -> list[dict[str, Any]]:
        """Every tag of the catalogue (``candidateTag.list``, all pages); refreshes the cache."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self.list_page("candidateTag.list", cursor=cursor)
            found.extend(page.items)
            if page.next_cursor is None or page.next_cursor == cursor:
                break
            cursor = page.next_cursor
        ids: dict[str, str] = {}
        # archived tags first, so a live tag with the same title wins
        for tag in sorted(found, key=lambda t: t.get("isArchived") is not True):
            if tag.get("id") and isinstance(tag.get("title"), str):
                ids[tag["title"].strip().lower()] = str(tag["id"])
        self._tag_ids = ids
        return found

    # -- AtsPort ----------------------------------------------------------------------------
    async def _tag_id(self, tag: str, *, create: bool) -> str | None:
        key = tag.strip().lower()
        if key not in self._tag_ids:
            await self.tags()
        if key not in self._tag_ids and create:
            envelope = await self.call("candidateTag.create", {"title": tag.strip()})
            created = envelope.get("results")
            if not isinstance(created, dict) or not created.get("id"):
                raise AdapterUnavailable(
                    "candidateTag.create: answer has no tag id", vendor=VENDOR, status=200
                )
            self._tag_ids[key] = str(created["id"])
        return self._tag_ids.get(key)

    async def _with_tag(
        self, tag: str, *, create: bool, write: Callable[[str], Awaitable[Any]]
    ) -> None:
        cached = tag.strip().lower() in self._tag_ids
        tag_id = await self._tag_id(tag, create=create)
        if tag_id is None:
            return
        try:
            await write(tag_id)
        except AdapterRejected as exc:
            if not cached or exc.status in (401, 403):
                raise
            # the cached id may belong to a tag deleted since: look the title up again, once
            self._tag_ids.pop(tag.strip().lower(), None)
            fresh = await self._tag_id(tag, create=create)
            if fresh is None:
                return
            if fresh == tag_id:
                raise
            await write(fresh)

    async def add_tag(self, candidate_id: str, tag: str) -> None:
        """Tag the candidate, creating the tag in the catalogue when it is missing."""

        async def write(tag_id: str) -> None:
            await self.call("candidate.addTag", {"candidateId": candidate_id, "tagId": tag_id})

        await self._with_tag(tag, create=True, write=write)

    async def remove_tag(self, candidate_id: str, tag: str) -> None:
        """``candidate.removeTag`` [P]; a tag missing from the catalogue needs no call."""

        async def write(tag_id: str) -> None:
            await self.call("candidate.removeTag", {"candidateId": candidate_id, "tagId": tag_id})

        await self._with_tag(tag, create=False, write=write)

    async def add_note(self, candidate_id: str, body: str, visibility: str) -> None:
        """A plain-text note that notifies nobody; ``visibility`` is not sent (module doc)."""
        await self.create_note(candidate_id, body)

    async def create_note(self, candidate_id: str, body: str) -> str | None:
        """``candidate.createNote``; returns the note id when Ashby answers one."""
        envelope = await self.call(
            "candidate.createNote",
            {"candidateId": candidate_id, "note": body, "sendNotifications": False},
        )
        note = envelope.get("results")
        return str(note["id"]) if isinstance(note, dict) and note.get("id") else None


def _named(exc: AdapterError, endpoint: str) -> AdapterError:
    """The same error, its message naming the endpoint and what to check."""
    message = str(exc).removeprefix(f"{VENDOR}: ")
    text = f"{endpoint}: {message}{_hint(exc.status, message)}"
    if isinstance(exc, AdapterRejected):
        return AdapterRejected(
            text,
            vendor=VENDOR,
            status=exc.status or 0,
            body_excerpt=exc.body_excerpt,
            correlation_id=exc.correlation_id,
        )
    return AdapterUnavailable(
        text,
        vendor=VENDOR,
        status=exc.status,
        retry_after=exc.retry_after,
        correlation_id=exc.correlation_id,
    )


def _envelope(answer: Answer, endpoint: str) -> dict[str, Any]:
    body = answer.body
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        excerpt = answer.text[:200]
        raise AdapterUnavailable(
            f"{endpoint}: answer has no {{success, results}} envelope: {excerpt!r}",
            vendor=VENDOR,
            status=answer.status,
        )
    if body["success"]:
        return body
    codes = error_codes(body)
    message = "; ".join(codes) or answer.text[:200]
    kind = SyncTokenExpired if SYNC_TOKEN_EXPIRED in codes else AdapterRejected
    raise kind(
        f"{endpoint} refused (HTTP {answer.status}, success false): {message}",
        vendor=VENDOR,
        status=answer.status,
        body_excerpt=answer.text[:300],
    )


def _result_list(envelope: dict[str, Any], what: str) -> list[dict[str, Any]]:
    results = envelope.get("results")
    if not isinstance(results, list):
        raise AdapterUnavailable(f"{what}: 'results' is not a list", vendor=VENDOR, status=200)
    return [item for item in results if isinstance(item, dict)]
