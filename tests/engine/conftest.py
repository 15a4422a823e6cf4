"""Fixtures for engine tests: a store on every backend, the loopback CRM and Slack, a clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.slack.client import SlackWebhook
from adapters.slack.simulator import SlackSimulator
from engine.clock import ManualClock
from engine.config.load import ConfigSet, load_config
from engine.store.store import Store

POSTGRES_URL = os.environ.get("NURTURE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same tests on SQLite and on PostgreSQL (each test in its own PostgreSQL schema).

    A PostgreSQL test never skips: CI starts the server, and an unreachable one is a failure.
    """
    if request.param == "sqlite":
        opened = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")
        yield opened
        await opened.close()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        opened = await Store.open(POSTGRES_URL, schema=schema)
        yield opened
        await opened.close()
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def hubspot() -> AsyncIterator[tuple[HubSpotSimulator, str]]:
    simulator = HubSpotSimulator("test-token")
    runner, url = await _serve(simulator.app())
    yield simulator, url
    await runner.cleanup()


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackSimulator, str]]:
    simulator = SlackSimulator()
    runner, url = await _serve(simulator.app())
    yield simulator, url + "/services/T000/B000/XXXX"
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def crm(session: aiohttp.ClientSession, hubspot: tuple[HubSpotSimulator, str]) -> HubSpotClient:
    return HubSpotClient(session, hubspot[1], "test-token")


@pytest.fixture
def alert_target(session: aiohttp.ClientSession, slack: tuple[SlackSimulator, str]) -> SlackWebhook:
    return SlackWebhook(session, slack[1], "ops")


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], ConfigSet]:
    """A ConfigSet from YAML text, through the real loader (so tests run valid config only)."""

    def build(text: str) -> ConfigSet:
        folder = tmp_path / f"config-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        (folder / "config.yaml").write_text(text)
        result = load_config([folder])
        assert result.errors == [], "\n".join(d.format_text() for d in result.errors)
        assert result.config is not None
        return result.config

    return build
