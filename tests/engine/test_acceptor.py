"""`server.acceptor`: webhooks taken by a second process into a spool, evaluated by the daemon.

The daemon and its acceptor run as real subprocesses; HubSpot is the simulator on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from adapters import sources
from adapters.hubspot.simulator import HubSpotSimulator
from engine.events import Event
from engine.spool import KEEP_SECONDS, Spool
from engine.webhook_handler import Received
from tests.engine.test_daemon import SECRET, Running, application, daemon, free_port, until  # noqa: F401


def _with_acceptor(running: Running, backlog: int = 32) -> str:
    """Turn the fixture's daemon into one with an acceptor; returns the acceptor's URL."""
    port = free_port()
    config = running.folder / "nurture.yaml"
    text = config.read_text()
    server = re.search(r"^server: \{(.*)\}$", text, re.MULTILINE)
    assert server is not None
    acceptor = f'acceptor: {{listen: "127.0.0.1:{port}", backlog: {backlog}}}'
    config.write_text(text.replace(server.group(0), f"server: {{{server.group(1)}, {acceptor}}}"))
    return f"http://127.0.0.1:{port}"


async def _post(url: str, body: bytes, delivery: str) -> tuple[int, Any]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Signature": f"sha256 {digest}", "Greenhouse-Event-ID": delivery}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/webhooks/greenhouse", data=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


async def _listening(url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as answer:
            return answer.status == 200
    return False


async def _received(n: int, delivery: str) -> Received:
    """Application ``n`` as Greenhouse would deliver it under ``delivery``, verified and
    parsed by the Greenhouse source: what the acceptor spools."""
    body = application(n)
    signature = "sha256 " + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Signature": signature, "Greenhouse-Event-ID": delivery}
    return await sources.greenhouse([SECRET]).receive("POST", "http://x/", headers, body)


ASHBY_SECRET = "ashby-acceptor-secret"
WITH_ASHBY = (
    "  ashby: {api_key_env: ASHBY_KEY, webhook_secret_envs: [ASHBY_WEBHOOK_SECRET]}\n  hubspot:"
)


async def _ashby_ping(acceptor: str) -> int:
    """The status a signed Ashby ping gets: 404 while the acceptor serves no Ashby source."""
    ping = b'{"action":"ping","data":{}}'
    digest = hmac.new(ASHBY_SECRET.encode(), ping, hashlib.sha256).hexdigest()
    headers = {"Ashby-Signature": f"sha256={digest}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(acceptor + "/webhooks/ashby", data=ping, headers=headers) as answer,
    ):
        return answer.status


def _acceptor_pids(running: Running) -> list[int]:
    lines = [json.loads(x) for x in running.log.read_text().splitlines() if x.startswith("{")]
    return [line["pid"] for line in lines if line.get("decision") == "acceptor_started"]


async def test_the_acceptor_acknowledges_from_its_spool_and_the_daemon_evaluates_the_event(
    daemon: tuple[Running, HubSpotSimulator],  # noqa: F811 - the fixture, imported above
) -> None:
    running, hubspot = daemon
    acceptor = _with_acceptor(running)
    await running.start()
    assert await _post(acceptor, application(1), "d1") == (200, {"accepted": 1, "duplicates": 0})
    assert await _post(acceptor, application(1), "d1") == (200, {"accepted": 0, "duplicates": 1})

    async def reached_crm() -> bool:
        stats = hubspot.stats()
        return bool(stats["contacts"] == 1 and stats["sends"] == 1)

    await until(reached_crm, "the spooled application to reach HubSpot")
    status, body = await running.get("/readyz")
    assert status == 200 and json.loads(body)["checks"]["acceptor"] is True
    # the acceptor verifies as the daemon does: a bad signature is refused, nothing is spooled
    headers = {"Signature": "sha256 00", "Greenhouse-Event-ID": "d2"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(acceptor + "/webhooks/greenhouse", data=application(2), headers=headers) as r,
    ):
        assert r.status == 401 and (await r.json())["error"]
    assert '"decision": "accepted"' in running.log.read_text()  # logged where it is decided


async def test_what_was_spooled_before_a_kill_is_evaluated_when_the_daemon_starts_again(
    daemon: tuple[Running, HubSpotSimulator],  # noqa: F811
) -> None:
    running, hubspot = daemon
    acceptor = _with_acceptor(running)
    await running.start()
    assert (await _post(acceptor, application(1), "d1"))[0] == 200
    running.signal(signal.SIGKILL)
    assert await running.stopped() == -signal.SIGKILL

    async def acceptor_gone() -> bool:  # its standard input closed with the daemon
        return not await _listening(acceptor)

    await until(acceptor_gone, "the acceptor to stop with its daemon")
    # acknowledged, then the daemon died before evaluating it: it is only in the spool
    received = await _received(2, "d2")
    spool = Spool(running.folder / "nurture-spool.db")
    assert await spool.append(received.events[0], received.replay_key_of(0)) is False
    spool.close()
    await running.start()

    async def both_reached_crm() -> bool:
        return bool(hubspot.stats()["contacts"] == 2)

    await until(both_reached_crm, "both applications to reach HubSpot")
    assert hubspot.stats()["duplicate_emails"] == 0


async def test_sigterm_stops_the_acceptor_with_the_daemon_and_a_dead_acceptor_is_restarted(
    daemon: tuple[Running, HubSpotSimulator],  # noqa: F811
) -> None:
    running, _ = daemon
    acceptor = _with_acceptor(running)
    await running.start()
    first = _acceptor_pids(running)
    assert len(first) == 1
    os.kill(first[0], signal.SIGKILL)

    async def restarted() -> bool:
        return len(_acceptor_pids(running)) == 2 and await _listening(acceptor)

    await until(restarted, "the daemon to start its acceptor again")
    assert '"decision": "acceptor_died"' in running.log.read_text()
    assert (await _post(acceptor, application(3), "d3"))[0] == 200
    running.signal(signal.SIGTERM)
    assert await running.stopped() == 0
    assert not await _listening(acceptor)


async def test_the_spool_refuses_a_delivery_twice_and_a_replay_under_a_new_id(
    tmp_path: Path,
) -> None:
    from engine.spool import SpoolReader

    spool = Spool(tmp_path / "spool.db")
    first, again = await _received(1, "d1"), await _received(1, "d1")
    replayed = await _received(1, "d9")  # the same signed body under another delivery id
    assert await spool.append(first.events[0], first.replay_key_of(0)) is False
    assert await spool.append(again.events[0], again.replay_key_of(0)) is True
    assert await spool.append(replayed.events[0], replayed.replay_key_of(0)) is True
    reader = SpoolReader(tmp_path / "spool.db")
    [(seq, event, key)] = reader.after(10)
    assert event == first.events[0] and key == first.replay_key_of(0)
    reader.advance(seq)
    assert reader.after(10) == []
    assert SpoolReader(tmp_path / "spool.db").position == seq  # kept across a restart
    assert spool.prune(seq, now=1000.0) == 0  # evaluated, but young: kept for duplicates
    assert spool.prune(seq, now=1000.0 + KEEP_SECONDS - 1) == 0
    assert spool.prune(seq, now=1000.0 + KEEP_SECONDS) == 1  # an hour since it was there
    assert spool.prune(seq, now=1000.0 + 2 * KEEP_SECONDS) == 0
    again = await _received(1, "d2")  # its replay key was pruned with it: new again
    assert await spool.append(again.events[0], again.replay_key_of(0)) is False
    # numbered after everything ever spooled, not after what is left: the daemon reads it
    [(fresh, _, _)] = reader.after(10)
    assert fresh > seq
    assert spool.prune(seq, now=1000.0 + 4 * KEEP_SECONDS) == 0  # not evaluated: kept


async def test_the_daemons_position_is_written_at_most_once_a_second_and_at_close(
    tmp_path: Path,
) -> None:
    """A rename per batch blocked the daemon's loop while the journal was busy; a position
    that lags after a crash only re-reads events the inbox refuses as duplicates."""
    from engine.spool import POSITION_EVERY, SpoolReader

    spool = Spool(tmp_path / "spool.db")
    for n in range(4):
        received = await _received(n, f"d{n}")
        await spool.append(received.events[0], received.replay_key_of(0))
    now = [100.0]
    reader = SpoolReader(tmp_path / "spool.db", monotonic=lambda: now[0])

    def on_disk() -> int:
        return SpoolReader(tmp_path / "spool.db").position

    reader.advance(1)
    assert on_disk() == 1  # the first is written at once
    now[0] += POSITION_EVERY / 2
    reader.advance(2)
    assert on_disk() == 1 and reader.position == 2
    now[0] += POSITION_EVERY / 2
    reader.advance(3)
    assert on_disk() == 3  # a second after the last write
    now[0] += POSITION_EVERY / 4
    reader.advance(4)
    assert on_disk() == 3
    reader.close()
    assert on_disk() == 4  # the daemon stopping writes what is pending
    spool.close()


async def test_back_pressure_holds_an_acknowledgement_until_the_daemon_has_caught_up(
    tmp_path: Path,
) -> None:
    from engine.acceptor import SpoolIntake

    async def event(n: int) -> Event:
        return (await _received(n, f"d{n}")).events[0]

    announced: list[int] = []
    intake = SpoolIntake(Spool(tmp_path / "spool.db"), backlog=1, announce=announced.append)
    first = await intake.accept(await event(1))  # one waiting: within the backlog
    assert first.duplicate is False and announced == [1]
    held = asyncio.ensure_future(intake.accept(await event(2)))
    for _ in range(20):  # loop turns, not a timer: the spool commit happens in these
        await asyncio.sleep(0)
    assert announced == [1, 2]  # spooled (committed) ...
    assert not held.done()  # ... but not acknowledged: two wait, the backlog is one
    intake.note_evaluated(1)
    assert (await asyncio.wait_for(held, timeout=5)).duplicate is False
    intake.note_evaluated(2)
    for _ in range(3):  # a redelivery adds nothing to wait for
        again = await asyncio.wait_for(intake.accept(await event(2)), timeout=5)
        assert again.duplicate is True


async def test_a_write_the_spool_refuses_is_answered_503_and_a_stopping_acceptor_503_too(
    tmp_path: Path,
) -> None:
    """The acceptor's handler over HTTP: a refused spool write is a 503 JSON answer (the
    vendor retries) and nothing is half-written; once stopping, every delivery gets 503."""
    from engine.acceptor import AcceptorServer, SpoolIntake
    from engine.metrics import Metrics
    from engine.webhook_handler import ServerState
    from engine.webhook_sources import signed_sources
    from tests.engine.conftest import _serve

    spool = Spool(tmp_path / "spool.db")
    announced: list[int] = []
    intake = SpoolIntake(spool, backlog=100, announce=announced.append)
    state = ServerState()
    server = AcceptorServer(
        lambda: intake, signed_sources({"greenhouse": [SECRET]}), Metrics(), state=state
    )
    runner, url = await _serve(server.routes())
    try:
        spool.db.execute("PRAGMA query_only = ON")  # SQLite itself refuses every write now
        status, body = await _post(url, application(1), "d1")
        assert (status, body["error"]) == (503, "store_unavailable")
        assert announced == [] and spool.last == 0
        spool.db.execute("PRAGMA query_only = OFF")
        assert await _post(url, application(1), "d1") == (200, {"accepted": 1, "duplicates": 0})
        assert announced == [spool.last] == [1]
        state.accepting = False  # what SIGTERM sets
        status, body = await _post(url, application(2), "d2")
        assert (status, body["error"]) == (503, "shutting_down")
    finally:
        await runner.cleanup()
        spool.close()


async def test_a_reload_gives_the_acceptor_the_sources_of_the_new_config(
    daemon: tuple[Running, HubSpotSimulator],  # noqa: F811
) -> None:
    running, _ = daemon
    running.env["ASHBY_WEBHOOK_SECRET"] = ASHBY_SECRET
    acceptor = _with_acceptor(running)
    await running.start()
    assert await _ashby_ping(acceptor) == 404
    config = running.folder / "nurture.yaml"
    config.write_text(config.read_text().replace("  hubspot:", WITH_ASHBY))
    running.signal(signal.SIGHUP)

    async def served() -> bool:
        return await _ashby_ping(acceptor) == 202

    await until(served, "the acceptor to serve the vendor the reload added")
    assert '"decision": "acceptor_reloaded"' in running.log.read_text()


async def test_the_acceptor_keeps_the_daemons_config_through_a_rejected_reload_and_a_restart(
    daemon: tuple[Running, HubSpotSimulator],  # noqa: F811
) -> None:
    """The acceptor is told its sources by the daemon, never reads ``nurture.yaml``: a broken
    file the daemon rejects changes nothing for it, and restarted, it serves what the daemon
    runs (reading the file itself, it would fail to start on the broken file)."""
    running, _ = daemon
    running.env["ASHBY_WEBHOOK_SECRET"] = ASHBY_SECRET
    acceptor = _with_acceptor(running)
    await running.start()
    config = running.folder / "nurture.yaml"
    # the vendor is added, but the file is broken: the daemon keeps its running config
    config.write_text(
        config.read_text().replace("  hubspot:", WITH_ASHBY) + "\nserver: {listen: [\n"
    )
    running.signal(signal.SIGHUP)

    async def rejected() -> bool:
        return '"decision": "reload_rejected"' in running.log.read_text()

    await until(rejected, "the daemon to reject the broken file")
    os.kill(_acceptor_pids(running)[0], signal.SIGKILL)

    async def restarted() -> bool:
        return len(_acceptor_pids(running)) == 2 and await _listening(acceptor)

    await until(restarted, "the daemon to start its acceptor again")
    assert await _ashby_ping(acceptor) == 404  # not in the config the daemon runs
    assert (await _post(acceptor, application(4), "d4"))[0] == 200
    assert "acceptor_restart_failed" not in running.log.read_text()


def test_the_acceptor_process_loads_neither_the_store_nor_the_config_models() -> None:
    """Its memory is the point of a small second process: the handler, the three signed
    sources and the spool, without SQLAlchemy, Alembic, the config models or JMESPath."""
    probe = (
        "import sys, engine.acceptor as a\n"
        "from engine.webhook_sources import signed_sources\n"
        "from engine.metrics import Metrics\n"
        "sources = signed_sources({'greenhouse': ['g'], 'ashby': ['a'],"
        " 'generic': ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']})\n"
        "a.AcceptorServer(lambda: None, sources, Metrics()).routes()\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = ("sqlalchemy", "alembic", "jmespath", "jsonschema", "ruamel", "engine.config")
    assert [m for m in loaded if m.startswith(heavy)] == []
    assert "adapters.sources" in loaded and "engine.webhook_handler" in loaded


async def test_a_start_waits_for_the_acceptor_port_an_old_acceptor_still_holds(
    daemon: tuple[Running, HubSpotSimulator],  # noqa: F811
) -> None:
    """After a SIGKILL of the daemon, its acceptor may hold the port for a moment: the new
    start tries again instead of failing."""
    running, _ = daemon
    acceptor = _with_acceptor(running)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", int(acceptor.rsplit(":", 1)[1])))
    holder.listen()
    starting = asyncio.create_task(running.start())
    try:

        async def retried() -> bool:
            return running.log.exists() and "acceptor_start_retried" in running.log.read_text()

        await until(retried, "the daemon to retry its acceptor's start")
        assert not starting.done()  # not ready while the port is taken
    finally:
        holder.close()
    await starting
    assert (await _post(acceptor, application(1), "d1"))[0] == 200
