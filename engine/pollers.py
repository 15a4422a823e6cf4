"""The pollers ``nurture run`` runs beside the webhooks, and the loop that keeps each going.

A poller is a set of feeds, each with its own durable cursor: Greenhouse ``applications`` and
``interviews`` (``vendors.greenhouse.poll`` picks which; default both), Lever
``opportunities``, Ashby ``applications``. A vendor is polled when its section sets
``poll_every``. Each feed runs as its own task: a sweep every ``poll_every``; a failed sweep is
logged (``poll_failed``, with the error) and tried again at the next interval, never fatal;
shutdown cancels the task, and the cursor of an unfinished sweep stays where it was, so the
next start re-reads it.

Pollers are built once at start: a reload swaps the rules they feed, but their own settings
(``poll_every``, ``poll``, credentials) take effect at the next start. This module chooses
adapters, as ``daemon.py`` does; adding a vendor is one builder in ``FEEDS``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import aiohttp

from engine.clock import Clock
from engine.config.daemon import DaemonConfig, Greenhouse
from engine.config.types import parse_duration
from engine.cursors import StoreCursors
from engine.events import Event

log = logging.getLogger("nurture.pollers")
Sink = Callable[[Event], Awaitable[Any]]
CATCH_UP = timedelta(days=1)  # a first start reads the last day; later ones their cursor


class Counted:
    """The sink of one feed, counting what intake had not seen: a sweep re-reads its overlap,
    so most of what it hands on in a quiet period are duplicates, not news."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.new = 0

    async def __call__(self, event: Event) -> Any:
        outcome = await self.sink(event)
        if not getattr(outcome, "duplicate", False):
            self.new += 1
        return outcome


@dataclass(frozen=True)
class Feed:
    vendor: str
    name: str
    every: timedelta
    poll_once: Callable[[], Awaitable[int]]
    sink: Counted


class Poller(Protocol):
    async def poll_once(self) -> int: ...


def feed(
    vendor: str, name: str, every: timedelta, sink: Sink, build: Callable[[Sink], Poller]
) -> Feed:
    """A feed whose poller (``build(its sink)``) hands events to ``sink``, counted."""
    counted = Counted(sink)
    return Feed(vendor, name, every, build(counted).poll_once, counted)


@dataclass(frozen=True)
class Wiring:
    """What every feed builder gets."""

    daemon: DaemonConfig
    session: aiohttp.ClientSession
    env: Mapping[str, str]
    state: StoreCursors
    clock: Clock
    sink: Sink


def harvest_client(gh: Greenhouse, env: Mapping[str, str], session: aiohttp.ClientSession) -> Any:
    """The Harvest client for ``vendors.greenhouse`` (secrets read from ``env`` by name)."""
    from adapters.greenhouse.harvest import BasicAuth, HarvestClient, OAuthClientCredentials

    auth: BasicAuth | OAuthClientCredentials
    if gh.auth == "basic":
        auth = BasicAuth(env.get(gh.api_key_env or "", ""))
    else:
        auth = OAuthClientCredentials(
            env.get(gh.client_id_env or "", ""),
            env.get(gh.client_secret_env or "", ""),
            gh.token_url,
            gh.on_behalf_of,
        )
    return HarvestClient(session, gh.base_url, on_behalf_of=gh.on_behalf_of, auth=auth)


def _greenhouse(w: Wiring) -> list[Feed]:
    from adapters.greenhouse.interviews import InterviewPoller
    from adapters.greenhouse.poller import ApplicationPoller
    from adapters.greenhouse.reads import HarvestReads

    gh = w.daemon.vendors.greenhouse
    if gh is None or gh.poll_every is None:
        return []
    every = parse_duration(gh.poll_every)
    reads = HarvestReads(harvest_client(gh, w.env, w.session))
    kwargs: dict[str, Any] = {
        "start": w.clock.now() - CATCH_UP,
        "clock": w.clock,
        "do_not_contact_tags": w.daemon.guardrails.suppression.tags,
    }
    builders: dict[str, Callable[[Sink], Poller]] = {
        "applications": lambda sink: ApplicationPoller(reads, w.state, sink, **kwargs),
        "interviews": lambda sink: InterviewPoller(reads, w.state, sink, **kwargs),
    }
    return [feed("greenhouse", name, every, w.sink, builders[name]) for name in gh.poll]


def _lever(w: Wiring) -> list[Feed]:
    from adapters.lever.client import LeverClient
    from adapters.lever.poller import OpportunityPoller

    lev = w.daemon.vendors.lever
    if lev is None or lev.poll_every is None:
        return []
    client = LeverClient(
        w.session, w.env.get(lev.api_key_env, ""), lev.perform_as, base_url=lev.base_url
    )
    every = parse_duration(lev.poll_every)
    start = w.clock.now() - CATCH_UP
    return [
        feed(
            "lever",
            "opportunities",
            every,
            w.sink,
            lambda sink: OpportunityPoller(client, w.state, sink, start=start),
        )
    ]


def _ashby(w: Wiring) -> list[Feed]:
    from adapters.ashby.client import AshbyClient
    from adapters.ashby.poller import ApplicationPoller

    ash = w.daemon.vendors.ashby
    if ash is None or ash.poll_every is None:
        return []
    client = AshbyClient(w.session, w.env.get(ash.api_key_env, ""), base_url=ash.base_url)
    start = w.clock.now() - CATCH_UP
    return [
        feed(
            "ashby",
            "applications",
            parse_duration(ash.poll_every),
            w.sink,
            lambda sink: ApplicationPoller(client, w.state, sink, start=start, clock=w.clock),
        )
    ]


FEEDS: tuple[Callable[[Wiring], list[Feed]], ...] = (_greenhouse, _lever, _ashby)


def ats_feeds(wiring: Wiring) -> list[Feed]:
    """Every ATS feed the config asks for (none when no vendor sets ``poll_every``)."""
    return [feed for build in FEEDS for feed in build(wiring)]


async def poll_forever(feed: Feed) -> None:
    """Sweep every ``feed.every`` until cancelled; a failed sweep waits for the next interval."""
    while True:
        before = feed.sink.new
        try:
            count = await feed.poll_once()
            if feed.sink.new > before:
                log.info(json.dumps(_line("polled", feed, new=feed.sink.new - before, read=count)))
        except Exception as exc:  # a failed poll is retried next interval, never fatal
            log.warning(
                json.dumps(_line("poll_failed", feed, error=f"{type(exc).__name__}: {exc}"))
            )
        await asyncio.sleep(feed.every.total_seconds())


def _line(decision: str, feed: Feed, **fields: Any) -> dict[str, Any]:
    return {"decision": decision, "vendor": feed.vendor, "feed": feed.name, **fields}
