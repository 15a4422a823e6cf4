"""``nurture demo``: the shipped integration, end to end, on simulators and a virtual clock.

Starts loopback simulators (HubSpot, Greenhouse Harvest, Slack, SMTP), the engine on a SQLite
file with the shipped rules and sequences, and the webhook server; then plays 200+ candidates
over 120+ simulated days through real signed webhooks: applications (one person applying to
two roles), stage changes, interviews with a reschedule and a cancellation, rejections after
the final round, hires, email opens and clicks (read by the HubSpot poller), Day-90 one-click
"keep me posted" links (followed over HTTP), unsubscribes, and a three-hour CRM outage that
raises one vendor-outage alert and is waited out (its actions keep their retry budget and run
when it answers again; the replay at its end finds nothing dead). Time jumps from one due
moment to the next; nothing waits for a timer. Interviews are scheduled, moved and cancelled
in the Greenhouse simulator and reach the engine through the Greenhouse interview poller
(Greenhouse sends no usable interview webhook); interviewer feedback is still injected as
events (no scorecard poller yet).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from sqlalchemy import select

from adapters.greenhouse.payloads import application_payload
from engine.clock import ManualClock
from engine.config.load import load_config
from engine.events import Event
from engine.metrics import Metrics
from engine.outbox import RetryPolicy
from engine.server import WebhookServer
from engine.store import queries
from engine.store.store import Store
from engine.store.tables import enrollment_steps, enrollments, outbox, suppressions
from engine.webhook_handler import ServerState

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DAYS = 125
SECRET = "demo-greenhouse-secret"
TOKEN = "demo-hubspot-token"


@dataclass
class Person:
    number: int
    email: str
    first: str
    candidate_id: str
    department: str


@dataclass
class Plan:
    """The scripted scenario: (when, what) pairs, played in time order."""

    items: list[tuple[datetime, int, str, dict[str, Any]]] = field(default_factory=list)
    _seq: int = 0

    def at(self, when: datetime, what: str, **data: Any) -> None:
        self._seq += 1
        self.items.append((when, self._seq, what, data))

    def sorted(self) -> list[tuple[datetime, int, str, dict[str, Any]]]:
        return sorted(self.items)


JOBS = [
    (501, "Data Engineer", "Data"),
    (502, "Senior Data Engineer", "Data"),
    (503, "Backend Engineer", "Platform"),
    (504, "Product Designer", "Design"),
    (505, "Analytics Engineer", "Data"),
    (506, "Site Reliability Engineer", "Platform"),
]


def _application_payload(
    person: Person,
    application_id: int,
    job: tuple[int, str, str],
    stage: str,
    status: str = "active",
    reason: str | None = None,
) -> dict[str, Any]:
    return application_payload(
        application_id=application_id,
        candidate_id=person.candidate_id,
        first_name=person.first,
        last_name="Demo",
        email=person.email,
        job=job,
        stage=stage,
        stage_id=7700000 + len(stage),
        status=status,
        reason=reason,
    )


def build_plan(rng: random.Random, people: int) -> tuple[Plan, list[Person]]:
    plan = Plan()
    persons = [
        Person(n, f"candidate{n:03d}@example.com", f"Cand{n:03d}", str(71000000 + n), "")
        for n in range(people)
    ]
    application_ids = iter(range(93300000, 93400000))
    for person in persons:
        job = rng.choice(JOBS)
        person.department = job[2]
        applied = START + timedelta(hours=rng.uniform(1, 24 * 28))
        app_id = next(application_ids)
        plan.at(
            applied,
            "webhook",
            action="new_candidate_application",
            payload=_application_payload(person, app_id, job, "Application Review"),
        )
        if person.number % 20 == 0:  # one person, two roles
            other = next(j for j in JOBS if j != job)
            plan.at(
                applied + timedelta(hours=2),
                "webhook",
                action="new_candidate_application",
                payload=_application_payload(
                    person, next(application_ids), other, "Application Review"
                ),
            )
        roll = rng.random()
        if roll < 0.55:  # interviewed
            scheduled = applied + timedelta(days=rng.uniform(2, 6))
            plan.at(
                scheduled,
                "webhook",
                action="candidate_stage_change",
                payload=_application_payload(person, app_id, job, "Interview Scheduled"),
            )
            start_at = (scheduled + timedelta(days=4)).replace(minute=0, second=0)
            interview: dict[str, Any] = {
                "id": f"int-{person.number}",
                "start_at": start_at,
                "end_at": start_at + timedelta(hours=1),
            }
            plan.at(
                scheduled,
                "interview",
                kind="scheduled",
                person=person,
                job=job,
                app_id=app_id,
                **interview,
            )
            if person.number % 25 == 3:  # a reschedule
                moved = {
                    **interview,
                    "start_at": start_at + timedelta(days=2),
                    "end_at": start_at + timedelta(days=2, hours=1),
                }
                plan.at(
                    scheduled + timedelta(days=1),
                    "interview",
                    kind="rescheduled",
                    person=person,
                    job=job,
                    app_id=app_id,
                    **moved,
                )
                start_at = moved["start_at"]
            if person.number % 50 == 7:  # a cancellation
                plan.at(
                    scheduled + timedelta(hours=5),
                    "interview",
                    kind="cancelled",
                    person=person,
                    job=job,
                    app_id=app_id,
                    **interview,
                )
                continue
            plan.at(
                start_at + timedelta(hours=3),
                "feedback",
                person=person,
                job=job,
                app_id=app_id,
                interview_id=interview["id"],
            )
            decided = start_at + timedelta(days=rng.uniform(3, 6))
            if roll < 0.30:  # final round, then not selected: a silver medalist
                plan.at(
                    decided - timedelta(days=1),
                    "webhook",
                    action="candidate_stage_change",
                    payload=_application_payload(person, app_id, job, "Final Round"),
                )
                plan.at(
                    decided,
                    "webhook",
                    action="reject_candidate",
                    payload=_application_payload(
                        person, app_id, job, "Final Round", "rejected", "Not Selected"
                    ),
                )
                if person.number % 3 == 0:
                    plan.at(decided + timedelta(days=rng.uniform(10, 40)), "click", person=person)
                if person.number % 4 == 1:
                    plan.at(decided + timedelta(days=95), "keep_me_posted", person=person)
                if person.number % 11 == 5:
                    plan.at(
                        decided + timedelta(days=rng.uniform(31, 70)), "unsubscribe", person=person
                    )
            elif roll < 0.36:
                plan.at(
                    decided,
                    "webhook",
                    action="hire_candidate",
                    payload=_application_payload(person, app_id, job, "Offer", "hired"),
                )
        elif roll > 0.9:
            plan.at(applied + timedelta(days=rng.uniform(1, 10)), "open", person=person)
    plan.at(START + timedelta(days=33), "outage_start")
    plan.at(START + timedelta(days=33, hours=3), "outage_end")
    return plan, persons


class Demo:
    def __init__(
        self, repo: Path, workdir: Path, out: TextIO, people: int = 220, seed: int = 7
    ) -> None:
        self.repo, self.workdir, self.out = repo, workdir, out
        self.people, self.seed = people, seed
        self.clock = ManualClock(START)
        self.first_touch: list[float] = []
        self.posted_at: dict[str, float] = {}
        self._seen_sends = 0
        self.interview_ids: dict[str, int] = {}  # the plan's interview -> the simulator's id
        self.harvest: Any = None
        self.interviews: Any = None

    async def run(self) -> int:
        from adapters.greenhouse.harvest import BasicAuth, HarvestClient
        from adapters.greenhouse.interviews import InterviewPoller
        from adapters.greenhouse.reads import HarvestReads
        from adapters.greenhouse.simulator import HarvestSimulator
        from adapters.hubspot.poller import EngagementPoller
        from adapters.hubspot.simulator import HubSpotSimulator
        from adapters.slack.simulator import SlackSimulator
        from adapters.smtp.simulator import SmtpSimulator
        from engine.cursors import StoreCursors
        from engine.daemon import Daemon

        started = time.perf_counter()
        self.workdir.mkdir(parents=True, exist_ok=True)
        database = self.workdir / "nurture-demo.db"
        for leftover in self.workdir.glob("nurture-demo.db*"):
            leftover.unlink()
        hubspot, harvest, slack = (
            HubSpotSimulator(TOKEN),
            HarvestSimulator("demo-harvest-key", rate_limit=100_000),
            SlackSimulator(),
        )
        smtp = SmtpSimulator(starttls=False)
        smtp.start()
        runners = []
        urls = {}
        for name, app in (
            ("hubspot", hubspot.app()),
            ("harvest", harvest.app()),
            ("slack", slack.app()),
        ):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            urls[name] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        config_file = self.workdir / "nurture.yaml"
        config_file.write_text(self._daemon_yaml(database, urls, smtp.port))
        loaded = load_config(
            [self.repo / "rules", self.repo / "sequences"], daemon_path=config_file
        )
        if loaded.config is None:
            for diagnostic in loaded.errors:
                print(diagnostic.format_text(), file=self.out)
            return 1
        env = {
            "HUBSPOT_TOKEN": TOKEN,
            "GREENHOUSE_API_KEY": "demo-harvest-key",
            "GREENHOUSE_WEBHOOK_SECRET": SECRET,
            "SLACK_URL": urls["slack"] + "/services/d",
            "NURTURE_ADMIN_TOKEN": "demo-admin",
            "NURTURE_LINK_SECRET": "demo-link-secret-0123",
        }
        daemon = Daemon(config_file, env=env, clock=self.clock)
        store = await Store.open(f"sqlite:///{database}")
        try:
            async with aiohttp.ClientSession() as session:
                # simulators have no rate limit, and the demo's clock is virtual: a real-time
                # client-side limit (HubSpot: 100 per 10 s) would only make the demo wait
                runtime, sources, links = daemon._build(
                    loaded.config, store, session, vendor_limits=False
                )
                # a short budget for failures of the actions themselves; the outage does not
                # use it up (engine/outage.py), so nothing is dead-lettered by it
                runtime.dispatcher.retry = RetryPolicy(max_attempts=6)
                server = WebhookServer(
                    lambda: runtime.intake,
                    store,
                    sources,
                    self.clock,
                    Metrics(),
                    links=links,
                    state=ServerState(),
                )
                runner = web.AppRunner(server.app(), access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                runners.append(runner)
                daemon_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
                poller = EngagementPoller(
                    session,
                    urls["hubspot"],
                    TOKEN,
                    StoreCursors(store, self.clock),
                    runtime.intake.accept,
                    start=START,
                )
                interviews = InterviewPoller(
                    HarvestReads(
                        HarvestClient(
                            session,
                            urls["harvest"],
                            on_behalf_of="40211",
                            auth=BasicAuth("demo-harvest-key"),
                        )
                    ),
                    StoreCursors(store, self.clock),
                    runtime.intake.accept,
                    start=START,
                    clock=self.clock,
                )
                self.harvest, self.interviews = harvest, interviews
                await self._play(runtime, store, session, daemon_url, hubspot, poller)
                await self._report(
                    store, hubspot, harvest, slack, smtp, database, time.perf_counter() - started
                )
        finally:
            await store.close()
            for runner in runners:
                await runner.cleanup()
            smtp.stop()
        return 0

    def _daemon_yaml(self, database: Path, urls: dict[str, str], smtp_port: int) -> str:
        return f"""\
version: 1
ats: greenhouse
config_paths: [rules, sequences]
store: {{url: "sqlite:///{database}"}}
server: {{listen: "127.0.0.1:0", public_url: "http://demo.invalid"}}
vendors:
  greenhouse:
    base_url: "{urls["harvest"]}"
    auth: basic
    api_key_env: GREENHOUSE_API_KEY
    on_behalf_of: "40211"
    webhook_secret_envs: [GREENHOUSE_WEBHOOK_SECRET]
  hubspot: {{base_url: "{urls["hubspot"]}", token_env: HUBSPOT_TOKEN}}
alerting:
  targets:
    - {{name: ops, kind: slack, webhook_url_env: SLACK_URL}}
    - name: ops-mail
      kind: email
      to: [recruiting-ops@example.com]
      smtp: {{host: 127.0.0.1, port: {smtp_port}, starttls: false, sender: nurture@example.com}}
  group_window: 6h
guardrails:
  default_time_zone: Europe/Berlin
  quiet_hours: {{start: "20:00", end: "08:00"}}
  frequency_cap: {{max: 1, per: 48h}}
"""

    async def _play(
        self,
        runtime: Any,
        store: Store,
        session: aiohttp.ClientSession,
        daemon_url: str,
        hubspot: Any,
        poller: Any,
    ) -> None:
        plan, _ = build_plan(random.Random(self.seed), self.people)
        items = plan.sorted()
        end = START + timedelta(days=DAYS)
        next_poll = START + timedelta(hours=6)
        delivery = 0
        week = -1
        while True:
            interviewed = False
            while items and items[0][0] <= self.clock.now():
                _, _, kind, data = items.pop(0)
                delivery += 1
                interviewed = interviewed or kind == "interview"
                await self._perform(
                    kind, data, runtime, session, daemon_url, hubspot, store, delivery
                )
            if interviewed:  # the interview poller's sweep, as the daemon's would run it
                await self.interviews.poll_once()
            if self.clock.now() >= next_poll:
                await poller.poll_once()
                next_poll = self.clock.now() + timedelta(hours=6)
            for _ in range(200):
                fired = await runtime.steps.run_due()
                ran = await runtime.dispatcher.run_once()
                self._note_first_touches(hubspot)
                if not fired and not ran:
                    break
            await runtime.alerts.deliver_due()
            current_week = (self.clock.now() - START).days // 7
            if current_week != week:
                week = current_week
                print(
                    f"  day {(self.clock.now() - START).days:3d}: "
                    f"{hubspot.stats()['contacts']} contacts, {hubspot.stats()['sends']} "
                    f"emails sent",
                    file=self.out,
                    flush=True,
                )
            async with store.read() as conn:
                step_due = (
                    await conn.execute(
                        select(enrollment_steps.c.due_at)
                        .where(enrollment_steps.c.status == "pending")
                        .order_by(enrollment_steps.c.due_at)
                        .limit(1)
                    )
                ).scalar_one_or_none()
                action_due = await queries.next_due_at(conn)
            moments = [
                m
                for m in (step_due, action_due, next_poll, items[0][0] if items else None)
                if m is not None
            ]
            upcoming = max(min(moments), self.clock.now() + timedelta(minutes=1))
            if upcoming > end:
                break
            self.clock.set(upcoming)

    def _note_first_touches(self, hubspot: Any) -> None:
        """Wall time from posting an application webhook to its first email at the CRM."""
        sends = list(hubspot.state.sends.values())
        for send in sends[self._seen_sends :]:
            posted = self.posted_at.pop(str(send.get("to")), None)
            if posted is not None:
                self.first_touch.append((time.perf_counter() - posted) * 1000)
        self._seen_sends = len(sends)

    def _mirror(self, action: str, app: dict[str, Any]) -> None:
        """The Greenhouse simulator's records follow the webhooks (the interview poller reads
        the application and candidate of each interview from them)."""
        records = self.harvest.records
        now = self.clock.now()
        app_id = int(app["id"])
        if action == "new_candidate_application":
            cand = app["candidate"]
            if int(cand["id"]) not in records.state.candidates:
                email = cand["email_addresses"][0]["value"]
                records.add_candidate(
                    int(cand["id"]), cand["first_name"], cand["last_name"], email, at=now
                )
            job = app["jobs"][0]
            stage = app["current_stage"]["name"]
            records.add_application(
                int(cand["id"]), (job["id"], job["name"]), stage, at=now, application_id=app_id
            )
        elif action == "candidate_stage_change":
            records.move_stage(app_id, app["current_stage"]["name"], at=now)
        elif action == "reject_candidate":
            records.reject(app_id, app["rejection_reason"]["name"], at=now)
        elif action == "hire_candidate":
            records.hire(app_id, at=now)

    def _schedule(self, data: dict[str, Any]) -> None:
        """An interview scheduled, moved or cancelled in Greenhouse; the poller will see it."""
        records = self.harvest.records
        now = self.clock.now()
        if data["kind"] == "scheduled":
            self.interview_ids[data["id"]] = records.schedule_interview(
                data["app_id"],
                data["start_at"],
                data["end_at"],
                at=now,
                name="Interview",
                interviewers=[{"id": 4090, "name": "Sam Reed", "email": "sam.reed@acme.example"}],
            )
        elif data["kind"] == "rescheduled":
            moved = self.interview_ids[data["id"]]
            records.reschedule_interview(moved, data["start_at"], data["end_at"], at=now)
        else:
            records.cancel_interview(self.interview_ids[data["id"]], at=now)

    async def _perform(
        self,
        kind: str,
        data: dict[str, Any],
        runtime: Any,
        session: aiohttp.ClientSession,
        daemon_url: str,
        hubspot: Any,
        store: Store,
        delivery: int,
    ) -> None:
        now_ms = int(self.clock.now().timestamp() * 1000)
        if kind == "webhook":
            body = json.dumps({"action": data["action"], "payload": data["payload"]}).encode()
            event_id = f"gh-{delivery}"
            digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            if data["action"] == "new_candidate_application":
                email = data["payload"]["application"]["candidate"]["email_addresses"][0]
                self.posted_at.setdefault(email["value"], time.perf_counter())
            self._mirror(data["action"], data["payload"]["application"])
            async with session.post(
                f"{daemon_url}/webhooks/greenhouse",
                data=body,
                headers={
                    "Signature": f"sha256 {digest}",
                    "Greenhouse-Event-ID": event_id,
                },
            ) as answer:
                if answer.status >= 300:
                    raise RuntimeError(f"webhook {event_id}: {answer.status} {await answer.text()}")
        elif kind == "interview":
            self._schedule(data)
        elif kind == "feedback":
            person: Person = data["person"]
            job = data["job"]
            interviewer = {"name": "Sam Reed", "email": "sam.reed@acme.example"}
            payload = {
                "candidate": {
                    "id": person.candidate_id,
                    "first_name": person.first,
                    "email": person.email,
                },
                "application": {
                    "id": str(data["app_id"]),
                    "status": "active",
                    "job": {"id": str(job[0]), "title": job[1], "department": job[2]},
                },
                "feedback": {
                    "id": f"fb-{delivery}",
                    "interview_id": str(self.interview_ids[data["interview_id"]]),
                    "interviewer": interviewer,
                    "submitted_at": self.clock.now().isoformat(),
                },
            }
            event_type = "ats.feedback.submitted"
            await runtime.intake.accept(
                Event(
                    id=f"gh-feedback-{delivery}",
                    source="ats/greenhouse",
                    type=event_type,
                    time=self.clock.now(),
                    subject=person.candidate_id,
                    data=payload,
                )
            )
        elif kind == "click":
            hubspot.add_email_event(
                "CLICK", data["person"].email, now_ms, url="https://careers.acme.example/jobs"
            )
        elif kind == "open":
            hubspot.add_email_event("OPEN", data["person"].email, now_ms)
        elif kind == "unsubscribe":
            hubspot.add_unsubscribe(data["person"].email, now_ms)
        elif kind == "keep_me_posted":
            link = next(
                (
                    s["customProperties"].get("keep_me_posted_url")
                    for s in hubspot.state.sends.values()
                    if s["to"] == data["person"].email
                    and s["customProperties"].get("keep_me_posted_url")
                ),
                None,
            )
            if link is not None:
                path = link.split("/l/", 1)[1]
                async with session.get(f"{daemon_url}/l/{path}") as answer:
                    await answer.text()
        elif kind == "outage_start":
            hubspot.fail_next(503, times=1_000_000, path_prefix="/crm")
            hubspot.fail_next(503, times=1_000_000, path_prefix="/marketing")
        elif kind == "outage_end":
            hubspot.state.faults.clear()
            async with store.transaction() as conn:  # what `nurture dlq replay --all` does
                await queries.replay(conn, self.clock.now(), None)

    async def _report(
        self,
        store: Store,
        hubspot: Any,
        harvest: Any,
        slack: Any,
        smtp: Any,
        database: Path,
        seconds: float,
    ) -> None:
        async with store.read() as conn:
            steps = Counter(
                (r[0], r[1])
                for r in (
                    await conn.execute(
                        select(enrollments.c.sequence_id, enrollment_steps.c.step_id)
                        .join(enrollments, enrollments.c.id == enrollment_steps.c.enrollment_id)
                        .where(enrollment_steps.c.status == "fired")
                    )
                ).all()
            )
            exits = Counter(
                r[0]
                for r in (
                    await conn.execute(
                        select(enrollments.c.reason).where(enrollments.c.status == "exited")
                    )
                ).all()
            )
            alerts = await queries.all_alerts(conn)
            dead = await queries.dead_letters(conn)
            sent = (
                await conn.execute(
                    select(outbox.c.payload, outbox.c.finished_at).where(
                        outbox.c.action_type == "crm.send_email", outbox.c.status == "done"
                    )
                )
            ).all()
            suppressed_at = {
                str(email): str(created)
                for email, created in (
                    await conn.execute(select(suppressions.c.email, suppressions.c.created_at))
                ).all()
            }
        to_suppressed = 0
        for row in sent:
            email = str(row[0]["fields"].get("to", "")).lower()
            if email in suppressed_at and str(row[1]) > suppressed_at[email]:
                to_suppressed += 1
        touch = sorted(self.first_touch)
        p50 = statistics.median(touch) if touch else float("nan")
        p99 = touch[min(len(touch) - 1, int(len(touch) * 0.99))] if touch else float("nan")
        stats = hubspot.stats()
        print(
            "\nnurture demo: the shipped integration on simulators, "
            f"{self.people} candidates over {DAYS} simulated days in {seconds:.1f} s",
            file=self.out,
        )
        print(
            f"time to first touch (webhook -> welcome at the CRM): p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms over {len(touch)} applications",
            file=self.out,
        )
        print("touches sent per sequence step:", file=self.out)
        for (sequence, step), count in sorted(steps.items()):
            print(f"  {sequence:28} {step:32} {count}", file=self.out)
        print(
            "exits by reason: " + ", ".join(f"{r}: {c}" for r, c in sorted(exits.items())),
            file=self.out,
        )
        print(
            f"alerts fired: {len(alerts)} ("
            + ", ".join(f"{a['kind']} x{a['count']}" for a in alerts)
            + ")",
            file=self.out,
        )
        print(
            f"dead letters left: {len(dead)}; ATS write-backs: {harvest.stats()['notes']} "
            f"notes, {sum(len(v) for v in harvest.stats()['applied'].values())} tags; "
            f"interviewer emails: {len(smtp.messages)}",
            file=self.out,
        )
        print(
            f"duplicate CRM contacts: {stats['duplicate_emails']} (must be 0); contacts "
            f"{stats['contacts']}, emails sent {stats['sends']}",
            file=self.out,
        )
        print(
            f"emails to suppressed candidates after suppression: {to_suppressed} (must be 0)",
            file=self.out,
        )
        print(f"database for inspection: {database}", file=self.out)
        if stats["duplicate_emails"] or to_suppressed:
            raise SystemExit(1)


def main(repo: Path, out: TextIO = sys.stdout, workdir: Path | None = None) -> int:
    return asyncio.run(Demo(repo, workdir or repo / ".demo", out).run())
