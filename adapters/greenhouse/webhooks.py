"""Greenhouse Recruiting webhooks -> canonical events (contract README section 1.1).

Body ``{"action": <name>, "payload": {...}}``; source ``ats/greenhouse``; ``Event.id`` is the
``Greenhouse-Event-ID`` delivery header; ``subject`` the candidate id as a string;
``data.raw`` the vendor ``payload`` as sent.

| action | canonical type |
| --- | --- |
| new_candidate_application, new_prospect_application | ats.application.created |
| candidate_stage_change | ats.application.stage_changed |
| reject_candidate | ats.application.rejected |
| hire_candidate | ats.application.hired |
| update_candidate | ats.candidate.updated |
| delete_candidate, merge_candidate (the merged-away record) | ats.candidate.deleted |
| candidate_anonymized | ats.candidate.anonymized |
| everything else (unreject, unhire, offers, jobs, interviews, ping, unknown) | ``Ignored`` |

Decisions:

- ``previous_stage`` stays ``None``: Greenhouse sends only the new stage; the engine fills it
  in from the stage it last saw for the application.
- ``candidate.email``: the first ``personal`` address, else the first address, trimmed and
  lower-cased; ``emails`` holds every address the same way.
- ``candidate.do_not_contact`` is true when a tag equals "Do Not Contact" (case-insensitive)
  **or** ``can_email`` is false: the shipped rules gate on ``do_not_contact`` alone, and an
  address Greenhouse says must not be e-mailed must not get nurture mail. ``can_email`` keeps
  the vendor's value, so a rule can still tell the two apart.
- ``application.job`` is ``jobs[0]`` (prospects may have none). ``jobs[].url`` is the
  recruiter-only job page, not a posting, so it is left in ``raw`` and ``job.url`` stays unset.
- ``application.recruiter`` is ``candidate.recruiter``, else ``application.credited_to``.
- ``Event.time``: created -> ``applied_at``; stage change -> ``last_activity_at``;
  rejected -> ``rejected_at``; hired -> ``offer.resolved_at``; then ``last_activity_at``;
  candidate events (which carry no event time) and anything missing -> the injected clock.
- ``application.status`` outside active/rejected/hired (Harvest also knows ``converted``)
  falls back to what the action implies, so an unexpected value does not make Greenhouse
  retry a delivery for 15 hours.
- merge_candidate is mapped to ats.candidate.deleted because that is what Greenhouse itself
  sends for a merge when no merge webhook is configured; ``raw.person.new_candidate_id`` names
  the surviving record.
- A missing ``Greenhouse-Event-ID`` (documented as always sent) falls back to
  ``sha256:<hex of the body>`` so that a redelivery still de-duplicates.

Unverified contract facts these mappings rest on:

- [U] the body of the creation ping (we ignore action ``ping`` whatever its payload);
- [U] ``candidate.last_activity`` on update_candidate (not in the documented example; taken
  when present, else ``last_activity_at`` of the application for application events);
- [U] the job ``status`` vocabulary (open/closed/draft kept, anything else dropped).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Literal

from adapters.normalise import (
    SYSTEM_CLOCK,
    Accepted,
    Clock,
    Ignored,
    JsonObject,
    WebhookOutcome,
    build_event,
    email_list,
    expect_object,
    first_time,
    header,
    load_json,
    normalise_email,
    primary_email,
)
from engine import Event

SOURCE = "ats/greenhouse"
DELIVERY_ID_HEADER = "Greenhouse-Event-ID"
DO_NOT_CONTACT_TAGS: tuple[str, ...] = ("Do Not Contact",)

APPLICATION_EVENTS: dict[str, str] = {
    "new_candidate_application": "ats.application.created",
    "new_prospect_application": "ats.application.created",
    "candidate_stage_change": "ats.application.stage_changed",
    "reject_candidate": "ats.application.rejected",
    "hire_candidate": "ats.application.hired",
}

_STATUS_IMPLIED: dict[str, Literal["active", "rejected", "hired"]] = {
    "reject_candidate": "rejected",
    "hire_candidate": "hired",
}

_IGNORED: dict[str, str] = {
    "ping": "ping: Greenhouse checks that the endpoint answers",
    "unreject_candidate": "un-rejection has no canonical event",
    "unhire_candidate": "un-hiring has no canonical event",
    "delete_application": "application deletion has no canonical event",
    "application_updated": "application updates have no canonical event",
    "offer_created": "offers have no canonical event",
    "offer_approved": "offers have no canonical event",
    "offer_updated": "offers have no canonical event",
    "offer_deleted": "offers have no canonical event",
    "interview_deleted": "carries only the interview id, too little for ats.interview.cancelled",
    "scorecard_deleted": "scorecard deletion has no canonical event",
}


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    clock: Clock = SYSTEM_CLOCK,
    do_not_contact_tags: Collection[str] = DO_NOT_CONTACT_TAGS,
) -> WebhookOutcome:
    """Normalise one verified Greenhouse delivery; raises ``PayloadError`` on a bad shape."""
    root = expect_object(load_json(body), "")
    action = root.text("action")
    event_id = header(headers, DELIVERY_ID_HEADER) or f"sha256:{hashlib.sha256(body).hexdigest()}"
    dnc = do_not_contact_set(do_not_contact_tags)
    if action in APPLICATION_EVENTS:
        payload = root.obj("payload")
        return Accepted(events=(_application_event(action, payload, event_id, clock, dnc),))
    if action == "update_candidate":
        payload = root.obj("payload")
        cand = payload.obj("candidate")
        candidate = _candidate(cand, dnc=dnc, last_activity_at=cand.opt_time("last_activity"))
        time = first_time(cand.opt_time("updated_at"), clock=clock)
        return _candidate_event("ats.candidate.updated", candidate, payload, event_id, time)
    if action in ("delete_candidate", "merge_candidate"):
        payload = root.obj("payload")
        candidate = _candidate(payload.obj("person"), dnc=dnc, last_activity_at=None)
        time = first_time(clock=clock)
        return _candidate_event("ats.candidate.deleted", candidate, payload, event_id, time)
    if action == "candidate_anonymized":
        payload = root.obj("payload")
        payload.strings("anonymized_fields")
        candidate = {"id": payload.id("candidate_id")}
        time = first_time(clock=clock)
        return _candidate_event("ats.candidate.anonymized", candidate, payload, event_id, time)
    reason = _IGNORED.get(action, f"unknown Greenhouse action {action[:80]!r}")
    return Ignored(reason, event_id=event_id)


def _candidate_event(
    event_type: str,
    candidate: dict[str, Any],
    payload: JsonObject,
    event_id: str,
    time: datetime,
) -> Accepted:
    event = build_event(
        event_type=event_type,
        event_id=event_id,
        source=SOURCE,
        time=time,
        subject=candidate["id"],
        data={"candidate": candidate, "raw": payload.value},
    )
    return Accepted(events=(event,))


def _application_event(
    action: str, payload: JsonObject, event_id: str, clock: Clock, dnc: frozenset[str]
) -> Event:
    time, candidate, application = application_records(
        action, payload.obj("application"), clock, dnc
    )
    return build_event(
        event_type=APPLICATION_EVENTS[action],
        event_id=event_id,
        source=SOURCE,
        time=time,
        subject=candidate["id"],
        data={"candidate": candidate, "application": application, "raw": payload.value},
    )


def do_not_contact_set(tags: Collection[str] = DO_NOT_CONTACT_TAGS) -> frozenset[str]:
    """The tags that mean "do not contact", compared case-insensitively."""
    return frozenset(tag.strip().lower() for tag in tags)


def application_records(
    action: str, app: JsonObject, clock: Clock, dnc: frozenset[str]
) -> tuple[datetime, dict[str, Any], dict[str, Any]]:
    """Event time, canonical candidate and application of one application object with its
    ``candidate`` nested (as webhooks send it), read as the application ``action`` implies.

    The Harvest poller builds the same nesting from list answers, so both paths share this.
    """
    cand = app.obj("candidate")
    applied_at = app.opt_time("applied_at")
    rejected_at = app.opt_time("rejected_at")
    last_activity_at = app.opt_time("last_activity_at")
    offer = app.opt_obj("offer")
    resolved_at = offer.opt_time("resolved_at") if offer is not None else None

    if action in ("new_candidate_application", "new_prospect_application"):
        time = first_time(applied_at, last_activity_at, clock=clock)
    elif action == "reject_candidate":
        time = first_time(rejected_at, last_activity_at, clock=clock)
    elif action == "hire_candidate":
        time = first_time(resolved_at, last_activity_at, clock=clock)
    else:
        time = first_time(last_activity_at, clock=clock)

    candidate = _candidate(
        cand, dnc=dnc, last_activity_at=cand.opt_time("last_activity") or last_activity_at
    )
    prospect = app.opt_bool("prospect")
    application: dict[str, Any] = {
        "id": app.id("id"),
        "status": _status(action, app.opt_text("status")),
        "prospect": prospect if prospect is not None else action == "new_prospect_application",
        "job": _job(app),
        "stage": _stage(app.opt_obj("current_stage")),
        "previous_stage": None,
        "recruiter": _person(cand.opt_obj("recruiter") or app.opt_obj("credited_to")),
        "source": _source(app.opt_obj("source")),
        "applied_at": applied_at,
        "rejected_at": rejected_at,
        "hired_at": (resolved_at or time) if action == "hire_candidate" else None,
        "rejection_reason": _rejection_reason(app.opt_obj("rejection_reason")),
    }
    return time, candidate, application


def _status(action: str, value: str | None) -> Literal["active", "rejected", "hired"]:
    known: dict[str, Literal["active", "rejected", "hired"]] = {
        "active": "active",
        "rejected": "rejected",
        "hired": "hired",
    }
    return known.get(value or "") or _STATUS_IMPLIED.get(action, "active")


def _candidate(
    node: JsonObject, *, dnc: frozenset[str], last_activity_at: datetime | None
) -> dict[str, Any]:
    addresses = [(e.opt_text("value"), e.opt_text("type")) for e in node.objects("email_addresses")]
    phones = [p.opt_text("value") for p in node.objects("phone_numbers")]
    tags = node.strings("tags")
    can_email = node.opt_bool("can_email")
    tagged_dnc = any(tag.strip().lower() in dnc for tag in tags)
    return {
        "id": node.id("id"),
        "first_name": node.opt_text("first_name"),
        "last_name": node.opt_text("last_name"),
        "email": primary_email(addresses, preferred_type="personal"),
        "emails": email_list(addresses),
        "phone": next((p.strip() for p in phones if p and p.strip()), None),
        "tags": tags,
        "can_email": can_email is not False,
        "do_not_contact": tagged_dnc or can_email is False,
        "url": node.opt_text("url"),
        "created_at": node.opt_time("created_at"),
        "last_activity_at": last_activity_at,
    }


def _job(app: JsonObject) -> dict[str, Any] | None:
    jobs = app.objects("jobs")
    if not jobs:
        return None
    job = jobs[0]
    departments = job.objects("departments")
    offices = job.objects("offices")
    location = None
    if offices:
        location = offices[0].opt_text("location") or offices[0].opt_text("name")
    status = job.opt_text("status")
    return {
        "id": job.id("id"),
        "title": job.text("name"),
        "department": departments[0].opt_text("name") if departments else None,
        "location": location,
        "status": status if status in ("open", "closed", "draft") else None,
    }


def _stage(node: JsonObject | None) -> dict[str, Any] | None:
    if node is None:
        return None
    return {"id": node.opt_id("id"), "name": node.text("name")}


def _person(node: JsonObject | None) -> dict[str, Any] | None:
    if node is None:
        return None
    return {
        "id": node.opt_id("id"),
        "name": node.opt_text("name"),
        "email": normalise_email(node.opt_text("email")),
    }


def _source(node: JsonObject | None) -> str | None:
    if node is None:
        return None
    return node.opt_text("name") or node.opt_text("public_name")


def _rejection_reason(node: JsonObject | None) -> dict[str, Any] | None:
    if node is None:
        return None
    kind = node.opt_obj("type")
    return {"name": node.text("name"), "type": kind.opt_text("name") if kind else None}
