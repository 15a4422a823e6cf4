"""Greenhouse Harvest client: the ``AtsPort`` (tags and notes on a candidate).

Routes (shared/contracts section 1.2, all [V] unless marked):

- tag catalogue ``GET /v1/tags/candidate`` -> ``[{id, name}]``, paginated by an RFC-5988
  ``Link`` header (``rel="next"``; no ``Link`` header = a single page). We follow the links and
  never build page numbers; ``per_page=500`` (the documented maximum) keeps the pages few.
- create tag ``POST /v1/tags/candidate`` ``{name}``: case-insensitive, **200** if it already
  existed, **201** if created, body ``{id, name}`` either way. So ``add_tag`` needs no lookup.
- apply ``PUT /v1/candidates/{candidate_id}/tags/{tag_id}`` (no body); remove ``DELETE`` on the
  same path.
- note ``POST /v1/candidates/{id}/activity_feed/notes`` ``{user_id, body, visibility}``,
  visibility ``admin_only`` / ``private`` / ``public``.
- every write carries ``On-Behalf-Of: <Greenhouse user id>``; the note's ``user_id`` is the same
  user.
- reads for the pollers: ``list_url`` / ``page`` follow a list route's ``Link`` pages,
  ``get_object`` reads one record; ``reads.py`` says which routes and filters they use.

Auth:

- ``BasicAuth(api_key)``: HTTP Basic, the Harvest token as username, empty password [V].
- ``OAuthClientCredentials``: Harvest v3 custom-integration auth [V]: ``POST
  https://auth.greenhouse.io/token`` with HTTP Basic ``client_id:client_secret`` and the form
  ``grant_type=client_credentials&sub=<user id>``, then ``Authorization: Bearer <JWT>``. The token
  answer is read as standard OAuth2 (``access_token``, ``expires_in``) [U: field names not
  captured; a missing ``expires_in`` is taken as 3600 s, the partner-flow token lifetime [V]].
  The token is fetched on first use, cached, refreshed ``TOKEN_REFRESH_MARGIN`` early, and
  refreshed once more when a call answers 401 (then the call is retried once).

Decisions and doubtful facts:

- v3 write routes for tags and notes were not captured [U], so the **v1 routes are used for
  writes under both auth modes**. Whether v1 routes accept a v3 bearer token is itself [U]; when
  Greenhouse publishes the v3 routes only ``_TAG_*`` / ``_NOTE`` paths need to change.
- Errors are mapped by the shared ``adapters.http.request`` (which also keeps the response
  headers that ``Link`` paging needs): 429 (and 5xx, 408, 409) ->
  ``AdapterUnavailable`` with ``retry_after`` from ``Retry-After`` [V] (else from
  ``X-RateLimit-Reset``, read as a Unix timestamp [U unit]), so the engine's retry honours the
  rate limit; other 4xx -> ``AdapterRejected``. A 422 has its ``errors[]`` (``field: message``)
  added to the message [V shape]. ``rate_limit_remaining`` keeps the last
  ``X-RateLimit-Remaining`` seen, for metrics. No client-side token bucket: the 10-second cap
  (``X-RateLimit-Limit``) is per key and shared with other integrations, so only the server's
  429 is authoritative.
- Tag ids are cached by lower-cased name (the catalogue is case-insensitive [V]). A cached id that
  answers 404 on apply (tag deleted from the catalogue) is dropped and the tag created again, once.
- ``remove_tag`` of a tag that is not in the catalogue, and a 404 on the ``DELETE`` ("not applied
  / already gone"), both count as success [U: the exact answer for a tag not on the candidate is
  not documented]. A 404 for an unknown candidate is therefore also swallowed.
- ``Link`` URLs are followed on the configured base URL's origin only (path and query are kept),
  so credentials are never sent to another host; at most ``MAX_PAGES`` pages are read.
- Secrets (API key, client secret, bearer token) never appear in exception text or ``repr``: any
  message that would contain one is scrubbed.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp

from adapters.http import Answer, request
from engine import AdapterError, AdapterRejected, AdapterTimeout, AdapterUnavailable

VENDOR = "greenhouse"
DEFAULT_BASE_URL = "https://harvest.greenhouse.io"
DEFAULT_TOKEN_URL = "https://auth.greenhouse.io/token"
TOKEN_REFRESH_MARGIN = timedelta(seconds=60)
DEFAULT_TOKEN_TTL = 3600.0
TAG_PAGE_SIZE = 500
MAX_PAGES = 200

_TAG_CATALOGUE = "/v1/tags/candidate"
_CANDIDATE_TAG = "/v1/candidates/{candidate_id}/tags/{tag_id}"
_NOTE = "/v1/candidates/{candidate_id}/activity_feed/notes"
_LINK_PART = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_REL = re.compile(r'rel\s*=\s*"?([^";]+)"?', re.IGNORECASE)
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class BasicAuth:
    """Harvest v1/v2 API token (HTTP Basic username, empty password)."""

    api_key: str = field(repr=False)


@dataclass(frozen=True)
class OAuthClientCredentials:
    """Harvest v3 custom-integration credentials; ``user_id`` is the token's ``sub``.

    An empty ``user_id`` means the client's ``on_behalf_of`` user.
    """

    client_id: str
    client_secret: str = field(repr=False)
    token_url: str = DEFAULT_TOKEN_URL
    user_id: str = ""


HarvestAuth = BasicAuth | OAuthClientCredentials


def basic_authorization(username: str, password: str = "") -> str:
    """An ``Authorization`` value for HTTP Basic (``aiohttp.BasicAuth`` is deprecated)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def parse_link_header(value: str | None) -> dict[str, str]:
    """``{rel: url}`` from an RFC-5988 ``Link`` header (empty when absent)."""
    links: dict[str, str] = {}
    if not value:
        return links
    for match in _LINK_PART.finditer(value):
        url, params = match.group(1).strip(), match.group(2)
        rel = _REL.search(params)
        if rel:
            for name in rel.group(1).split():
                links.setdefault(name.lower(), url)
    return links


async def harvest_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    ok: tuple[int, ...] = (200, 201, 204),
    timeout: float = 10.0,
    **kwargs: Any,
) -> Answer:
    """``adapters.http.request`` for Greenhouse: headers kept (Harvest pages through ``Link``),
    ``X-RateLimit-Reset`` used when a 429 has no ``Retry-After``."""
    return await request(session, method, url, vendor=VENDOR, ok=ok, timeout=timeout, **kwargs)


@dataclass
class _Token:
    value: str
    expires_at: datetime


class HarvestClient:
    """One Greenhouse account, acting as the user ``on_behalf_of`` for every write."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str = DEFAULT_BASE_URL,
        *,
        on_behalf_of: str,
        auth: HarvestAuth,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = _utc_now,
        tag_page_size: int = TAG_PAGE_SIZE,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.on_behalf_of = str(on_behalf_of)
        self.timeout = timeout
        self.tag_page_size = tag_page_size
        self._auth = auth
        self._clock = clock
        self._tag_ids: dict[str, int] = {}
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0
        self.rate_limit_remaining: int | None = None

    def __repr__(self) -> str:
        return f"HarvestClient({self.base_url!r}, on_behalf_of={self.on_behalf_of!r})"

    # -- secrets ----------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        found = []
        if isinstance(self._auth, BasicAuth):
            found.append(self._auth.api_key)
        else:
            found.append(self._auth.client_secret)
        if self._token is not None:
            found.append(self._token.value)
        return [s for s in found if s]

    def _scrub(self, exc: AdapterError) -> AdapterError:
        """The same error with any secret removed from its text (usually returned unchanged)."""
        text = str(exc)
        excerpt = exc.body_excerpt if isinstance(exc, AdapterRejected) else ""
        secrets = [s for s in self._secrets() if s in text or s in excerpt]
        if not secrets:
            return exc
        prefix = f"{exc.vendor}: "
        message = text.removeprefix(prefix)
        for secret in secrets:
            message = message.replace(secret, _REDACTED)
            excerpt = excerpt.replace(secret, _REDACTED)
        if isinstance(exc, AdapterRejected):
            return AdapterRejected(
                message,
                vendor=exc.vendor,
                status=exc.status or 0,
                body_excerpt=excerpt,
                correlation_id=exc.correlation_id,
            )
        cls = AdapterTimeout if isinstance(exc, AdapterTimeout) else AdapterUnavailable
        return cls(
            message,
            vendor=exc.vendor,
            status=exc.status,
            retry_after=exc.retry_after,
            correlation_id=exc.correlation_id,
        )

    # -- OAuth ------------------------------------------------------------------------------
    def _token_valid(self) -> bool:
        return (
            self._token is not None
            and self._clock() < self._token.expires_at - TOKEN_REFRESH_MARGIN
        )

    async def _bearer(self, stale: str | None = None) -> str:
        """A usable access token; ``stale`` is one the vendor just refused (401)."""
        assert isinstance(self._auth, OAuthClientCredentials)
        async with self._token_lock:
            current = self._token
            # a token other than the refused one (another task may have refreshed it while we
            # waited for the lock) is reused while it is fresh
            if current is not None and current.value != stale and self._token_valid():
                return current.value
            self._token = await self._fetch_token(self._auth)
            return self._token.value

    async def _fetch_token(self, creds: OAuthClientCredentials) -> _Token:
        self.token_fetches += 1
        answer = await harvest_request(
            self.session,
            "POST",
            creds.token_url,
            ok=(200,),
            timeout=self.timeout,
            data={"grant_type": "client_credentials", "sub": creds.user_id or self.on_behalf_of},
            headers={
                "Accept": "application/json",
                "Authorization": basic_authorization(creds.client_id, creds.client_secret),
            },
        )
        body = answer.body
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise AdapterUnavailable("token endpoint answered without access_token", vendor=VENDOR)
        try:
            ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL)
        except (TypeError, ValueError):
            ttl = DEFAULT_TOKEN_TTL
        return _Token(body["access_token"], self._clock() + timedelta(seconds=ttl))

    # -- transport --------------------------------------------------------------------------
    async def _send(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> Answer:
        answer = await harvest_request(
            self.session, method, url, headers=headers, timeout=self.timeout, **kwargs
        )
        remaining = answer.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.isdigit():
            self.rate_limit_remaining = int(remaining)
        return answer

    async def _call(self, method: str, url: str, **kwargs: Any) -> Answer:
        """One Harvest request with auth and ``On-Behalf-Of`` on writes; secrets scrubbed."""
        headers = {"Accept": "application/json"}
        if method != "GET":
            headers["On-Behalf-Of"] = self.on_behalf_of
        try:
            if isinstance(self._auth, BasicAuth):
                headers["Authorization"] = basic_authorization(self._auth.api_key)
                return await self._send(method, url, headers, kwargs)
            token = await self._bearer()
            try:
                return await self._send(
                    method, url, {**headers, "Authorization": f"Bearer {token}"}, kwargs
                )
            except AdapterRejected as exc:
                if exc.status != 401:
                    raise
            token = await self._bearer(stale=token)  # refused: refresh once, retry once
            return await self._send(
                method, url, {**headers, "Authorization": f"Bearer {token}"}, kwargs
            )
        except AdapterError as exc:
            scrubbed = self._scrub(exc)
            if scrubbed is exc:
                raise
            raise scrubbed from None

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _same_origin(self, link: str) -> str:
        """``link`` re-based onto the configured origin (path and query kept)."""
        base = urlsplit(self.base_url)
        target = urlsplit(link)
        return urlunsplit((base.scheme, base.netloc, target.path, target.query, ""))

    # -- tags -------------------------------------------------------------------------------
    async def list_tags(self) -> list[dict[str, Any]]:
        """The whole candidate tag catalogue, following ``Link rel="next"``; refreshes the cache."""
        url: str | None = self._url(f"{_TAG_CATALOGUE}?per_page={self.tag_page_size}")
        seen: set[str] = set()
        tags: list[dict[str, Any]] = []
        while url is not None and url not in seen and len(seen) < MAX_PAGES:
            seen.add(url)
            page, next_url = await self._get_page(url)
            for tag in page:
                if isinstance(tag, dict) and "id" in tag and "name" in tag:
                    tags.append(tag)
                    self._tag_ids[str(tag["name"]).lower()] = int(tag["id"])
            url = self._same_origin(next_url) if next_url else None
        return tags

    # -- reads (the pollers) ----------------------------------------------------------------
    def list_url(self, path: str, params: Mapping[str, str]) -> str:
        """The first page's URL of a list route; later pages come from its ``Link`` header."""
        return self._url(path) + ("?" + urlencode(params) if params else "")

    async def page(self, url: str) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list route: its objects and the next page's URL, None on the last.

        The next URL is taken from ``Link rel="next"`` exactly as sent (re-based onto our
        origin), never built: v1 links carry ``page`` numbers, v3 links an opaque ``cursor``
        that must be the only parameter [V contract 1.2 / 1.3]. A body that is not an array is
        an error, not an empty page, so a poller never mistakes it for "nothing changed".
        """
        answer = await self._call("GET", url)
        if not isinstance(answer.body, list):
            raise AdapterUnavailable(
                f"GET {urlsplit(url).path}: expected a JSON array, got "
                f"{type(answer.body).__name__}",
                vendor=VENDOR,
            )
        next_url = parse_link_header(answer.headers.get("Link")).get("next")
        items = [item for item in answer.body if isinstance(item, dict)]
        return items, (self._same_origin(next_url) if next_url else None)

    async def get_object(self, path: str) -> dict[str, Any]:
        """``GET path`` answering one JSON object (404 is ``AdapterRejected``, status 404)."""
        answer = await self._call("GET", self._url(path))
        if not isinstance(answer.body, dict):
            raise AdapterUnavailable(f"GET {path}: expected a JSON object", vendor=VENDOR)
        return answer.body

    async def _get_page(self, url: str) -> tuple[list[Any], str | None]:
        answer = await self._call("GET", url)
        next_url = parse_link_header(answer.headers.get("Link")).get("next")
        return (answer.body if isinstance(answer.body, list) else []), next_url

    async def _create_tag(self, tag: str) -> int:
        answer = await self._call(
            "POST", self._url(_TAG_CATALOGUE), ok=(200, 201), json={"name": tag}
        )
        tag_id = int(answer.body["id"])
        self._tag_ids[tag.lower()] = tag_id
        return tag_id

    async def _apply(self, candidate_id: str, tag_id: int) -> None:
        path = _CANDIDATE_TAG.format(candidate_id=quote(str(candidate_id), safe=""), tag_id=tag_id)
        await self._call("PUT", self._url(path))

    async def add_tag(self, candidate_id: str, tag: str) -> None:
        key = tag.lower()
        cached = self._tag_ids.get(key)
        if cached is not None:
            try:
                await self._apply(candidate_id, cached)
                return
            except AdapterRejected as exc:
                if exc.status != 404:
                    raise
                self._tag_ids.pop(key, None)  # the tag left the catalogue: create it again
        await self._apply(candidate_id, await self._create_tag(tag))

    async def remove_tag(self, candidate_id: str, tag: str) -> None:
        key = tag.lower()
        if key not in self._tag_ids:
            await self.list_tags()
        tag_id = self._tag_ids.get(key)
        if tag_id is None:
            return  # not in the catalogue, so on no candidate
        path = _CANDIDATE_TAG.format(candidate_id=quote(str(candidate_id), safe=""), tag_id=tag_id)
        try:
            await self._call("DELETE", self._url(path))
        except AdapterRejected as exc:
            if exc.status != 404:
                raise

    # -- notes ------------------------------------------------------------------------------
    async def add_note(self, candidate_id: str, body: str, visibility: str) -> None:
        user: int | str = (
            int(self.on_behalf_of) if self.on_behalf_of.isdigit() else self.on_behalf_of
        )
        path = _NOTE.format(candidate_id=quote(str(candidate_id), safe=""))
        await self._call(
            "POST",
            self._url(path),
            json={"user_id": user, "body": body, "visibility": visibility},
        )
