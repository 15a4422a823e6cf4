"""Shared HTTP client machinery: one aiohttp call, its errors mapped into the engine's classes.

Retryable: timeouts, connection failures, 408, 409, 429 and 5xx (with ``Retry-After`` kept, in
seconds or as an HTTP date). Permanent: every other 4xx, with the vendor's message and
correlation id kept so an alert can quote them. Nothing above ``adapters/`` sees aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from engine import AdapterRejected, AdapterTimeout, AdapterUnavailable

# 409 is a conflict that may clear (a concurrent write); callers that know better (a create
# that found the record taken) catch it by status before the retry logic sees it.
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def _excerpt(body: str, limit: int = 300) -> str:
    return body if len(body) <= limit else body[:limit] + "..."


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    vendor: str,
    ok: tuple[int, ...] = (200, 201, 204),
    timeout: float = 10.0,
    raw: bool = False,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Make one request; returns (status, parsed JSON or None; the body bytes when ``raw``)
    or raises an AdapterError."""
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=timeout), **kwargs
        ) as response:
            text = await response.text()
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except TimeoutError as exc:
        raise AdapterTimeout(f"{method} {url} timed out after {timeout}s", vendor=vendor) from exc
    except asyncio.CancelledError:
        raise
    except aiohttp.ClientError as exc:
        raise AdapterUnavailable(f"{method} {url}: {exc}", vendor=vendor) from exc
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if status in ok:
        return status, text.encode() if raw else body
    message = _excerpt(text)
    correlation = None
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or message)
        correlation = body.get("correlationId") or body.get("requestId")
    if status in RETRYABLE_STATUS:
        raise AdapterUnavailable(
            f"HTTP {status}: {message}",
            vendor=vendor,
            status=status,
            retry_after=retry_after,
            correlation_id=correlation,
        )
    raise AdapterRejected(
        f"HTTP {status}: {message}",
        vendor=vendor,
        status=status,
        body_excerpt=_excerpt(text),
        correlation_id=correlation,
    )
