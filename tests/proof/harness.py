"""The proof harness: the vendors process and ``nurture run`` as real subprocesses.

``VendorsProcess`` starts ``python -m tests.proof.vendors`` and drives its control API.
``DaemonProcess`` writes a ``nurture.yaml`` (the shipped ``rules/`` and ``sequences/``, vendor
URLs pointing at the simulators, secrets in the environment), starts ``nurture run`` with its
logs in a file, waits for ``/readyz``, kills (SIGKILL), stops (SIGTERM), restarts, and opens
the daemon's store afterwards to read what it did. Nothing here runs engine code in-process
except ``Store`` for reading the database when the daemon is down or idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from engine.clock import ScaledClock
from engine.store.store import Store
from tests.proof.vendors import HARVEST_KEY, HUBSPOT_TOKEN

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("NURTURE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SECRETS = {
    "HUBSPOT_TOKEN": HUBSPOT_TOKEN,
    "HUBSPOT_CLIENT_SECRET": "proof-hubspot-client-secret",
    "GREENHOUSE_API_KEY": HARVEST_KEY,
    "GREENHOUSE_WEBHOOK_SECRET": "proof-greenhouse-webhook-secret",
    "NURTURE_ADMIN_TOKEN": "proof-admin-token",
    "NURTURE_LINK_SECRET": "proof-link-secret-0123456789",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60, every: float = 0.1
) -> None:
    """Wait (bounded) for an effect of another process; never for a timer of our own."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(every)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}") from None


async def settle(
    check: Callable[[], Awaitable[bool]], timeout: float, every: float = 1.0
) -> float | None:
    """Like ``until``, but a scenario goes on to report: the seconds it took, or None."""
    started = time.monotonic()
    try:
        await until(check, "", timeout, every)
    except TimeoutError:
        return None
    return time.monotonic() - started


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A scratch folder for one scenario (logs, database); kept under ``$NURTURE_PROOF_KEEP``
    when that is set, so a broken invariant can be investigated afterwards."""
    keep = os.environ.get("NURTURE_PROOF_KEEP")
    if keep:
        folder = Path(keep) / f"{name}-{time.strftime('%H%M%S')}"
        folder.mkdir(parents=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"nurture-{name}-") as tmp:
        yield Path(tmp)


# -- the vendors process -------------------------------------------------------------------


@dataclass
class VendorsProcess:
    folder: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def start(self) -> None:
        ports_file = self.folder / "vendor-ports.json"
        log = self.folder / "vendors.log"
        with log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.proof.vendors",
                "--ports-file",
                str(ports_file),
                cwd=REPO,
                stdout=out,
                stderr=out,
            )

        async def written() -> bool:
            if self.process is not None and self.process.returncode is not None:
                raise RuntimeError("the vendors process died:\n" + log.read_text()[-2000:])
            return ports_file.exists()

        await until(written, "the vendors process to listen", timeout=60)
        self.ports = json.loads(ports_file.read_text())

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url("control") + path, json=body) as answer,
        ):
            answer.raise_for_status()
            return await answer.json()

    async def chaos(self, **settings: Any) -> Any:
        return await self._call("POST", "/chaos/hubspot", settings)

    async def latency(self, seconds: float) -> None:
        await self._call("POST", "/hubspot/latency", {"seconds": seconds})

    async def reject_candidate(self, candidate_id: str) -> None:
        await self._call("POST", "/greenhouse/reject", {"candidate_id": candidate_id})

    async def state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self._call("GET", "/state")
        return state


@contextlib.asynccontextmanager
async def vendors_process(folder: Path) -> AsyncIterator[VendorsProcess]:
    vendors = VendorsProcess(folder)
    try:
        await vendors.start()
        yield vendors
    finally:
        await vendors.stop()


# -- stores ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A PostgreSQL schema of its own on the shared server, dropped afterwards; yields its name."""
    schema = f"proof_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def postgres_url(schema: str, port: int | None = None) -> str:
    """The shared server's URL (or a proxy's on ``port``) with the tables in ``schema``."""
    url = POSTGRES_URL
    if port is not None:
        url = url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    return f"{url}?search_path={schema}"


# -- the daemon -----------------------------------------------------------------------------


@dataclass
class DaemonSettings:
    """What differs between scenarios; everything else is the shipped integration."""

    store_url: str
    hubspot_timeout: str = "2s"
    # the simulators have no rate limit; the engine's client-side one (HubSpot: 190 per 10 s)
    # would make a 10,000-event run take most of an hour
    hubspot_requests_per_10s: int = 100_000
    group_window: str = "10m"
    config_paths: tuple[Path, ...] = (REPO / "rules", REPO / "sequences")
    acceptor_backlog: int | None = None  # set: webhooks go to an acceptor process (server.acceptor)


class DaemonProcess:
    """``nurture run`` as a subprocess; restartable, its stderr appended to ``daemon.log``."""

    def __init__(
        self,
        folder: Path,
        vendors: VendorsProcess,
        settings: DaemonSettings,
        clock: ScaledClock | None = None,
    ) -> None:
        self.folder, self.vendors, self.settings, self.clock = folder, vendors, settings, clock
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.acceptor_url: str | None = None
        if settings.acceptor_backlog is not None:
            self.acceptor_url = f"http://127.0.0.1:{free_port()}"
        self.webhook_url = self.acceptor_url or self.url  # where vendors post
        self.log = folder / "daemon.log"
        self.config = folder / "nurture.yaml"
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.env = {**os.environ, **SECRETS, "SLACK_URL": vendors.url("slack") + "/services/ops"}
        self.config.write_text(self._yaml())

    def _acceptor_yaml(self) -> str:
        if self.acceptor_url is None:
            return ""
        listen = self.acceptor_url.removeprefix("http://")
        return f', acceptor: {{listen: "{listen}", backlog: {self.settings.acceptor_backlog}}}'

    def _yaml(self) -> str:
        s = self.settings
        paths = ", ".join(json.dumps(str(p)) for p in s.config_paths)
        return f"""\
version: 1
ats: greenhouse
config_paths: [{paths}]
store: {{url: "{s.store_url}"}}
server: {{listen: "127.0.0.1:{self.port}", public_url: "{self.url}"{self._acceptor_yaml()}}}
vendors:
  greenhouse:
    base_url: "{self.vendors.url("greenhouse")}"
    auth: basic
    api_key_env: GREENHOUSE_API_KEY
    on_behalf_of: "40211"
    webhook_secret_envs: [GREENHOUSE_WEBHOOK_SECRET]
  hubspot:
    base_url: "{self.vendors.url("hubspot")}"
    token_env: HUBSPOT_TOKEN
    client_secret_env: HUBSPOT_CLIENT_SECRET
    tier: professional
    requests_per_10s: {s.hubspot_requests_per_10s}
    timeout: {s.hubspot_timeout}
alerting:
  targets:
    - {{name: ops, kind: slack, webhook_url_env: SLACK_URL}}
    - name: ops-mail
      kind: email
      to: [recruiting-ops@example.com]
      smtp: {{host: 127.0.0.1, port: {self.vendors.ports["smtp"]}, starttls: false,
              sender: nurture@example.com}}
  group_window: {s.group_window}
guardrails:
  default_time_zone: Europe/Berlin
  quiet_hours: {{start: "20:00", end: "08:00"}}
  frequency_cap: {{max: 1, per: 48h}}
"""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def now(self) -> datetime:
        """The daemon's "now" (its simulated clock, or the wall clock)."""
        from engine.clock import SystemClock

        return (self.clock or SystemClock()).now()

    async def start(self, timeout: float = 90) -> float:
        """Start and wait for ``/readyz``; returns the seconds that took."""
        started = time.perf_counter()
        command = [sys.executable, "-m", "engine.cli", "run", "--config", str(self.config)]
        if self.clock is not None:
            command += ["--simulated-clock", self.clock.spec()]
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = await asyncio.create_subprocess_exec(
                *command,
                cwd=REPO,
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        self.starts += 1

        async def ready() -> bool:
            if not self.running:
                raise RuntimeError("the daemon exited:\n" + self.log_tail())
            return await self.ready()

        try:
            await until(ready, "the daemon to become ready", timeout=timeout)
        except TimeoutError:
            raise TimeoutError("daemon not ready:\n" + self.log_tail()) from None
        return time.perf_counter() - started

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    async def ready(self) -> bool:
        try:
            status, _ = await self.get("/readyz")
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status == 200

    async def get(self, path: str, timeout: float = 10) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(self.url + path) as answer,
        ):
            text = await answer.text()
            try:
                return answer.status, json.loads(text)
            except ValueError:
                return answer.status, text

    async def kill(self) -> None:
        """SIGKILL: no grace, no cleanup, as a crash or an OOM kill."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait for a clean exit; returns the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError("the daemon ignored SIGTERM:\n" + self.log_tail()) from None

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines

    @contextlib.asynccontextmanager
    async def store(self, url: str | None = None) -> AsyncIterator[Store]:
        """The daemon's store, opened from here (``url`` when the daemon's goes via a proxy)."""
        opened = await Store.open(url or self.settings.store_url, migrate=False)
        try:
            yield opened
        finally:
            await opened.close()
