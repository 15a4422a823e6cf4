"""The Greenhouse event mix the proof scenarios (and the load benchmark) post to the daemon.

``greenhouse_mix(count, seed)`` returns ``count`` webhook deliveries in posting order: new
applications (10% of them by people who applied before: two thirds under the same candidate
record, one third under a second, duplicate ATS record), stage changes, rejections (after the
final round some are "Not Selected": silver medalists), and 5% that the shipped rules must drop
(no email address, a "Do Not Contact" candidate, an action nurture does not map). A follow-up
names the delivery that must be acknowledged first (``after``), so an application's stage
change never overtakes it at any concurrency.

The ``Mix`` also carries the oracle the invariants are checked against: which addresses must
end with exactly one CRM contact, which must have none, and how many ATS records each person
has (a second record may legitimately get its own welcome sequence).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.greenhouse.payloads import application_payload

JOBS = [
    (501, "Data Engineer", "Data"),
    (502, "Senior Data Engineer", "Data"),
    (503, "Backend Engineer", "Platform"),
    (504, "Product Designer", "Design"),
    (505, "Site Reliability Engineer", "Platform"),
]
SHARES = {"application": 0.60, "stage": 0.20, "rejection": 0.15, "dropped": 0.05}
ACTIVITY_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPEAT_SHARE = 0.10


@dataclass(frozen=True)
class Delivery:
    id: str  # Greenhouse-Event-ID: the same on every retry, so a redelivery is recognised
    action: str
    body: bytes
    kind: str  # application | repeat | stage | rejection | dropped | unsubscribe
    email: str | None
    candidate_id: str
    after: str | None = None  # a delivery that must be acknowledged before this one is sent
    source: str = "greenhouse"


@dataclass
class Application:
    id: int
    candidate_id: str
    email: str
    first: str
    job: tuple[int, str, str]
    stage: str = "Application Review"
    last_delivery: str = ""
    open: bool = True


@dataclass
class Mix:
    deliveries: list[Delivery] = field(default_factory=list)
    expected_contacts: set[str] = field(default_factory=set)
    dropped_emails: set[str] = field(default_factory=set)
    records: Counter[str] = field(default_factory=Counter)  # ATS records per email
    silver_medalists: set[str] = field(default_factory=set)  # candidate ids

    def kinds(self) -> Counter[str]:
        return Counter(d.kind for d in self.deliveries)


def _payload(app: Application, status: str = "active", reason: str | None = None) -> dict[str, Any]:
    return application_payload(
        application_id=app.id,
        candidate_id=app.candidate_id,
        first_name=app.first,
        last_name="Proof",
        email=app.email,
        job=app.job,
        stage=app.stage,
        stage_id=7700 + len(app.stage),
        status=status,
        reason=reason,
        rejected_at="2026-03-09T09:00:00Z" if status == "rejected" else None,
    )


def _body(action: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"action": action, "payload": payload}).encode()


def greenhouse_mix(count: int, seed: int = 1, tag: str = "p") -> Mix:
    """``count`` deliveries; the same ``seed`` always gives the same mix."""
    rng = random.Random(seed)
    mix = Mix()
    applications: list[Application] = []
    people: list[Application] = []  # the first application of each person
    numbers = iter(range(1, 10**9))

    def delivery(kind: str, action: str, payload: dict[str, Any], app: Application) -> None:
        delivery_id = f"{tag}-{len(mix.deliveries)}"
        if isinstance(payload.get("application"), dict):
            # as Greenhouse's own: each delivery's activity moment differs, so two deliveries
            # are never the same signed bytes (identical ones are a replay, refused)
            moment = ACTIVITY_START + timedelta(seconds=len(mix.deliveries))
            payload["application"]["last_activity_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        mix.deliveries.append(
            Delivery(
                delivery_id,
                action,
                _body(action, payload),
                kind,
                app.email or None,
                app.candidate_id,
                after=app.last_delivery or None,
            )
        )
        app.last_delivery = delivery_id

    def new_application() -> None:
        n = next(numbers)
        job = rng.choice(JOBS)
        if people and rng.random() < REPEAT_SHARE:
            first = rng.choice(people)
            same_record = rng.random() < 2 / 3
            candidate_id = first.candidate_id if same_record else str(80_000_000 + n)
            app = Application(93_000_000 + n, candidate_id, first.email, first.first, job)
            if not same_record:
                mix.records[first.email] += 1
            kind = "repeat"
        else:
            email = f"cand{n:06d}-{tag}@proof.example.com"
            app = Application(93_000_000 + n, str(70_000_000 + n), email, f"C{n}", job)
            people.append(app)
            mix.records[email] += 1
            kind = "application"
        mix.expected_contacts.add(app.email)
        applications.append(app)
        delivery(kind, "new_candidate_application", _payload(app), app)

    def dropped() -> None:
        n = next(numbers)
        app = Application(93_000_000 + n, str(70_000_000 + n), "", f"D{n}", rng.choice(JOBS))
        roll = rng.random()
        if roll < 0.4:  # no address: the rule's condition is false
            delivery("dropped", "new_candidate_application", _payload(app), app)
        elif roll < 0.8:  # Do Not Contact: must get no contact and no email
            app.email = f"dnc{n:06d}-{tag}@proof.example.com"
            payload = _payload(app)
            payload["application"]["candidate"]["tags"] = ["Do Not Contact"]
            mix.dropped_emails.add(app.email)
            delivery("dropped", "new_candidate_application", payload, app)
        else:  # an action nurture does not map (answered 202)
            delivery("dropped", "offer_created", {"offer": {"id": n}}, app)

    def progress(kind: str) -> bool:
        open_apps = [a for a in applications if a.open]
        if not open_apps:
            return False
        app = rng.choice(open_apps[-200:])  # recent ones: follow-ups arrive while load runs
        if kind == "stage":
            app.stage = (
                "Interview Scheduled" if app.stage == "Application Review" else "Final Round"
            )
            delivery("stage", "candidate_stage_change", _payload(app), app)
            return True
        reason = "Not Selected" if app.stage == "Final Round" else "Not a fit"
        if reason == "Not Selected":
            mix.silver_medalists.add(app.candidate_id)
        app.open = False
        delivery("rejection", "reject_candidate", _payload(app, "rejected", reason), app)
        return True

    kinds, weights = zip(*SHARES.items(), strict=True)
    while len(mix.deliveries) < count:
        kind = rng.choices(kinds, weights)[0]
        if kind == "dropped":
            dropped()
        elif kind == "application" or not progress(kind):
            new_application()
    return mix


def hubspot_unsubscribe(contact_id: str, event_number: int, occurred: float | None = None) -> bytes:
    """A HubSpot webhook batch: the contact opted out of all email (hs_email_optout true)."""
    return json.dumps(
        [
            {
                "eventId": event_number,
                "subscriptionId": 2911005,
                "portalId": 44001234,
                "appId": 3301122,
                "occurredAt": int((occurred or time.time()) * 1000),
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
                "objectId": int(contact_id),
                "propertyName": "hs_email_optout",
                "propertyValue": "true",
                "changeSource": "EMAIL",
            }
        ]
    ).encode()
