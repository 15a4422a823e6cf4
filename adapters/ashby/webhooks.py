"""Ashby webhooks -> canonical events (contract README section 3).

Body ``{"action": <name>, "data": {...}}`` (plus ``webhookActionId``, see below); source
``ats/ashby``; ``subject`` the candidate id; ``data.raw`` the vendor ``data`` as sent.

| action | canonical type |
| --- | --- |
| applicationSubmit | ats.application.created |
| candidateStageChange | ats.application.stage_changed (+ .rejected when Archived) |
| candidateHire | ats.application.hired |
| candidateDelete, candidateMerge (the merged-away record) | ats.candidate.deleted |
| ping, every other action, unknown actions | ``Ignored`` |

Decisions:

- ``Event.id``: Ashby sends no delivery-id header. Its docs ("Common Payload Data") describe a
  body field ``webhookActionId``, the same across retries of one event and shared by the
  webhooks one change triggers (a hire also sends candidateStageChange and applicationUpdate),
  so the id is ``<webhookActionId>:<action>``: retries collapse, siblings stay distinct. Without
  that field (the contract examples have none) the id is ``sha256:<hex of the raw body>``: a
  redelivery resends the same bytes, so it de-duplicates; two different changes differ at least
  in ``updatedAt``.
- Ashby has no reject webhook: archiving an application is a move to the Archived stage and
  arrives as candidateStageChange with status ``Archived``. That delivery yields, with id
  suffix ``:rejected``, an ats.application.rejected whose ``rejection_reason`` is
  ``archiveReason`` (``text``, ``reasonType``), and then the faithful stage change. Ashby does
  not say which stage the application was archived from, so when the current stage is of type
  ``Archived`` the rejection's ``stage`` is null and the engine fills in the stage it last saw
  (Greenhouse and Lever report the stage a candidate was rejected at, and rules such as "Not
  Selected after the final round" read it). The rejection comes first so the engine still
  remembers that stage when it reads it.
- Status: Active -> active, Lead -> active with ``prospect`` true, Archived -> rejected,
  Hired -> hired; an unknown value falls back to what the action implies.
- Ashby gives one ``name``: ``first_name`` is its first word and ``last_name`` the rest (a
  heuristic for greetings; the full name stays in ``raw``).
- Webhook candidates carry no tags and no e-mail consent flag, so ``tags`` is empty and
  ``can_email``/``do_not_contact`` keep their defaults (true/false): consent for Ashby
  candidates must come from the CRM side (unsubscribes) or a later lookup.
- ``application.recruiter``: the hiring-team member with role "Recruiter", else
  ``creditedToUser``. ``job`` has only id and title (department and location come as ids).
- ``Event.time``: applicationSubmit -> ``createdAt``; stage change and hire -> ``updatedAt``;
  the rejection -> ``archivedAt``; missing -> the injected clock.

Unverified contract facts these mappings rest on:

- [P] the body shape and the event names (community code; an OpenAPI mirror of Ashby's spec
  agrees: application fields id, createdAt, updatedAt, status Hired/Archived/Active/Lead,
  candidate {id, name, primaryEmailAddress}, currentInterviewStage {id, title}, source {title},
  archiveReason, archivedAt, job {id, title}, creditedToUser, hiringTeam);
- [P] ``webhookActionId`` (vendor guide page only, absent from the contract examples);
- [P] candidateDelete ``data.candidate.id`` and candidateMerge ``data.deletedCandidate.id``;
- [U] the hiring-team role spelling "Recruiter" and that archiving fires candidateStageChange;
- [P] an archived application sits in a stage of ``type`` "Archived" (community tool
  descriptions of ``application.changeStage``: an archive reason is required "when moving to
  an archived stage").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
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
    load_json,
    normalise_email,
)
from engine import Event

SOURCE = "ats/ashby"

_APPLICATION_EVENTS: dict[str, str] = {
    "applicationSubmit": "ats.application.created",
    "candidateStageChange": "ats.application.stage_changed",
    "candidateHire": "ats.application.hired",
}

_STATUS: dict[str, Literal["active", "rejected", "hired"]] = {
    "Active": "active",
    "Lead": "active",
    "Archived": "rejected",
    "Hired": "hired",
}

_IGNORED: dict[str, str] = {
    "ping": "ping",
    "applicationUpdate": "application updates have no canonical event "
    "(stage changes and hires arrive as their own webhooks)",
    "interviewScheduleCreate": "interview schedules lack the candidate and application "
    "details an interview event needs",
    "interviewScheduleUpdate": "interview schedules lack the candidate and application "
    "details an interview event needs",
    "offerCreate": "offers have no canonical event",
    "offerUpdate": "offers have no canonical event",
    "offerDelete": "offers have no canonical event",
    "pushToHRIS": "HRIS pushes have no canonical event",
    "surveySubmit": "surveys have no canonical event",
}


def parse_webhook(
    headers: Mapping[str, str], body: bytes, *, clock: Clock = SYSTEM_CLOCK
) -> WebhookOutcome:
    """Normalise one verified Ashby delivery; raises ``PayloadError`` on a bad shape."""
    root = expect_object(load_json(body), "")
    action = root.text("action")
    action_id = root.opt_id("webhookActionId")
    if action_id is not None:
        event_id = f"{action_id}:{action}"
    else:
        event_id = f"sha256:{hashlib.sha256(body).hexdigest()}"
    if action in _APPLICATION_EVENTS:
        data = root.obj("data")
        return Accepted(events=application_events(action, data, event_id, clock))
    if action in ("candidateDelete", "candidateMerge"):
        data = root.obj("data")
        key = "candidate" if action == "candidateDelete" else "deletedCandidate"
        candidate = {"id": data.obj(key).id("id")}
        event = build_event(
            event_type="ats.candidate.deleted",
            event_id=event_id,
            source=SOURCE,
            time=first_time(clock=clock),
            subject=candidate["id"],
            data={"candidate": candidate, "raw": data.value},
        )
        return Accepted(events=(event,))
    reason = _IGNORED.get(action, f"unknown or unmapped Ashby action {action[:80]!r}")
    return Ignored(reason, event_id=event_id)


def application_events(
    action: str, data: JsonObject, event_id: str, clock: Clock
) -> tuple[Event, ...]:
    """The events of one application action (applicationSubmit, candidateStageChange,
    candidateHire) on ``data.application``; the poller builds its events here too."""
    app = data.obj("application")
    created_at = app.opt_time("createdAt")
    updated_at = app.opt_time("updatedAt")
    archived_at = app.opt_time("archivedAt")
    if action == "applicationSubmit":
        time = first_time(created_at, updated_at, clock=clock)
    else:
        time = first_time(updated_at, clock=clock)

    raw_status = app.opt_text("status")
    default: Literal["active", "hired"] = "hired" if action == "candidateHire" else "active"
    status = _STATUS.get(raw_status or "", default)
    candidate = _candidate(app.obj("candidate"))
    reason = app.opt_obj("archiveReason")
    application: dict[str, Any] = {
        "id": app.id("id"),
        "status": status,
        "prospect": raw_status == "Lead",
        "job": _job(app.opt_obj("job")),
        "stage": _stage(app.opt_obj("currentInterviewStage")),
        "previous_stage": None,
        "recruiter": _recruiter(app),
        "source": _source(app.opt_obj("source")),
        "applied_at": created_at,
        "rejected_at": archived_at if status == "rejected" else None,
        "hired_at": time if action == "candidateHire" else None,
        "rejection_reason": _rejection_reason(reason) if status == "rejected" else None,
    }
    payload = {"candidate": candidate, "application": application, "raw": data.value}
    events = [
        build_event(
            event_type=_APPLICATION_EVENTS[action],
            event_id=event_id,
            source=SOURCE,
            time=time,
            subject=candidate["id"],
            data=payload,
        )
    ]
    if action == "candidateStageChange" and status == "rejected":
        stage = app.opt_obj("currentInterviewStage")
        archived_stage = stage is not None and stage.opt_text("type") == "Archived"
        rejected_application = {**application, "stage": None} if archived_stage else application
        rejection = build_event(
            event_type="ats.application.rejected",
            event_id=f"{event_id}:rejected",
            source=SOURCE,
            time=first_time(archived_at, updated_at, clock=clock),
            subject=candidate["id"],
            data={**payload, "application": rejected_application},
        )
        events.insert(0, rejection)  # before the engine remembers the Archived stage
    return tuple(events)


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    parts = (name or "").split(None, 1)
    return (parts[0] if parts else None, parts[1] if len(parts) > 1 else None)


def _candidate(node: JsonObject) -> dict[str, Any]:
    first_name, last_name = _split_name(node.opt_text("name"))
    primary = node.opt_obj("primaryEmailAddress")
    addresses = [(e.opt_text("value"), e.opt_text("type")) for e in node.objects("emailAddresses")]
    primary_address = normalise_email(primary.opt_text("value")) if primary else None
    if primary_address is not None:
        addresses.insert(0, (primary_address, None))
    phone = node.opt_obj("primaryPhoneNumber")
    phone_number = phone.opt_text("value") if phone else None
    emails = email_list(addresses)
    return {
        "id": node.id("id"),
        "first_name": first_name,
        "last_name": last_name,
        "email": primary_address or (emails[0] if emails else None),
        "emails": emails,
        "phone": (phone_number.strip() or None) if phone_number else None,
    }


def _job(node: JsonObject | None) -> dict[str, Any] | None:
    if node is None:
        return None
    return {"id": node.id("id"), "title": node.text("title")}


def _stage(node: JsonObject | None) -> dict[str, Any] | None:
    if node is None:
        return None
    return {"id": node.opt_id("id"), "name": node.text("title")}


def _user(node: JsonObject) -> dict[str, Any]:
    names = [n for n in (node.opt_text("firstName"), node.opt_text("lastName")) if n]
    return {
        "id": node.opt_id("userId") or node.opt_id("id"),
        "name": " ".join(names) or node.opt_text("name"),
        "email": normalise_email(node.opt_text("email")),
    }


def _recruiter(app: JsonObject) -> dict[str, Any] | None:
    for member in app.objects("hiringTeam"):
        if (member.opt_text("role") or "").strip().lower() == "recruiter":
            return _user(member)
    credited = app.opt_obj("creditedToUser")
    return _user(credited) if credited is not None else None


def _source(node: JsonObject | None) -> str | None:
    return node.opt_text("title") if node is not None else None


def _rejection_reason(node: JsonObject | None) -> dict[str, Any] | None:
    if node is None:
        return None
    name = node.opt_text("text")
    if name is None or not name.strip():
        return None
    return {"name": name, "type": node.opt_text("reasonType")}
