"""`nurture run` as a real subprocess: webhooks over HTTP, reload on SIGHUP, SIGTERM, restart."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.hubspot.simulator import HubSpotSimulator
from adapters.slack.simulator import SlackSimulator
from engine.daemon import Daemon
from engine.store.store import Store
from tests.engine.conftest import _serve

SECRET = "gh_daemon_secret"
RULES = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> CRM contact + receipt
    trigger: ats.application.created
    condition: "candidate.email != `null`"
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email, firstname: candidate.first_name}
      - action: crm.send_email
        params: {template: receipt}
        fields: {to: candidate.email, first_name: candidate.first_name}
  - id: unsubscribe
    description: CRM unsubscribe (polled from HubSpot) -> suppression
    trigger: crm.contact.unsubscribed
    actions:
      - action: suppress
        params: {reason: unsubscribed}
        fields: {email: contact.email}
templates:
  - id: receipt
    subject: "Thanks {first_name}"
    crm_email_id: "100001"
    category: transactional
    variables: [first_name]
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def application(n: int) -> bytes:
    body = {
        "action": "new_candidate_application",
        "payload": {
            "application": {
                "id": 9000 + n,
                "status": "active",
                "prospect": False,
                "applied_at": "2026-03-02T09:00:00Z",
                "current_stage": {"id": 1, "name": "Review"},
                "jobs": [{"id": 5, "name": "Data Engineer", "status": "open"}],
                "candidate": {
                    "id": 7000 + n,
                    "first_name": f"P{n}",
                    "last_name": "Q",
                    "email_addresses": [{"value": f"person{n}@example.com", "type": "personal"}],
                    "tags": [],
                    "can_email": True,
                },
            }
        },
    }
    return json.dumps(body).encode()


class Running:
    def __init__(self, folder: Path, port: int, env: dict[str, str]) -> None:
        self.folder, self.port, self.env = folder, port, env
        self.url = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None
        self.log = folder / "daemon.log"

    async def start(self) -> None:
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "engine.cli",
                "run",
                "--config",
                str(self.folder / "nurture.yaml"),
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        try:
            await until(self.ready, "the daemon to become ready")
        except TimeoutError:
            raise AssertionError("daemon not ready:\n" + self.log.read_text()[-3000:]) from None

    async def ready(self) -> bool:
        try:
            status, _ = await self.get("/readyz")
        except aiohttp.ClientError:
            return False
        return status == 200

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as answer:
            return answer.status, await answer.text()

    async def webhook(self, body: bytes, delivery: str) -> tuple[int, Any]:
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Signature": f"sha256 {digest}", "Greenhouse-Event-ID": delivery}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + "/webhooks/greenhouse", data=body, headers=headers) as answer,
        ):
            return answer.status, await answer.json()

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def stopped(self) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout=30)

    async def metric(self, name: str) -> float:
        _, text = await self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    """Wait for an effect of a real process (bounded), never for a timer of our own."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Running, HubSpotSimulator]]:
    hubspot = HubSpotSimulator("hs-token")
    slack = SlackSimulator()
    hub_runner, hub_url = await _serve(hubspot.app())
    slack_runner, slack_url = await _serve(slack.app())
    port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES)
    (tmp_path / "sequences").mkdir()
    (tmp_path / "nurture.yaml").write_text(f"""\
version: 1
ats: greenhouse
config_paths: [rules, sequences]
store: {{url: "sqlite:///{tmp_path / "nurture.db"}"}}
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
vendors:
  greenhouse:
    auth: basic
    api_key_env: GREENHOUSE_API_KEY
    on_behalf_of: "40211"
    webhook_secret_envs: [GREENHOUSE_WEBHOOK_SECRET]
  hubspot: {{base_url: "{hub_url}", token_env: HUBSPOT_TOKEN, poll_every: 1s}}
alerting:
  targets: [{{name: ops, kind: slack, webhook_url_env: SLACK_URL}}]
""")
    env = {
        **os.environ,
        "HUBSPOT_TOKEN": "hs-token",
        "GREENHOUSE_API_KEY": "k",
        "GREENHOUSE_WEBHOOK_SECRET": SECRET,
        "SLACK_URL": slack_url + "/services/x",
        "NURTURE_ADMIN_TOKEN": "admin",
        "NURTURE_LINK_SECRET": "0123456789abcdef-link",
    }
    running = Running(tmp_path, port, env)
    yield running, hubspot
    if running.process is not None and running.process.returncode is None:
        running.process.kill()
        await running.process.wait()
    await hub_runner.cleanup()
    await slack_runner.cleanup()


async def test_daemon_processes_webhooks_reloads_and_shuts_down_gracefully(
    daemon: tuple[Running, HubSpotSimulator], tmp_path: Path
) -> None:
    running, hubspot = daemon
    await running.start()
    # what start-up built is frozen out of full collections, whose pauses are measured
    frozen_at_start = await running.metric("nurture_gc_frozen_objects")
    assert frozen_at_start > 10_000
    assert await running.metric("nurture_gc_pause_seconds_count") >= 1
    assert await running.webhook(application(1), "d1") == (200, {"accepted": 1, "duplicates": 0})

    async def delivered(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool(hubspot.stats()["sends"] >= count)

        return check

    await until(await delivered(1), "the first receipt")
    assert hubspot.stats()["contacts"] == 1
    assert await running.metric('nurture_rule_matches_total{rule="application-to-crm"}') == 1

    async def send_recorded() -> bool:  # the outcome commits just after the vendor answers
        done = 'nurture_actions_total{outcome="done",type="crm.send_email"}'
        try:
            return await running.metric(done) == 1
        except AssertionError:  # not counted yet
            return False

    await until(send_recorded, "the send's outcome in /metrics")

    # HubSpot pushes no unsubscribes: the daemon's poller reads them and the rule suppresses
    hubspot.add_unsubscribe("person1@example.com", int(time.time() * 1000))

    async def suppressed() -> bool:
        with contextlib.closing(sqlite3.connect(tmp_path / "nurture.db")) as db:
            rows = db.execute(
                "SELECT reason FROM suppressions WHERE email = ?", ("person1@example.com",)
            ).fetchall()
        return rows == [("unsubscribed",)]

    await until(suppressed, "the polled unsubscribe to suppress the address")

    # a broken rule file: the running config stays, the reload metric says so
    rules = tmp_path / "rules" / "rules.yaml"
    rules.write_text(
        RULES.replace("trigger: ats.application.created", "trigger: ats.application.creatd")
    )
    running.signal(signal.SIGHUP)

    async def reload_failed() -> bool:
        return await running.metric("nurture_last_reload_success") == 0.0

    await until(reload_failed, "the failed reload")
    assert (await running.webhook(application(2), "d2"))[0] == 200
    await until(await delivered(2), "a receipt under the old config")

    # a good change, noticed by the file watcher alone (no signal): swapped in whole
    rules.write_text(
        RULES.replace('subject: "Thanks {first_name}"', 'subject: "Thank you, {first_name}"')
    )

    async def reloaded() -> bool:
        return await running.metric("nurture_last_reload_success") == 1.0

    await until(reloaded, "the good reload")
    # frozen anew: the new runtime's objects in, the replaced one's freed (the same count
    # would mean the reload did not freeze at all)
    frozen_after_reload = await running.metric("nurture_gc_frozen_objects")
    assert frozen_after_reload > 10_000 and frozen_after_reload != frozen_at_start

    # SIGTERM: exits cleanly; what was accepted is processed after a restart
    running.signal(signal.SIGTERM)
    assert await running.stopped() == 0
    await running.start()
    assert (await running.webhook(application(3), "d3"))[0] == 200
    await until(await delivered(3), "a receipt after the restart")
    assert hubspot.stats()["contacts"] == 3 and hubspot.stats()["duplicate_emails"] == 0
    running.signal(signal.SIGTERM)
    assert await running.stopped() == 0

    log = running.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    decisions = [line.get("decision") for line in lines]
    assert "reload_rejected" in decisions and "reloaded" in decisions
    # one line per decision, each carrying the stored event's id through rules and actions
    by_decision: dict[str, set[Any]] = {}
    for line in lines:
        by_decision.setdefault(str(line.get("decision")), set()).add(line.get("event"))
    events = by_decision["accepted"]  # three applications and the polled unsubscribe
    assert len(events) == 4 and None not in events
    assert by_decision["rule_matched"] == events
    sent = by_decision["action_done"]  # each application's upsert and receipt
    assert len(sent) == 3 and sent < events  # the suppression is no outbox action
    assert "person1@example.com" not in log  # addresses are redacted in the logs
    assert "hs-token" not in log and SECRET not in log  # and no secret ever appears


async def test_sigterm_under_load_loses_nothing_that_was_acknowledged(
    daemon: tuple[Running, HubSpotSimulator],
) -> None:
    running, hubspot = daemon
    hubspot.latency = 0.02  # slow CRM: actions are still in flight when SIGTERM arrives
    await running.start()
    acknowledged: list[int] = []

    async def post(n: int) -> None:
        try:
            status, _ = await running.webhook(application(n), f"load-{n}")
        except aiohttp.ClientError:
            return  # the daemon went away mid-request: not acknowledged, the vendor retries
        if status == 200:
            acknowledged.append(n)

    senders = [asyncio.create_task(post(n)) for n in range(60)]
    await until(lambda: _at_least(acknowledged, 15), "some acknowledged webhooks")
    running.signal(signal.SIGTERM)
    await asyncio.gather(*senders)
    assert await running.stopped() == 0
    assert len(acknowledged) >= 15

    await running.start()  # the restart finishes what was acknowledged and left pending

    async def all_done() -> bool:
        emails = set(hubspot.state.by_email)
        return all(f"person{n}@example.com" in emails for n in acknowledged)

    await until(all_done, "every acknowledged application to reach the CRM", timeout=60)
    assert hubspot.stats()["duplicate_emails"] == 0
    running.signal(signal.SIGTERM)
    assert await running.stopped() == 0


async def _at_least(items: list[int], count: int) -> bool:
    return len(items) >= count


async def test_a_reload_serves_the_webhook_sources_of_the_new_config(
    daemon: tuple[Running, HubSpotSimulator], tmp_path: Path
) -> None:
    """A vendor added to nurture.yaml is served after SIGHUP; the reload built its source and
    threw it away, so its webhooks stayed 404 until a restart."""
    running, _ = daemon
    running.env["ASHBY_WEBHOOK_SECRET"] = "ashby-daemon-secret"
    await running.start()
    ping = b'{"action":"ping","data":{}}'
    digest = hmac.new(b"ashby-daemon-secret", ping, hashlib.sha256).hexdigest()

    async def post_ping() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                running.url + "/webhooks/ashby",
                data=ping,
                headers={"Ashby-Signature": f"sha256={digest}"},
            ) as answer,
        ):
            return answer.status

    assert await post_ping() == 404
    config = tmp_path / "nurture.yaml"
    config.write_text(
        config.read_text().replace(
            "  hubspot:",
            "  ashby: {api_key_env: ASHBY_KEY, webhook_secret_envs: [ASHBY_WEBHOOK_SECRET]}\n"
            "  hubspot:",
        )
    )
    before = await running.metric("nurture_last_reload_timestamp_seconds")
    running.signal(signal.SIGHUP)

    async def reloaded() -> bool:
        return await running.metric("nurture_last_reload_timestamp_seconds") != before

    await until(reloaded, "the reload")
    assert await running.metric("nurture_last_reload_success") == 1.0
    assert await post_ping() == 202
    running.signal(signal.SIGTERM)
    assert await running.stopped() == 0


async def test_a_reload_rejected_while_the_store_is_down_leaves_the_daemon_running(
    daemon: tuple[Running, HubSpotSimulator], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rejected reload's alert is written to the store; when that write failed, the error
    left the daemon's main loop and the daemon stopped. In process: the store is a seam."""
    running, _ = daemon
    in_process = Daemon(tmp_path / "nurture.yaml", env=running.env)
    loaded = in_process._load()
    assert loaded.config is not None
    store = await Store.open(f"sqlite:///{tmp_path / 'nurture.db'}")
    # nothing listens on port 1: every connection attempt is refused
    unreachable = Store(create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/test"))
    try:
        async with aiohttp.ClientSession() as session:
            in_process.runtime, _, _ = in_process._build(loaded.config, store, session)
            running_config = in_process.runtime
            broken = RULES.replace("trigger: ats.application.created", "trigger: [12]")
            (tmp_path / "rules" / "rules.yaml").write_text(broken)
            with caplog.at_level(logging.ERROR, logger="nurture.daemon"):
                await in_process._reload(unreachable, session)
    finally:
        await unreachable.close()
        await store.close()
    assert in_process.runtime is running_config  # the running config stays
    assert in_process.state.last_reload_ok is False  # nurture_last_reload_success says so
    assert "reload_rejected" in caplog.text and "reload_alert_not_stored" in caplog.text
