"""Retry classification of the shared HTTP client, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from adapters.http import parse_retry_after, request_json, vendor_message
from engine import AdapterRejected, AdapterTimeout, AdapterUnavailable
from tests.engine.conftest import _serve


async def _answer(request: web.Request) -> web.StreamResponse:
    status = int(request.match_info["status"])
    if status == 599:
        raise ConnectionResetError  # aiohttp drops the connection
    headers = {"Retry-After": request.query["retry"]} if "retry" in request.query else {}
    body = {"status": "error", "message": f"answer {status}", "correlationId": "corr-1"}
    return web.json_response(body, status=status, headers=headers)


async def _slow(_request: web.Request) -> web.StreamResponse:
    import asyncio

    await asyncio.sleep(1)  # the server is slow; the client's 0.2 s timeout fires first
    return web.json_response({})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/status/{status}", _answer)
    app.router.add_get("/slow", _slow)
    runner, url = await _serve(app)
    yield url
    await runner.cleanup()


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
async def test_retryable_statuses(server: str, status: int) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AdapterUnavailable) as info:
            await request_json(session, "GET", f"{server}/status/{status}?retry=7", vendor="v")
    assert info.value.retryable and info.value.status == status
    assert info.value.retry_after == 7.0 and info.value.correlation_id == "corr-1"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_other_4xx_are_permanent_and_keep_the_vendor_message(
    server: str, status: int
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AdapterRejected) as info:
            await request_json(session, "GET", f"{server}/status/{status}", vendor="v")
    assert not info.value.retryable
    assert f"answer {status}" in str(info.value) and info.value.correlation_id == "corr-1"


async def test_timeout_is_retryable(server: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AdapterTimeout):
            await request_json(session, "GET", f"{server}/slow", vendor="v", timeout=0.2)


async def test_connection_refused_is_retryable() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AdapterUnavailable):
            await request_json(session, "GET", "http://127.0.0.1:1/x", vendor="v")


def test_retry_after_as_seconds_or_http_date() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Mon, 02 Mar 2026 09:01:00 GMT", now) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_vendor_message_keeps_error_codes_given_as_strings() -> None:
    ashby = {"success": False, "errors": ["missing_endpoint_permission"]}
    assert vendor_message(ashby, "raw") == "missing_endpoint_permission"
    greenhouse = {"message": "Validation error", "errors": [{"field": "name", "message": "x"}]}
    assert vendor_message(greenhouse, "raw") == "Validation error (name: x)"
    assert vendor_message({"errors": []}, "raw text") == "raw text"
