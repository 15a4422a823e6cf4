"""``engine.pollers``: which feeds a config asks for, and the loop that survives failed sweeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.clock import ManualClock
from engine.config.daemon import DaemonConfig
from engine.cursors import StoreCursors
from engine.events import Event
from engine.pollers import Counted, Feed, Wiring, ats_feeds, poll_forever
from engine.store.store import Store


def config(**vendors: Any) -> DaemonConfig:
    greenhouse = {
        "auth": "basic",
        "api_key_env": "GH_KEY",
        "on_behalf_of": "40211",
        "webhook_secret_envs": ["GH_SECRET"],
    }
    return DaemonConfig.model_validate(
        {
            "version": 1,
            "ats": "greenhouse",
            "vendors": {
                "greenhouse": {**greenhouse, **vendors.pop("greenhouse", {})},
                "hubspot": {"token_env": "HS"},
                **vendors,
            },
            "alerting": {"targets": [{"name": "ops", "kind": "slack", "webhook_url_env": "S"}]},
        }
    )


@pytest.fixture
async def wiring(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Any]:
    store = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")

    async def sink(event: Event) -> None:
        return None

    async with aiohttp.ClientSession() as session:

        def build(daemon: DaemonConfig) -> Wiring:
            return Wiring(daemon, session, {}, StoreCursors(store, clock), clock, sink)

        yield build
    await store.close()


def names(feeds: list[Feed]) -> list[tuple[str, str, float]]:
    return [(f.vendor, f.name, f.every.total_seconds()) for f in feeds]


async def test_no_poll_every_means_no_ats_feed(wiring: Any) -> None:
    assert ats_feeds(wiring(config())) == []


async def test_greenhouse_poll_every_runs_applications_and_interviews_or_what_poll_lists(
    wiring: Any,
) -> None:
    both = ats_feeds(wiring(config(greenhouse={"poll_every": "2m"})))
    assert names(both) == [
        ("greenhouse", "applications", 120.0),
        ("greenhouse", "interviews", 120.0),
    ]
    only = ats_feeds(wiring(config(greenhouse={"poll_every": "1m", "poll": ["interviews"]})))
    assert names(only) == [("greenhouse", "interviews", 60.0)]


async def test_lever_poll_every_runs_the_opportunity_poller(wiring: Any) -> None:
    lever = {
        "api_key_env": "LEVER_KEY",
        "perform_as": "u-1",
        "webhook_secret_envs": ["LEVER_SECRET"],
        "poll_every": "30s",
    }
    assert names(ats_feeds(wiring(config(lever=lever)))) == [("lever", "opportunities", 30.0)]


async def test_ashby_poll_every_runs_the_application_poller(wiring: Any) -> None:
    ashby = {
        "api_key_env": "ASHBY_KEY",
        "webhook_secret_envs": ["ASHBY_SECRET"],
        "poll_every": "5m",
    }
    assert names(ats_feeds(wiring(config(ashby=ashby)))) == [("ashby", "applications", 300.0)]


async def test_a_failed_sweep_is_retried_at_the_next_interval_never_fatal() -> None:
    calls = 0
    recovered = asyncio.Event()

    async def sweep() -> int:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("Harvest is down")
        recovered.set()
        return 0

    async def sink(event: Event) -> None:
        return None

    task = asyncio.create_task(poll_forever(Feed("x", "y", timedelta(0), sweep, Counted(sink))))
    async with asyncio.timeout(5):
        await recovered.wait()
    assert not task.done()  # still polling after two failures
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls >= 3
