"""Lever webhooks -> canonical events (contract README section 2.1), reading Lever's API.

Body ``{"triggeredAt": <epoch ms>, "event": <name>, "signature": <hex>, "token": <str>,
"data": {...}}`` [P]. ``signature`` = hex HMAC-SHA256(signatureToken, token + str(triggeredAt))
[P]; it is checked by ``adapters.signatures.LeverVerifier`` (``verify_and_parse`` runs it,
``parse_webhook`` assumes it already ran). ``data`` carries ids only [P] (``opportunityId``,
``candidateId`` = legacy alias of ``contactId``, ``fromStageId``/``toStageId``,
``fromArchived``/``toArchived`` with an archive-reason id) and is **not signed**, so it is used
as a pointer: the opportunity is read back from the API (``LeverReader``, implemented by
``adapters.lever.client.LeverClient``) and the event describes what Lever says now. Parsing is
therefore ``async`` and does I/O. An API answer without the documented shape is a
``PayloadError`` too (pointer under ``/opportunity`` or ``/posting``). An ``AdapterError`` from
a read escapes (the server should answer 5xx so that Lever retries; retry-on-5xx is [U]),
except 404 on the opportunity, which means it was deleted since: ``Ignored``.

| event | canonical type |
| --- | --- |
| applicationCreated | ats.application.created |
| candidateStageChange | ats.application.stage_changed |
| candidateArchiveChange, archived with the hired reason | ats.application.hired |
| candidateArchiveChange, archived with another reason | ats.application.rejected |
| candidateArchiveChange, un-archived (``toArchived`` null) | ``Ignored`` |
| candidateHired | ats.application.hired |
| candidateDeleted | ats.candidate.deleted (no read: the record is gone) |
| ``data`` empty ("test connection" [P]) | ``Ignored`` |
| interview*, contact*, anything else | ``Ignored`` |

Identity (see ``adapters.lever.client``): ``candidate.id`` and ``Event.subject`` are the Lever
**contact** id, ``application.id`` the **opportunity** id; source ``ats/lever``.

``Event.id``: ``lever:`` + hex SHA-256 of ``token``, ``triggeredAt`` and ``event`` joined by
newlines: a redelivery (same token and time) de-duplicates, two events signed with the same
token [U] do not collide. Exception: a hire is reported as ``lever:hired:<opportunity>:<archivedAt
ms>`` whichever webhook carries it, because a hire is also an archive change [U: whether Lever
sends both candidateHired and candidateArchiveChange for one hire], so it runs once. The poller
(``adapters.lever.poller``) uses the same id for hires.

Mapping decisions, chosen to give the same canonical shapes as ``adapters.greenhouse``:

- ``candidate.email``: first of ``emails[]`` (Lever has no address types), trimmed and
  lower-cased; ``emails`` all of them. ``first_name``/``last_name``: Lever has one ``name``;
  the first word is the first name, the rest the last name (None when one word).
- ``candidate.do_not_contact``: a tag equal to "Do Not Contact" (case-insensitive) **or**
  ``dataProtection.contact.allowed`` false [U field]; ``can_email`` keeps the latter alone.
- ``candidate.url``: ``urls.show`` [U]; ``created_at``: the opportunity's ``createdAt``;
  ``last_activity_at``: ``lastInteractionAt`` [U] else ``updatedAt``.
- ``application.stage``: the opportunity's current stage (expanded ``{id, text}`` [P], or an id
  resolved through ``GET /stages``). ``previous_stage`` on a stage change: ``fromStageId``
  resolved by name; unknown -> None (the engine fills it in from the stage it last saw).
- ``application.job``: the posting of the application named by ``data.applicationId`` [U] (else
  the first expanded application [P]) read with ``GET /postings/{id}`` [P]: title ``text``,
  department ``categories.department`` else ``categories.team``, location
  ``categories.location``, ``urls.show``; ``state`` published/internal -> open, closed -> closed,
  draft/pending/rejected -> draft [U mapping].
- ``application.prospect``: ``origin`` in ``PROSPECT_ORIGINS`` ("sourced": a sourcer added them,
  they did not apply) [P origin values]. ``recruiter``: the expanded ``owner`` [P]. ``source``:
  ``sources[0]``. ``applied_at``: the application's ``createdAt``, else the opportunity's.
- Archived: ``archived = {archivedAt, reason}`` [P]; the reason is read with
  ``GET /archive_reasons/{id}`` [P]. It is the hired reason when its ``type`` or ``status`` is
  "hired" [U: field name] or its ``text`` is in ``hired_reasons`` (default "Hired"). Otherwise
  ``rejection_reason = {name: text, type: None}`` (Lever reasons carry no "who rejected whom").
  ``rejected_at``/``hired_at``: ``archivedAt``.
- ``Event.time``: ``triggeredAt``; hires use ``archivedAt`` when known.
- ``data.raw``: ``{"event", "data", "opportunity"}`` as sent/read.
- candidateDeleted -> ats.candidate.deleted for the contact, which ends every sequence of the
  person. Whether Lever sends it when one opportunity of a contact with several is deleted is
  [U]; if so, that is broader than Lever's change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from adapters.normalise import (
    SYSTEM_CLOCK,
    Accepted,
    Clock,
    Ignored,
    JsonObject,
    PayloadError,
    WebhookOutcome,
    build_event,
    email_list,
    epoch_ms,
    expect_object,
    first_time,
    load_json,
    normalise_email,
)
from adapters.signatures import InboundRequest, LeverVerifier
from engine import AdapterRejected, Event

SOURCE = "ats/lever"
DO_NOT_CONTACT_TAGS: tuple[str, ...] = ("Do Not Contact",)
HIRED_REASONS: tuple[str, ...] = ("Hired",)
PROSPECT_ORIGINS: tuple[str, ...] = ("sourced",)

_POSTING_STATES: dict[str, str] = {
    "published": "open",
    "internal": "open",
    "closed": "closed",
    "draft": "draft",
    "pending": "draft",
    "rejected": "draft",
}

_IGNORED: dict[str, str] = {
    "interviewCreated": "interview webhooks carry too little for ats.interview.* [U shape]",
    "interviewUpdated": "interview webhooks carry too little for ats.interview.* [U shape]",
    "interviewDeleted": "interview webhooks carry too little for ats.interview.* [U shape]",
    "contactCreated": "contacts without an opportunity have no canonical event",
    "contactUpdated": "contact updates are not mapped (data shape [U])",
}


class LeverReader(Protocol):
    """The reads a webhook needs; ``LeverClient`` implements them."""

    async def get_opportunity(self, opportunity_id: str) -> dict[str, Any]: ...

    async def stage_name(self, stage_id: str) -> str | None: ...

    async def archive_reason(self, reason_id: str) -> dict[str, Any] | None: ...

    async def posting(self, posting_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class LeverOptions:
    """Account-specific vocabulary (all compared case-insensitively)."""

    do_not_contact_tags: Collection[str] = DO_NOT_CONTACT_TAGS
    hired_reasons: Collection[str] = HIRED_REASONS
    prospect_origins: Collection[str] = PROSPECT_ORIGINS

    def folded(self, values: Collection[str]) -> frozenset[str]:
        return frozenset(v.strip().lower() for v in values)


DEFAULT_OPTIONS = LeverOptions()


def delivery_id(token: str, triggered_at: str, event: str) -> str:
    """``lever:<sha256 hex of token, triggeredAt and event joined by newlines>``."""
    digest = hashlib.sha256(f"{token}\n{triggered_at}\n{event}".encode()).hexdigest()
    return f"lever:{digest}"


def hire_id(opportunity_id: str, archived_ms: int) -> str:
    """The id of a hire, shared by candidateHired, candidateArchiveChange and the poller."""
    return f"lever:hired:{opportunity_id}:{archived_ms}"


@dataclass(frozen=True)
class Snapshot:
    """One opportunity as canonical parts, read at one moment."""

    opportunity_id: str
    contact_id: str
    candidate: dict[str, Any]
    application: dict[str, Any]
    stage_id: str | None
    archived_ms: int | None
    hired: bool
    opportunity: dict[str, Any] = field(repr=False)

    @property
    def archived(self) -> bool:
        return self.application["status"] in ("rejected", "hired")

    def event(
        self,
        event_type: str,
        *,
        event_id: str,
        time: datetime,
        raw: Mapping[str, Any],
        previous_stage: Mapping[str, Any] | None = None,
    ) -> Event:
        """A canonical event of ``event_type`` from this snapshot."""
        application = dict(self.application)
        if event_type == "ats.application.hired":
            application["status"] = "hired"
            application["hired_at"] = application.get("hired_at") or time
            application["rejection_reason"] = None
            application["rejected_at"] = None
        elif event_type == "ats.application.rejected":
            application["status"] = "rejected"
            application["rejected_at"] = application.get("rejected_at") or time
        if previous_stage is not None:
            application["previous_stage"] = dict(previous_stage)
        return build_event(
            event_type=event_type,
            event_id=event_id,
            source=SOURCE,
            time=time,
            subject=self.contact_id,
            data={"candidate": self.candidate, "application": application, "raw": dict(raw)},
        )


async def snapshot_of(
    opportunity: Mapping[str, Any],
    reader: LeverReader,
    *,
    application_id: str | None = None,
    options: LeverOptions = DEFAULT_OPTIONS,
) -> Snapshot:
    """Canonical candidate and application of one opportunity (as the API answers it)."""
    opp = expect_object(dict(opportunity), "/opportunity")
    opportunity_id = opp.id("id")
    contact_id = _ref_id(opp, "contact")
    if contact_id is None:
        raise PayloadError(opp.at("contact"), "required contact id is missing")
    candidate = _candidate(opp, contact_id, options.folded(options.do_not_contact_tags))
    stage_id, stage = await _stage(opp, reader)

    archived = opp.opt_obj("archived")
    archived_ms: int | None = None
    reason: dict[str, Any] | None = None
    if archived is not None:
        archived_at = archived.get("archivedAt")
        if archived_at is not None:
            epoch_ms(archived_at, archived.at("archivedAt"))
            archived_ms = int(archived_at)
        reason = await _reason(archived, reader)
    hired = archived is not None and _is_hired(reason, options.folded(options.hired_reasons))
    archived_time = archived.opt_epoch_ms("archivedAt") if archived is not None else None

    app = _pick_application(opp, application_id)
    job = await _job(app, reader)
    origin = opp.opt_text("origin")
    sources = opp.strings("sources")
    applied_at = (app.opt_epoch_ms("createdAt") if app else None) or opp.opt_epoch_ms("createdAt")
    status = "active" if archived is None else ("hired" if hired else "rejected")
    application: dict[str, Any] = {
        "id": opportunity_id,
        "status": status,
        "prospect": (origin or "").strip().lower() in options.folded(options.prospect_origins),
        "job": job,
        "stage": stage,
        "previous_stage": None,
        "recruiter": _person(opp.get("owner"), opp.at("owner")),
        "source": sources[0] if sources else None,
        "applied_at": applied_at,
        "rejected_at": archived_time if status == "rejected" else None,
        "hired_at": archived_time if status == "hired" else None,
        "rejection_reason": (
            {"name": str(reason.get("text") or "Archived"), "type": None}
            if status == "rejected" and reason is not None
            else None
        ),
    }
    return Snapshot(
        opportunity_id=opportunity_id,
        contact_id=contact_id,
        candidate=candidate,
        application=application,
        stage_id=stage_id,
        archived_ms=archived_ms,
        hired=hired,
        opportunity=dict(opportunity),
    )


async def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    reader: LeverReader,
    clock: Clock = SYSTEM_CLOCK,
    options: LeverOptions = DEFAULT_OPTIONS,
) -> WebhookOutcome:
    """Normalise one **verified** Lever delivery; raises ``PayloadError`` on a bad shape."""
    root = expect_object(load_json(body), "")
    event_name = root.text("event")
    token = root.opt_text("token") or ""
    triggered_raw = root.get("triggeredAt")
    if isinstance(triggered_raw, str) and triggered_raw.isdigit():  # the verifier allows it
        triggered_raw = int(triggered_raw)
    triggered_at = (
        None if triggered_raw is None else epoch_ms(triggered_raw, root.at("triggeredAt"))
    )
    event_id = delivery_id(token, "" if triggered_raw is None else str(triggered_raw), event_name)
    time = first_time(triggered_at, clock=clock)
    data = root.opt_obj("data")
    if data is None or not data.value:
        return Ignored("test connection: a signed delivery without data", event_id=event_id)
    raw: dict[str, Any] = {"event": event_name, "data": data.value}

    if event_name == "candidateDeleted":
        contact_id = data.opt_id("contactId") or data.id("candidateId")
        event = build_event(
            event_type="ats.candidate.deleted",
            event_id=event_id,
            source=SOURCE,
            time=time,
            subject=contact_id,
            data={"candidate": {"id": contact_id}, "raw": raw},
        )
        return Accepted(events=(event,))
    if event_name not in (
        "applicationCreated",
        "candidateStageChange",
        "candidateArchiveChange",
        "candidateHired",
    ):
        reason = _IGNORED.get(event_name, f"unknown Lever event {event_name[:80]!r}")
        return Ignored(reason, event_id=event_id)

    opportunity_id = data.id("opportunityId")
    if event_name == "candidateArchiveChange" and data.get("toArchived") is None:
        return Ignored("un-archiving has no canonical event", event_id=event_id)
    try:
        opportunity = await reader.get_opportunity(opportunity_id)
    except AdapterRejected as exc:
        if exc.status == 404:
            return Ignored(f"opportunity {opportunity_id} no longer exists", event_id=event_id)
        raise
    snapshot = await snapshot_of(
        opportunity, reader, application_id=data.opt_id("applicationId"), options=options
    )
    raw["opportunity"] = snapshot.opportunity

    if event_name == "applicationCreated":
        event = snapshot.event("ats.application.created", event_id=event_id, time=time, raw=raw)
    elif event_name == "candidateStageChange":
        previous = await _previous_stage(data, reader)
        event = snapshot.event(
            "ats.application.stage_changed",
            event_id=event_id,
            time=time,
            raw=raw,
            previous_stage=previous,
        )
    elif event_name == "candidateHired" or snapshot.hired:
        event = _hire(snapshot, event_id, time, raw)
    elif not snapshot.archived:
        return Ignored(f"opportunity {opportunity_id} is no longer archived", event_id=event_id)
    else:
        event = snapshot.event("ats.application.rejected", event_id=event_id, time=time, raw=raw)
    return Accepted(events=(event,))


async def verify_and_parse(
    request: InboundRequest,
    *,
    verifier: LeverVerifier,
    reader: LeverReader,
    clock: Clock = SYSTEM_CLOCK,
    options: LeverOptions = DEFAULT_OPTIONS,
) -> WebhookOutcome:
    """``verifier.verify`` (raises ``SignatureError``), then ``parse_webhook``."""
    verifier.verify(request)
    return await parse_webhook(
        request.headers, request.body, reader=reader, clock=clock, options=options
    )


def _hire(snapshot: Snapshot, event_id: str, time: datetime, raw: Mapping[str, Any]) -> Event:
    if snapshot.archived_ms is not None:
        hired_at = epoch_ms(snapshot.archived_ms, "/opportunity/archived/archivedAt")
        return snapshot.event(
            "ats.application.hired",
            event_id=hire_id(snapshot.opportunity_id, snapshot.archived_ms),
            time=hired_at,
            raw=raw,
        )
    return snapshot.event("ats.application.hired", event_id=event_id, time=time, raw=raw)


# -- pieces ----------------------------------------------------------------------------------


def _ref_id(node: JsonObject, key: str) -> str | None:
    """An id given either as a string or as an expanded object with ``id``."""
    value = node.get(key)
    if isinstance(value, dict):
        return expect_object(value, node.at(key)).opt_id("id")
    return node.opt_id(key)


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    words = (name or "").split()
    if not words:
        return None, None
    return words[0], (" ".join(words[1:]) or None)


def _candidate(opp: JsonObject, contact_id: str, dnc: frozenset[str]) -> dict[str, Any]:
    first_name, last_name = _split_name(opp.opt_text("name"))
    emails = email_list((e, None) for e in opp.strings("emails"))
    phones = [p.opt_text("value") for p in opp.objects("phones")]
    tags = opp.strings("tags")
    allowed: bool | None = None
    protection = opp.opt_obj("dataProtection")
    contact = protection.opt_obj("contact") if protection is not None else None
    if contact is not None:
        allowed = contact.opt_bool("allowed")
    urls = opp.opt_obj("urls")
    return {
        "id": contact_id,
        "first_name": first_name,
        "last_name": last_name,
        "email": emails[0] if emails else None,
        "emails": emails,
        "phone": next((p.strip() for p in phones if p and p.strip()), None),
        "tags": tags,
        "can_email": allowed is not False,
        "do_not_contact": any(t.strip().lower() in dnc for t in tags) or allowed is False,
        "url": urls.opt_text("show") if urls is not None else None,
        "created_at": opp.opt_epoch_ms("createdAt"),
        "last_activity_at": opp.opt_epoch_ms("lastInteractionAt") or opp.opt_epoch_ms("updatedAt"),
    }


async def _stage(opp: JsonObject, reader: LeverReader) -> tuple[str | None, dict[str, Any] | None]:
    value = opp.get("stage")
    if value is None:
        return None, None
    if isinstance(value, dict):
        node = expect_object(value, opp.at("stage"))
        stage_id = node.opt_id("id")
        name = node.opt_text("text") or (await reader.stage_name(stage_id) if stage_id else None)
    else:
        stage_id = opp.id("stage")
        name = await reader.stage_name(stage_id)
    return stage_id, {"id": stage_id, "name": name or stage_id}


async def _previous_stage(data: JsonObject, reader: LeverReader) -> dict[str, Any] | None:
    stage_id = data.opt_id("fromStageId")
    if stage_id is None:
        return None
    name = await reader.stage_name(stage_id)
    return {"id": stage_id, "name": name} if name else None


async def _reason(archived: JsonObject, reader: LeverReader) -> dict[str, Any] | None:
    value = archived.get("reason")
    if isinstance(value, dict):  # expanded, should an account answer that way
        node = expect_object(value, archived.at("reason"))
        if node.opt_text("text"):
            return node.value
        reason_id = node.opt_id("id")
    else:
        reason_id = archived.opt_id("reason")
    return await reader.archive_reason(reason_id) if reason_id else None


def _is_hired(reason: Mapping[str, Any] | None, hired_names: frozenset[str]) -> bool:
    if reason is None:
        return False
    for key in ("type", "status"):
        value = reason.get(key)
        if isinstance(value, str) and value.strip().lower() == "hired":
            return True
    text = reason.get("text")
    return isinstance(text, str) and text.strip().lower() in hired_names


def _pick_application(opp: JsonObject, application_id: str | None) -> JsonObject | None:
    value = opp.get("applications")
    if value is None:
        return None
    pointer = opp.at("applications")
    if not isinstance(value, list):
        raise PayloadError(pointer, "expected an array")
    expanded = [
        expect_object(item, f"{pointer}/{index}")
        for index, item in enumerate(value)
        if isinstance(item, dict)
    ]
    if application_id is not None:
        for app in expanded:
            if app.opt_id("id") == application_id:
                return app
    return expanded[0] if expanded else None


async def _job(app: JsonObject | None, reader: LeverReader) -> dict[str, Any] | None:
    if app is None:
        return None
    posting_id = _ref_id(app, "posting")
    if posting_id is None:
        return None
    posting = await reader.posting(posting_id)
    if posting is None:
        return None
    node = expect_object(posting, "/posting")
    title = node.opt_text("text")
    if not title or not title.strip():
        return None
    categories = node.opt_obj("categories")
    urls = node.opt_obj("urls")
    state = (node.opt_text("state") or "").strip().lower()
    return {
        "id": node.opt_id("id") or posting_id,
        "title": title,
        "department": (
            (categories.opt_text("department") or categories.opt_text("team"))
            if categories is not None
            else None
        ),
        "location": categories.opt_text("location") if categories is not None else None,
        "status": _POSTING_STATES.get(state),
        "url": urls.opt_text("show") if urls is not None else None,
    }


def _person(value: Any, pointer: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"id": value, "name": None, "email": None}
    node = expect_object(value, pointer)
    return {
        "id": node.opt_id("id"),
        "name": node.opt_text("name"),
        "email": normalise_email(node.opt_text("email")),
    }
