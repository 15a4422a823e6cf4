"""``nurture test``: declarative tests of rules and sequences on a virtual clock.

A test file (``tests/rules/*.test.yaml``) states a start time, events at offsets from it, and
what must happen: emails sent (template, recipient, time), ATS write-backs, internal
notifications, enrolments. The runner uses the real rules, sequences, guardrails and store
(SQLite in a temporary file); only the vendors are recorders. Time jumps from one due moment
to the next, so 120 simulated days take well under a second; nothing sleeps.

    version: 1
    tests:
      - name: Sequence A fires on Day 0, 3 and 7
        start: 2026-03-02T09:00:00Z
        run_for: 10d
        events:
          - at: 0m
            type: ats.application.created
            data: {candidate: {...}, application: {...}}
        expect:
          sends:
            - {at: 0m, template: application-received, to: maya@example.com}
          ats: [{at: 0m, call: add_tag, candidate_id: "1", value: Silver Medalist}]
          notifications: [{at: 26h, to: ana@example.com, subject_contains: Feedback}]
          enrollments: [{sequence: new-applicant-welcome, status: completed}]
          only_listed_sends: true
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.config.loader import parse_file
from engine.config.types import Duration, parse_duration
from engine.events import Event
from engine.links import LinkSigner
from engine.runtime import Runtime
from engine.store.store import Store
from engine.store.tables import enrollments

TEST_LINKS = LinkSigner(b"nurture-test-link-secret", "https://nurture.test")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventSpec(_Spec):
    at: Duration
    type: str
    id: str | None = None
    source: str = "ats/test"
    data: dict[str, Any]


class SendSpec(_Spec):
    at: Duration
    template: str
    to: str | None = None


class AtsSpec(_Spec):
    at: Duration | None = None
    call: Literal["add_tag", "remove_tag", "add_note"]
    candidate_id: str
    value: str | None = Field(None, description="the tag, or text the note contains")


class NotificationSpec(_Spec):
    at: Duration | None = None
    to: str
    subject_contains: str | None = None


class EnrollmentSpec(_Spec):
    sequence: str
    status: Literal["active", "exited", "completed"]
    reason_contains: str | None = None


class Expectations(_Spec):
    sends: list[SendSpec] = Field(default_factory=list)
    only_listed_sends: bool = True
    ats: list[AtsSpec] = Field(default_factory=list)
    notifications: list[NotificationSpec] = Field(default_factory=list)
    enrollments: list[EnrollmentSpec] = Field(default_factory=list)


class TestCase(_Spec):
    name: str
    start: datetime
    run_for: Duration
    events: list[EventSpec] = Field(min_length=1)
    expect: Expectations


class TestFile(_Spec):
    version: Literal[1]
    tests: list[TestCase] = Field(min_length=1)


# -- recording vendors ----------------------------------------------------------------------


@dataclass
class Recorder:
    clock: ManualClock
    sends: list[dict[str, Any]] = field(default_factory=list)
    ats: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    contacts: dict[str, str] = field(default_factory=dict)
    templates_by_email_id: dict[str, str] = field(default_factory=dict)

    # CrmPort
    async def search_contact_by_email(self, email: str) -> str | None:
        return self.contacts.get(email)

    async def upsert_contact(self, email: str, properties: dict[str, str]) -> tuple[str, bool]:
        if email in self.contacts:
            return self.contacts[email], False
        self.contacts[email] = str(len(self.contacts) + 1)
        return self.contacts[email], True

    async def update_contact(self, contact_id: str, properties: dict[str, str]) -> None:
        return None

    async def add_to_list(self, list_name: str, contact_id: str) -> None:
        return None

    async def send_transactional(
        self, email_id: str, to: str, send_id: str, variables: dict[str, str]
    ) -> dict[str, Any]:
        if any(s["send_id"] == send_id for s in self.sends):
            return {"status": "DUPLICATE_SEND_ID"}
        self.sends.append(
            {
                "at": self.clock.now(),
                "template": self.templates_by_email_id.get(email_id, email_id),
                "to": to,
                "send_id": send_id,
                "variables": variables,
            }
        )
        return {"status": "PENDING"}

    # AtsPort
    async def add_tag(self, candidate_id: str, tag: str) -> None:
        self.ats.append(
            {"at": self.clock.now(), "call": "add_tag", "candidate_id": candidate_id, "value": tag}
        )

    async def remove_tag(self, candidate_id: str, tag: str) -> None:
        self.ats.append(
            {
                "at": self.clock.now(),
                "call": "remove_tag",
                "candidate_id": candidate_id,
                "value": tag,
            }
        )

    async def add_note(self, candidate_id: str, body: str, visibility: str) -> None:
        self.ats.append(
            {
                "at": self.clock.now(),
                "call": "add_note",
                "candidate_id": candidate_id,
                "value": body,
            }
        )

    # NotifierPort
    async def email(self, to: list[str], subject: str, text: str) -> None:
        for address in to:
            self.notifications.append(
                {"at": self.clock.now(), "to": address, "subject": subject, "text": text}
            )

    async def slack(self, target: str | None, text: str) -> None:
        self.notifications.append(
            {"at": self.clock.now(), "to": f"slack:{target}", "subject": text, "text": text}
        )


# -- running --------------------------------------------------------------------------------


@dataclass
class CaseResult:
    file: str
    name: str
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def load_test_file(path: Path) -> tuple[TestFile | None, list[str]]:
    document, problems = parse_file(path)
    if document is None or problems:
        return None, [p.format_text() for p in problems]
    try:
        return TestFile.model_validate(document.data), []
    except ValidationError as exc:
        out = []
        for error in exc.errors():
            pointer = "/" + "/".join(str(part) for part in error["loc"])
            line, column = document.position(pointer)
            out.append(f"{path}:{line}:{column}: {pointer}: {error['msg']}")
        return None, out


def _offset(start: datetime, at: datetime) -> str:
    delta = at - start
    days, rest = divmod(int(delta.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(
        f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n
    )
    return f"+{text or '0s'} ({at:%a %Y-%m-%d %H:%M} UTC)"


async def run_case(config: ConfigSet, case: TestCase, file: str) -> CaseResult:
    start = case.start
    clock = ManualClock(start)
    recorder = Recorder(clock)
    recorder.templates_by_email_id = {t.crm_email_id: t.id for t in config.templates.values()}
    end = start + parse_duration(case.run_for)
    with tempfile.TemporaryDirectory(prefix="nurture-test-") as folder:
        store = await Store.open(f"sqlite:///{Path(folder) / 'test.db'}")
        try:
            runtime = Runtime.build(
                store,
                config,
                clock,
                recorder,
                [],
                ats=recorder,
                notifier=recorder,
                links=TEST_LINKS,
            )
            await _travel(runtime, store, clock, case, end)
            async with store.read() as conn:
                rows = (await conn.execute(select(enrollments))).mappings().all()
        finally:
            await store.close()
    failures = _compare(case, recorder, [dict(r) for r in rows], start)
    return CaseResult(file, case.name, failures)


async def _travel(
    runtime: Runtime, store: Store, clock: ManualClock, case: TestCase, end: datetime
) -> None:
    from engine.store import queries
    from engine.store.tables import enrollment_steps

    pending = sorted(
        ((case.start + parse_duration(e.at), n, e) for n, e in enumerate(case.events)),
        key=lambda item: (item[0], item[1]),
    )
    while True:
        while pending and pending[0][0] <= clock.now():
            _, number, spec = pending.pop(0)
            await runtime.intake.accept(
                Event(
                    id=spec.id or f"test-event-{number}",
                    source=spec.source,
                    type=spec.type,
                    time=clock.now(),
                    subject=str((spec.data.get("candidate") or {}).get("id"))
                    if (spec.data.get("candidate") or {}).get("id")
                    else None,
                    data=spec.data,
                )
            )
        for _ in range(1000):  # run everything due now, until nothing moves
            fired = await runtime.steps.run_due()
            ran = await runtime.dispatcher.run_once()
            if not fired and not ran:
                break
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
            m for m in (step_due, action_due, pending[0][0] if pending else None) if m is not None
        ]
        upcoming = min(moments) if moments else None
        if upcoming is None or upcoming > end:
            return
        clock.set(max(upcoming, clock.now()))


def _compare(
    case: TestCase, recorder: Recorder, rows: list[dict[str, Any]], start: datetime
) -> list[str]:
    failures: list[str] = []
    sends = list(recorder.sends)
    for expected in case.expect.sends:
        due = start + parse_duration(expected.at)
        match = next(
            (
                s
                for s in sends
                if s["template"] == expected.template
                and (expected.to is None or s["to"] == expected.to)
                and s["at"] == due
            ),
            None,
        )
        if match is None:
            seen = [
                f"{s['template']} to {s['to']} at {_offset(start, s['at'])}"
                for s in sends
                if s["template"] == expected.template
            ] or ["nothing with that template"]
            failures.append(
                f"expected send {expected.template} to {expected.to or 'anyone'} at "
                f"{_offset(start, due)}; actual: {'; '.join(seen)}"
            )
        else:
            sends.remove(match)
    if case.expect.only_listed_sends:
        for extra in sends:
            failures.append(
                f"unexpected send {extra['template']} to {extra['to']} at "
                f"{_offset(start, extra['at'])}"
            )
    for ats in case.expect.ats:
        when: datetime | None = start + parse_duration(ats.at) if ats.at else None
        if not any(
            a["call"] == ats.call
            and a["candidate_id"] == ats.candidate_id
            and (ats.value is None or ats.value in a["value"])
            and (when is None or a["at"] == when)
            for a in recorder.ats
        ):
            got = [
                f"{a['call']}({a['candidate_id']}, {a['value']!r}) at {_offset(start, a['at'])}"
                for a in recorder.ats
            ] or ["no ATS calls"]
            failures.append(
                f"expected ATS {ats.call}({ats.candidate_id}, {ats.value!r})"
                f"{' at ' + _offset(start, when) if when else ''}; actual: " + "; ".join(got)
            )
    for note in case.expect.notifications:
        when = start + parse_duration(note.at) if note.at else None
        if not any(
            n["to"] == note.to
            and (when is None or n["at"] == when)
            and (note.subject_contains is None or note.subject_contains in n["subject"])
            for n in recorder.notifications
        ):
            got = [
                f"to {n['to']} {n['subject']!r} at {_offset(start, n['at'])}"
                for n in recorder.notifications
            ] or ["no notifications"]
            failures.append(
                f"expected notification to {note.to}"
                f"{' at ' + _offset(start, when) if when else ''}; actual: " + "; ".join(got)
            )
    for enrollment in case.expect.enrollments:
        if not any(
            r["sequence_id"] == enrollment.sequence
            and r["status"] == enrollment.status
            and (
                enrollment.reason_contains is None
                or enrollment.reason_contains in (r["reason"] or "")
            )
            for r in rows
        ):
            got = [f"{r['sequence_id']}: {r['status']} ({r['reason']})" for r in rows]
            failures.append(
                f"expected enrolment {enrollment.sequence} {enrollment.status}"
                f"{' (' + enrollment.reason_contains + ')' if enrollment.reason_contains else ''}"
                f"; actual: {'; '.join(got) or 'no enrolments'}"
            )
    return failures
