"""HubSpot e-mail engagement and subscription changes, polled -> canonical events.

HubSpot has no webhook for e-mail opens, clicks or unsubscribes (contract README 4.5), so a
poller reads two legacy endpoints (section 4.6) and hands each response body here. These
functions are pure: the poller owns paging (``PolledPage.has_more``/``offset``) and I/O.

- ``GET /email/public/v1/events`` (``parse_email_events``): ``type`` OPEN ->
  crm.email.opened, CLICK -> crm.email.clicked, any other type (DELIVERED, BOUNCE, ...) is
  skipped as ``Ignored``; ``Event.id`` is ``email-event:<id>``.
- ``GET /email/public/v1/subscriptions/timeline`` (``parse_subscription_timeline``): each
  change with ``change`` UNSUBSCRIBED -> crm.contact.unsubscribed, others (SUBSCRIBED,
  BOUNCED, ...) skipped; ``Event.id`` is
  ``subscription-change:<causedByEvent.id>:<subscriptionId, else changeType>``.

Decisions:

- Source ``crm/hubspot``; ``subject`` is unset (the ATS candidate id is not known here; the
  engine adds ``candidate`` from its ATS<->CRM identity link). ``contact.email`` is the
  ``recipient``, trimmed and lower-cased; ``contact.id`` is unknown and left unset.
- ``email.id`` is ``sentBy.id``, the id of the SENT event, i.e. of the one message to this
  recipient, so an open and a click of the same message share it; without ``sentBy`` it is the
  engagement event's own id. ``email.url`` is the clicked link (CLICK only); ``email.subject``
  is set when HubSpot includes it; ``email.template`` stays unset (``emailCampaignId`` is not
  a nurture template id; it stays in ``raw``).
- An unsubscribe with ``changeType`` PORTAL_STATUS (opted out of all e-mail) maps too, with no
  ``subscription.id``. ``subscription.source`` is the change's ``source``; ``occurred_at`` is
  ``causedByEvent.created``, else the entry's ``timestamp``. Without ``causedByEvent.id`` the
  id falls back to a hash of recipient, timestamp and portal, so re-polling stays idempotent.
- ``data.raw`` is the vendor item (for an unsubscribe: the change, plus ``recipient``,
  ``portalId`` and ``timestamp`` of its entry).

Unverified contract facts these mappings rest on:

- [U] the list envelope of the events endpoint (``hasMore``/``offset``/``events``), the type
  names OPEN/CLICK and ``url`` on CLICK (the event fields themselves are [V]);
- [V] the timeline shape, but [U] which ``change``/``changeType`` pairs HubSpot emits besides
  the documented examples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.normalise import (
    Ignored,
    JsonObject,
    PayloadError,
    build_event,
    expect_object,
    load_json,
    normalise_email,
)
from engine import Event

SOURCE = "crm/hubspot"

EMAIL_EVENT_TYPES: dict[str, str] = {"OPEN": "crm.email.opened", "CLICK": "crm.email.clicked"}


@dataclass(frozen=True)
class PolledPage:
    """One response page: the events, what was skipped and why, and where to continue."""

    events: tuple[Event, ...]
    skipped: tuple[Ignored, ...]
    has_more: bool
    offset: str | None
    # the latest time the endpoint filters on (``created``, a timeline entry's ``timestamp``)
    # of any item, skipped ones included: the poller's cursor passes them too
    newest: datetime | None = None


def parse_email_events(body: bytes) -> PolledPage:
    """A ``GET /email/public/v1/events`` response body; raises ``PayloadError`` on a bad shape."""
    root = expect_object(load_json(body), "")
    items = root.objects("events")
    return _page(root, [email_event(item) for item in items], _latest(items, "created"))


def parse_subscription_timeline(body: bytes) -> PolledPage:
    """A ``GET /email/public/v1/subscriptions/timeline`` response body."""
    root = expect_object(load_json(body), "")
    results: list[Event | Ignored] = []
    entries = root.objects("timeline")
    for entry in entries:
        results.extend(subscription_changes(entry))
    return _page(root, results, _latest(entries, "timestamp"))


def email_event(item: JsonObject) -> Event | Ignored:
    """One item of the e-mail events list: an engagement event, or ``Ignored``."""
    kind = item.text("type")
    hubspot_id = item.id("id")
    event_type = EMAIL_EVENT_TYPES.get(kind)
    if event_type is None:
        return Ignored(
            f"e-mail event type {kind[:40]!r} is not mapped", f"email-event:{hubspot_id}"
        )
    created = item.opt_epoch_ms("created")
    if created is None:
        raise PayloadError(item.at("created"), "required timestamp is missing")
    sent_by = item.opt_obj("sentBy")
    message_id = sent_by.opt_id("id") if sent_by is not None else None
    return build_event(
        event_type=event_type,
        event_id=f"email-event:{hubspot_id}",
        source=SOURCE,
        time=created,
        subject=None,
        data={
            "contact": {"email": _recipient(item)},
            "email": {
                "id": message_id or hubspot_id,
                "subject": item.opt_text("subject"),
                "url": item.opt_text("url") if kind == "CLICK" else None,
                "occurred_at": created,
            },
            "raw": item.value,
        },
    )


def subscription_changes(entry: JsonObject) -> list[Event | Ignored]:
    """Every change of one timeline entry: unsubscribes as events, the rest ``Ignored``."""
    recipient = _recipient(entry)
    timestamp = entry.opt_epoch_ms("timestamp")
    fallback_key = hashlib.sha256(
        f"{recipient}|{entry.get('timestamp')}|{entry.get('portalId')}".encode()
    ).hexdigest()[:32]
    results: list[Event | Ignored] = []
    for change in entry.objects("changes"):
        kind = change.text("change")
        caused = change.opt_obj("causedByEvent")
        subscription_id = change.opt_id("subscriptionId")
        change_type = change.opt_text("changeType")
        cause_id = caused.opt_id("id") if caused is not None else None
        scope = subscription_id or change_type or "ALL"
        event_id = f"subscription-change:{cause_id or fallback_key}:{scope}"
        if kind != "UNSUBSCRIBED":
            results.append(Ignored(f"subscription change {kind[:40]!r} is not mapped", event_id))
            continue
        occurred_at = (caused.opt_epoch_ms("created") if caused is not None else None) or timestamp
        if occurred_at is None:
            raise PayloadError(entry.at("timestamp"), "required timestamp is missing")
        raw: dict[str, Any] = {
            **change.value,
            "recipient": entry.get("recipient"),
            "portalId": entry.get("portalId"),
            "timestamp": entry.get("timestamp"),
        }
        results.append(
            build_event(
                event_type="crm.contact.unsubscribed",
                event_id=event_id,
                source=SOURCE,
                time=occurred_at,
                subject=None,
                data={
                    "contact": {"email": recipient},
                    "subscription": {
                        "id": subscription_id,
                        "source": change.opt_text("source"),
                        "occurred_at": occurred_at,
                    },
                    "raw": raw,
                },
            )
        )
    return results


def _recipient(item: JsonObject) -> str:
    address = normalise_email(item.text("recipient"))
    if address is None:  # pragma: no cover - text() refuses blank strings
        raise PayloadError(item.at("recipient"), "required string is missing or empty")
    return address


def _latest(items: list[JsonObject], key: str) -> datetime | None:
    """The latest readable ``key`` (epoch ms) among ``items``; unreadable ones are passed over."""
    stamps = [
        value
        for item in items
        if isinstance(value := item.get(key), int | float) and not isinstance(value, bool)
    ]
    if not stamps:
        return None
    try:
        return datetime.fromtimestamp(max(stamps) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _page(
    root: JsonObject, results: list[Event | Ignored], newest: datetime | None = None
) -> PolledPage:
    offset = root.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, str | int):
        offset = None
    return PolledPage(
        events=tuple(r for r in results if isinstance(r, Event)),
        skipped=tuple(r for r in results if isinstance(r, Ignored)),
        has_more=bool(root.opt_bool("hasMore")),
        offset=str(offset) if offset not in (None, "") else None,
        newest=newest,
    )
