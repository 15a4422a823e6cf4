"""What the Greenhouse pollers read from Harvest: list routes page by page, applications and
candidates by id, with rate limiting waited out instead of failing the sweep.

- A 429 is waited out for its ``Retry-After`` (else ``X-RateLimit-Reset``, which
  ``adapters.http`` already turns into ``retry_after``) [V headers], at most ``max_waits`` times
  in a row for one request, then the sweep fails (and the daemon tries again next interval).
  The wait goes through the injected ``sleep``, so tests never wait for real. No client-side
  pacing: the 10-second cap is shared by every integration on the key [V], so only the
  server's 429 is authoritative.
- Candidates are fetched for a page of applications at once: ``GET /v1/candidates?
  candidate_ids=<up to 50 ids>`` [V filter and its maximum of 50].
- A list longer than ``max_pages`` pages fails the sweep with a message saying so, rather than
  silently stopping early, which would lose the records on the pages not read.
- Read routes are v1 under both auth modes: the v3 list routes and their filters were not
  captured in the contract [U], as for the write routes in ``harvest.py``. Paging follows the
  ``Link`` header exactly, which is also how v3's opaque cursors work [V contract 1.3].
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from adapters.greenhouse.harvest import VENDOR, HarvestClient
from engine import AdapterRejected, AdapterUnavailable

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
CANDIDATE_IDS_PER_REQUEST = 50
DEFAULT_WAIT = 1.0
MAX_WAIT = 120.0


def harvest_time(moment: datetime) -> str:
    """A query timestamp in Harvest's own form (ISO-8601, UTC, milliseconds, ``Z``)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class HarvestReads:
    def __init__(
        self,
        client: HarvestClient,
        *,
        sleep: Sleep = asyncio.sleep,
        max_waits: int = 5,
        page_size: int = 500,
        max_pages: int = 2000,
    ) -> None:
        self.client = client
        self.sleep = sleep
        self.max_waits = max_waits
        self.page_size = page_size
        self.max_pages = max_pages
        self.waited: deque[float] = deque(maxlen=100)  # the latest 429 waits (seconds)

    async def _patient(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, waiting out up to ``max_waits`` consecutive 429 answers."""
        waits = 0
        while True:
            try:
                return await call()
            except AdapterUnavailable as exc:
                if exc.status != 429 or waits >= self.max_waits:
                    raise
                waits += 1
                delay = min(MAX_WAIT, exc.retry_after or DEFAULT_WAIT)
                self.waited.append(delay)
                await self.sleep(delay)

    async def pages(self, path: str, params: dict[str, str]) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of a list route, first page with ``params`` + ``per_page``."""
        url: str | None = self.client.list_url(path, {**params, "per_page": str(self.page_size)})
        read = 0
        while url is not None:
            if read == self.max_pages:
                raise AdapterUnavailable(
                    f"GET {path}: more than {self.max_pages} pages of {self.page_size}; "
                    "nothing was skipped, the sweep stops here and the cursor stays",
                    vendor=VENDOR,
                )
            items, url = await self._patient(partial(self.client.page, url))
            read += 1
            yield items

    async def candidates(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Candidate objects by id (ids Harvest does not return are left out)."""
        wanted = sorted(set(ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), CANDIDATE_IDS_PER_REQUEST):
            chunk = wanted[start : start + CANDIDATE_IDS_PER_REQUEST]
            params = {"candidate_ids": ",".join(chunk), "per_page": str(len(chunk))}
            url = self.client.list_url("/v1/candidates", params)
            items, _ = await self._patient(partial(self.client.page, url))
            found.update({str(c["id"]): c for c in items if "id" in c})
        return found

    async def application(self, application_id: str) -> dict[str, Any] | None:
        """One application, None when Harvest answers 404 (deleted)."""
        try:
            path = f"/v1/applications/{application_id}"
            return await self._patient(partial(self.client.get_object, path))
        except AdapterRejected as exc:
            if exc.status == 404:
                return None
            raise
