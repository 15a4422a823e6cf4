"""Shared HTTP client machinery: one aiohttp call, its errors mapped into the engine's classes.

Retryable: timeouts, connection failures, 408, 409, 429 and 5xx (with ``Retry-After`` kept, in
seconds or as an HTTP date). Permanent: every other 4xx, with the vendor's message and
correlation id kept so an alert can quote them. Nothing above ``adapters/`` sees aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from multidict import CIMultiDict

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


def _excerpt(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def vendor_message(body: Any, text: str) -> str:
    """The vendor's own message, with a validation ``errors[]`` list appended as
    ``field: message`` (Greenhouse 422, HubSpot 400 details) or as the codes themselves when
    the items are strings (Ashby); the raw text otherwise."""
    if not isinstance(body, dict):
        return _excerpt(text)
    message = str(body.get("message") or body.get("error_description") or body.get("error") or "")
    errors = body.get("errors")
    if isinstance(errors, list):
        parts = []
        for error in errors:
            if isinstance(error, dict):
                where = error.get("field")
                what = str(error.get("message", ""))
                parts.append(f"{where}: {what}" if where else what)
            elif isinstance(error, str) and error:  # Ashby: a list of error codes [U]
                parts.append(error)
        if parts:
            message = f"{message} ({'; '.join(parts)})" if message else "; ".join(parts)
    return message or _excerpt(text)


def _reset_delay(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (a Unix timestamp, as Greenhouse sends it)."""
    value = headers.get("X-RateLimit-Reset", "").strip()
    try:
        moment = float(value)
    except ValueError:
        return None
    return max(0.0, moment - now.timestamp())


@dataclass(frozen=True)
class Answer:
    """A successful response: status, parsed JSON (or None), the text and the headers."""

    status: int
    body: Any
    text: str
    headers: Mapping[str, str]


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    vendor: str,
    ok: tuple[int, ...] = (200, 201, 204),
    timeout: float = 10.0,
    **kwargs: Any,
) -> Answer:
    """Make one request; returns the ``Answer`` or raises an AdapterError."""
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=timeout), **kwargs
        ) as response:
            text = await response.text()
            status = response.status
            headers: Mapping[str, str] = CIMultiDict(response.headers)
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
        return Answer(status, body, text, headers)
    message = f"HTTP {status}: {vendor_message(body, text)}"
    correlation = None
    if isinstance(body, dict):
        correlation = body.get("correlationId") or body.get("requestId")
    if status in RETRYABLE_STATUS:
        now = datetime.now(UTC)
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        if retry_after is None and status == 429:
            retry_after = _reset_delay(headers, now)
        raise AdapterUnavailable(
            message,
            vendor=vendor,
            status=status,
            retry_after=retry_after,
            correlation_id=correlation,
        )
    raise AdapterRejected(
        message,
        vendor=vendor,
        status=status,
        body_excerpt=_excerpt(text),
        correlation_id=correlation,
    )


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
    answer = await request(session, method, url, vendor=vendor, ok=ok, timeout=timeout, **kwargs)
    return answer.status, answer.text.encode() if raw else answer.body
