"""``nurture run``: the composition root that wires vendors into the engine and runs it all.

One asyncio process: the webhook server, intake, the outbox workers, the step timekeeper
(APScheduler), the pollers (HubSpot engagement; the ATS feeds of ``engine.pollers``) and config
hot reload. SIGHUP (or a changed file
under the config paths) reloads: the new config is validated first and swapped in whole; an
invalid one is logged with every location, alerted, and the running config stays. SIGTERM or
SIGINT stops taking webhooks (503), lets in-flight actions finish within a grace period and
leaves the rest durably pending for the next start.

This module and ``engine.pollers`` are where ``engine`` imports ``adapters``: where they are
chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from engine.acceptor_link import AcceptorLink, acceptor_settings
from engine.clock import Clock, ScaledClock, SystemClock
from engine.config.daemon import DaemonConfig, EmailTarget, SlackTarget
from engine.config.load import ConfigSet, LoadResult, load_config
from engine.config.types import parse_duration
from engine.gc_pauses import GcPauses
from engine.links import LinkSigner
from engine.log_lines import configure_logging
from engine.metrics import Metrics
from engine.outbox_stream import Stream
from engine.ports import AlertPort, AtsPort, MailPort, NotifierPort
from engine.runtime import Runtime
from engine.scheduler import Timekeeper
from engine.server import WebhookServer
from engine.store.migrate import migrate_apart
from engine.store.store import STORE_DOWN, Store
from engine.webhook_handler import ServerState, WebhookSource
from engine.webhook_sources import webhook_sources

log = logging.getLogger("nurture.daemon")
LEASE = timedelta(minutes=2)  # how long a claimed action is ours before another run may take it


def _secret(env: Mapping[str, str], name: str | None) -> str | None:
    return env.get(name) if name else None


class Notifier:
    """Internal messages: interviewer emails over the first SMTP target, Slack by target name."""

    def __init__(self, email: AlertPort | None, slack: Mapping[str, AlertPort]) -> None:
        self._email = email
        self._slack = slack

    async def email(self, to: list[str], subject: str, text: str) -> None:
        from adapters.smtp.client import SmtpAlertTarget

        if not isinstance(self._email, SmtpAlertTarget):
            from engine.outbox import ActionFailed

            raise ActionFailed("no SMTP target in alerting.targets to send internal email")
        await self._email.with_recipients(to).send_alert(subject, text)

    async def slack(self, target: str | None, text: str) -> None:
        port = self._slack.get(target or "") or next(iter(self._slack.values()), None)
        if port is None:
            from engine.outbox import ActionFailed

            raise ActionFailed(f"no Slack target {target!r} in alerting.targets")
        await port.send_alert("nurture", text)


@dataclass
class Daemon:
    config_path: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Clock = field(default_factory=SystemClock)
    grace: float = 10.0
    metrics: Metrics = field(default_factory=Metrics)
    state: ServerState = field(default_factory=ServerState)

    def __post_init__(self) -> None:
        self.stop = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.runtime: Runtime | None = None
        # vendor limits belong to the account, not to one config version: a reload keeps them
        self._hubspot_limiter: Any = None
        self.config: ConfigSet | None = None
        self._mtimes: dict[Path, float] = {}
        self.gc_pauses = GcPauses(self.metrics)
        self.server: WebhookServer | None = None
        self.acceptor: AcceptorLink | None = None

    # -- config --------------------------------------------------------------------------
    def _load(self) -> LoadResult:
        base = self.config_path.parent
        first = load_config([], daemon_path=self.config_path)
        paths = ["rules", "sequences"]
        if first.config is not None and first.config.daemon is not None:
            paths = first.config.daemon.config_paths
        return load_config([base / p for p in paths], daemon_path=self.config_path)

    def _watched(self) -> dict[Path, float]:
        assert self.config is not None and self.config.daemon is not None
        base = self.config_path.parent
        files = [self.config_path]
        for folder in self.config.daemon.config_paths:
            files += sorted((base / folder).rglob("*.y*ml")) if (base / folder).is_dir() else []
        return {f: f.stat().st_mtime for f in files if f.exists()}

    # -- wiring ----------------------------------------------------------------------------
    def _build(
        self,
        config: ConfigSet,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        vendor_limits: bool = True,
    ) -> tuple[Runtime, dict[str, WebhookSource], LinkSigner | None]:
        from adapters.hubspot.client import HubSpotClient
        from adapters.ratelimit import HUBSPOT_PER_10S
        from adapters.slack.client import SlackWebhook
        from adapters.smtp.client import from_config as smtp_target

        daemon = config.daemon
        assert daemon is not None
        hub = daemon.vendors.hubspot
        assert hub is not None
        per_10s = hub.requests_per_10s or HUBSPOT_PER_10S[hub.tier]
        crm = HubSpotClient(
            session,
            hub.base_url,
            self.env.get(hub.token_env, ""),
            timeout=parse_duration(hub.timeout).total_seconds(),
            limiter=self._limiter(per_10s) if vendor_limits else None,
            tries=2,  # a 5xx or a timeout is tried once more before the action is retried
            subscription_id=hub.subscription_id,
        )
        alert_targets: list[AlertPort] = []
        slack_ports: dict[str, AlertPort] = {}
        email_port: AlertPort | None = None
        for target in daemon.alerting.targets:
            if isinstance(target, SlackTarget):
                port = SlackWebhook(session, self.env.get(target.webhook_url_env, ""), target.name)
                slack_ports[target.name] = port
                alert_targets.append(port)
            elif isinstance(target, EmailTarget):
                email_port = smtp_target(target, self.env)
                alert_targets.append(email_port)
        ats = self._ats(daemon, session)
        notifier: NotifierPort = Notifier(email_port, slack_ports)
        link_secret = self.env.get(daemon.server.link_secret_env, "")
        links = (
            LinkSigner(link_secret.encode(), daemon.server.public_url)
            if len(link_secret) >= 16
            else None
        )
        from adapters.generic import HttpActionHandler

        runtime = Runtime.build(
            store,
            config,
            self.clock,
            crm,
            alert_targets,
            ats=ats,
            notifier=notifier,
            links=links,
            extra_handlers={"http.request": HttpActionHandler(session, self.env)},
            lease=self._real(LEASE),
            consent=crm if hub.check_subscription_before_send else None,
            mail=self._mailer(daemon),
            metrics=self.metrics,
        )
        known = webhook_sources(
            daemon,
            self.env,
            lever=self._lever(daemon, session) if daemon.vendors.lever is not None else None,
            contact_email=crm.contact_email,
        )
        return runtime, known, links

    def _mailer(self, daemon: DaemonConfig) -> MailPort | None:
        """The SMTP relay for candidate email with ``mail.via: smtp``; None: the CRM sends."""
        from adapters.smtp.mail import mailer_from_config

        if daemon.mail.via != "smtp" or daemon.mail.smtp is None:
            return None
        return mailer_from_config(daemon.mail.smtp, self.env)

    def _real(self, duration: timedelta) -> timedelta:
        """A span that must pass in real time (a lease guards against a dead process), on the
        engine's clock: under ``--simulated-clock`` it is scaled up by the clock's rate."""
        return duration * (self.clock.rate if isinstance(self.clock, ScaledClock) else 1.0)

    def _limiter(self, per_10s: int) -> Any:
        from adapters.ratelimit import WindowLimiter

        if self._hubspot_limiter is None:
            self._hubspot_limiter = WindowLimiter(per_10s, 10.0)
        return self._hubspot_limiter

    def _pollers(
        self, session: aiohttp.ClientSession, store: Store, wake: asyncio.Event
    ) -> list[asyncio.Task[None]]:
        """One task per poller feed (``engine.pollers``): HubSpot engagement, which HubSpot
        never pushes, and the ATS feeds of every vendor that sets ``poll_every``."""
        from adapters.hubspot.poller import EngagementPoller
        from engine.cursors import StoreCursors
        from engine.pollers import Wiring, ats_feeds, feed, poll_forever

        assert self.config is not None and self.config.daemon is not None
        daemon = self.config.daemon
        hub = daemon.vendors.hubspot
        assert hub is not None

        async def accept(event: Any) -> Any:
            outcome = await self._runtime().intake.accept(event)
            wake.set()
            if self.server is not None:
                self.server.note_accepted(event, outcome)
            return outcome

        state = StoreCursors(store, self.clock)
        engagement = feed(
            "hubspot",
            "engagement",
            parse_duration(hub.poll_every),
            accept,
            lambda sink: EngagementPoller(
                session,
                hub.base_url,
                self.env.get(hub.token_env, ""),
                state,
                sink,
                start=self.clock.now() - timedelta(days=1),
                limiter=self._hubspot_limiter,
            ),
        )
        feeds = [engagement]
        feeds += ats_feeds(Wiring(daemon, session, self.env, state, self.clock, accept))
        return [asyncio.create_task(poll_forever(feed)) for feed in feeds]

    def _lever(self, daemon: DaemonConfig, session: aiohttp.ClientSession) -> Any:
        from adapters.lever.client import LeverClient

        lev = daemon.vendors.lever
        assert lev is not None
        return LeverClient(
            session, self.env.get(lev.api_key_env, ""), lev.perform_as, base_url=lev.base_url
        )

    def _ashby(self, daemon: DaemonConfig, session: aiohttp.ClientSession) -> Any:
        from adapters.ashby.client import AshbyClient

        ash = daemon.vendors.ashby
        assert ash is not None
        return AshbyClient(session, self.env.get(ash.api_key_env, ""), base_url=ash.base_url)

    def _ats(self, daemon: DaemonConfig, session: aiohttp.ClientSession) -> AtsPort | None:
        if daemon.ats == "lever" and daemon.vendors.lever is not None:
            port: AtsPort = self._lever(daemon, session)
            return port
        if daemon.ats == "ashby" and daemon.vendors.ashby is not None:
            ashby: AtsPort = self._ashby(daemon, session)
            return ashby
        gh = daemon.vendors.greenhouse
        if daemon.ats != "greenhouse" or gh is None:
            return None
        from adapters.greenhouse.harvest import BasicAuth, HarvestClient, OAuthClientCredentials

        auth: BasicAuth | OAuthClientCredentials
        if gh.auth == "basic":
            auth = BasicAuth(self.env.get(gh.api_key_env or "", ""))
        else:
            auth = OAuthClientCredentials(
                self.env.get(gh.client_id_env or "", ""),
                self.env.get(gh.client_secret_env or "", ""),
                gh.token_url,
                gh.on_behalf_of,
            )
        return HarvestClient(session, gh.base_url, on_behalf_of=gh.on_behalf_of, auth=auth)

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> int:
        with self.gc_pauses:
            return await self._serve()

    async def _serve(self) -> int:
        loaded = self._load()
        if loaded.config is None or loaded.config.daemon is None:
            for diagnostic in loaded.errors:
                log.error(
                    json.dumps({"decision": "config_invalid", "error": diagnostic.format_text()})
                )
            return 1
        self.config = loaded.config
        daemon = loaded.config.daemon
        store = await Store.open(daemon.store.url, migrate=False)
        try:
            if await store.behind():
                await migrate_apart(daemon.store.url)
        except BaseException:
            await store.close()
            raise
        if store.dialect == "sqlite":  # one node: whatever is still claimed, a crash left behind
            await self._release_orphans(store)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        async with aiohttp.ClientSession() as session:
            runtime, known, links = self._build(loaded.config, store, session)
            self.runtime = runtime
            keeper = Timekeeper(lambda: self._runtime())
            self.state.claimer_running = lambda: keeper.scheduler.running
            wake = asyncio.Event()
            server = WebhookServer(
                lambda: self._runtime().intake,
                store,
                known,
                self.clock,
                self.metrics,
                max_body=daemon.server.max_body_bytes,
                admin_token=self.env.get(daemon.server.admin_token_env),
                links=links,
                state=self.state,
                on_accepted=wake.set,
                public_url=daemon.server.public_url,
            )
            self.server = server
            host, port = daemon.server.listen.rsplit(":", 1)
            web_runner = web.AppRunner(server.app(), access_log=None)
            await web_runner.setup()
            site = web.TCPSite(web_runner, host, int(port))
            await site.start()
            keeper.start()
            if daemon.server.acceptor is not None:
                self.acceptor = AcceptorLink(
                    acceptor_settings(daemon, self.env),
                    self.config_path.parent / daemon.server.acceptor.spool,
                    intake=lambda: self._runtime().intake,
                    note=server.note_accepted,
                    wake=wake.set,
                    store=store,
                    clock=self.clock,
                )
                acceptor = self.acceptor
                self.state.acceptor_running = lambda: acceptor.ready
                await acceptor.start()
            self.gc_pauses.freeze_what_lives()
            worker_stop = asyncio.Event()
            worker = asyncio.create_task(self._work(worker_stop, wake))
            self._mtimes = self._watched()
            log.info(
                json.dumps(
                    {
                        "decision": "started",
                        "listen": daemon.server.listen,
                        "rules": len(loaded.config.rules),
                        "sequences": len(loaded.config.sequences),
                        "config": loaded.config.digest,
                    }
                )
            )
            watcher = asyncio.create_task(self._watch())
            pollers = self._pollers(session, store, wake)
            try:
                while not self.stop.is_set():
                    stop_wait = asyncio.ensure_future(self.stop.wait())
                    reload_wait = asyncio.ensure_future(self.reload_requested.wait())
                    await asyncio.wait(
                        {stop_wait, reload_wait}, return_when=asyncio.FIRST_COMPLETED
                    )
                    stop_wait.cancel()
                    reload_wait.cancel()
                    if self.reload_requested.is_set():
                        self.reload_requested.clear()
                        await self._reload(store, session)
            finally:
                if self.acceptor is not None:  # its webhooks stop first; the spool keeps the rest
                    await self.acceptor.stop(self.grace)
                self.state.accepting = False  # webhooks now get 503: the vendor retries
                watcher.cancel()
                for task in pollers:
                    task.cancel()  # a sweep cut short keeps its cursor: the next start re-reads
                await asyncio.gather(*pollers, return_exceptions=True)
                keeper.shutdown()
                worker_stop.set()
                wake.set()
                try:
                    await asyncio.wait_for(worker, timeout=self.grace)
                except TimeoutError:
                    log.warning(
                        json.dumps(
                            {
                                "decision": "grace_expired",
                                "detail": "unfinished actions were released; they run "
                                "again on the next start (idempotency keys make that safe)",
                            }
                        )
                    )
                await web_runner.cleanup()
                await store.close()
                log.info(json.dumps({"decision": "stopped"}))
        return 0

    async def _release_orphans(self, store: Store) -> None:
        """SQLite serves one daemon, so actions claimed at start were claimed by a process that
        died (SIGKILL, OOM, power): run them now instead of after their lease."""
        from sqlalchemy import update

        from engine.store.tables import outbox

        async with store.transaction() as conn:
            released = (
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.status == "running")
                    .values(status="pending", lease_until=None)
                )
            ).rowcount
        if released:
            log.info(json.dumps({"decision": "released_orphans", "actions": released}))

    def _runtime(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime  # read on every use: a reload swaps it whole

    async def _work(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """The outbox workers, always on the current runtime (so a reload takes effect)."""
        await Stream(lambda: self._runtime().dispatcher, idle=0.2).run(stop, wake)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(2.0)  # a daemon polling its own files, not a test waiting
            try:
                current = self._watched()
            except OSError:
                continue
            if current != self._mtimes:
                self._mtimes = current
                self.reload_requested.set()

    async def _alert_rejected_reload(self, store: Store, loaded: LoadResult) -> None:
        """The alert for a rejected reload. The store may be down at that moment: the error
        line and ``nurture_last_reload_success`` still tell, the next reload alerts again,
        and the daemon runs on with its config (raising here used to stop it)."""
        from engine.store import queries

        now = self.clock.now()
        try:
            async with store.transaction() as conn:
                await queries.group_alert(
                    conn,
                    group_key="reload",
                    kind="reload_rejected",
                    reason=f"config reload rejected ({len(loaded.errors)} error(s)); the "
                    "running config stays: " + loaded.errors[0].format_text().splitlines()[0],
                    candidate_id=None,
                    rule_id=None,
                    action_type=None,
                    now=now,
                    window_start=now - timedelta(minutes=10),
                )
        except STORE_DOWN as exc:
            log.error(json.dumps({"decision": "reload_alert_not_stored", "error": repr(exc)}))

    async def _reload(self, store: Store, session: aiohttp.ClientSession) -> None:
        loaded = self._load()
        self.state.last_reload_at = time.time()
        if loaded.config is None:
            self.state.last_reload_ok = False
            for diagnostic in loaded.errors:
                log.error(
                    json.dumps({"decision": "reload_rejected", "error": diagnostic.format_text()})
                )
            if self.runtime is not None:
                await self._alert_rejected_reload(store, loaded)
            return
        runtime, known, links = self._build(loaded.config, store, session)
        self.runtime, self.config = runtime, loaded.config
        if self.server is not None and loaded.config.daemon is not None:
            # webhooks follow the new config too: a vendor added, a new public_url
            self.server.serve(known, links, loaded.config.daemon.server.public_url)
        if self.acceptor is not None and loaded.config.daemon is not None:
            # its sources too: a webhook secret rotated, a vendor added
            running = self.acceptor.settings
            self.acceptor.reload(acceptor_settings(loaded.config.daemon, self.env, running))
        self.state.last_reload_ok = True
        self.gc_pauses.freeze_what_lives()
        log.info(
            json.dumps(
                {
                    "decision": "reloaded",
                    "config": loaded.config.digest,
                    "rules": len(loaded.config.rules),
                }
            )
        )


async def run(config_path: Path, debug: bool = False, clock: Clock | None = None) -> int:
    configure_logging(debug)
    if clock is not None:  # never in production: say so where an operator would look
        log.warning(json.dumps({"decision": "simulated_clock", "now": clock.now().isoformat()}))
    with contextlib.suppress(asyncio.CancelledError):
        return await Daemon(config_path, clock=clock or SystemClock()).run()
    return 0
