"""HubSpot webhooks -> canonical events (contract README section 4.5).

The body is a JSON **array** of events ``{eventId, subscriptionId, portalId, appId, occurredAt
(ms), subscriptionType, attemptNumber, objectId, changeSource, propertyName?, propertyValue?}``;
source ``crm/hubspot``; ``Event.id`` is ``<portalId>:<eventId>`` (a retry keeps its eventId);
``data.raw`` the vendor item as sent.

- ``contact.propertyChange`` with ``propertyName`` ``hs_email_optout`` and value "true" ->
  ``NeedsLookup`` that completes to crm.contact.unsubscribed;
- anything else (creation, deletion, other properties, opt-out set back to false, ...) ->
  ``Ignored``.

Decisions:

- The webhook names the contact by ``objectId`` only, and the canonical ``Contact`` requires an
  e-mail address. An unsubscribe is a consent signal we must not drop, so instead of
  ``Ignored`` the item becomes a ``NeedsLookup`` (``contact_id`` = objectId): the server reads
  the contact's address from HubSpot and calls ``NeedsLookup.complete(email)``, which builds and
  validates the event. ``subscription`` is ``{source: changeSource, occurred_at: occurredAt}``
  (opting out of all e-mail names no single subscription). The subscriptions-timeline poller
  (``adapters.hubspot.email_events``) reports the same unsubscribe with its own id, so the
  engine sees it twice; suppressing an already suppressed address must be a no-op there.
- Items are judged one by one: a batch of ignorable items is ``Ignored``; a batch with work is
  ``Accepted`` and lists the ignored items beside it. Only items we map must carry the full
  envelope; an item we ignore needs just a ``subscriptionType``.
- An empty array is ``Ignored``.

Unverified contract facts these mappings rest on:

- [U] whether HubSpot delivers ``contact.propertyChange`` for ``hs_email_optout`` at all, and
  that ``propertyName``/``propertyValue`` are spelt so and that the value is the string "true";
- [U] batches of up to 100 items and the retry policy (nothing here depends on the numbers).
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.normalise import (
    SYSTEM_CLOCK,
    Clock,
    Ignored,
    JsonObject,
    NeedsLookup,
    PayloadError,
    WebhookOutcome,
    child_pointer,
    expect_array,
    expect_object,
    load_json,
    outcome_of,
)
from engine import Event

SOURCE = "crm/hubspot"
OPT_OUT_PROPERTY = "hs_email_optout"


def parse_webhook(
    headers: Mapping[str, str], body: bytes, *, clock: Clock = SYSTEM_CLOCK
) -> WebhookOutcome:
    """Normalise one verified HubSpot delivery (a batch); raises ``PayloadError`` on a bad shape.

    ``clock`` is unused (every item carries ``occurredAt``); it keeps the signature the same as
    the other vendors' parsers.
    """
    items = expect_array(load_json(body), "")
    results: list[Event | NeedsLookup | Ignored] = [
        _parse_item(expect_object(item, child_pointer("", index)))
        for index, item in enumerate(items)
    ]
    return outcome_of(results)


def _parse_item(item: JsonObject) -> NeedsLookup | Ignored:
    kind = item.text("subscriptionType")
    if kind != "contact.propertyChange":
        return Ignored(f"HubSpot {kind[:80]!r} events are not mapped", event_id=_event_id(item))
    prop = item.opt_text("propertyName")
    if prop != OPT_OUT_PROPERTY:
        return Ignored(
            f"HubSpot property {(prop or '')[:80]!r} is not mapped", event_id=_event_id(item)
        )
    value = item.opt_text("propertyValue")
    if (value or "").strip().lower() != "true":
        return Ignored(
            f"{OPT_OUT_PROPERTY} changed to {value!r}: only opting out is mapped",
            event_id=_event_id(item),
        )
    event_id = f"{item.id('portalId')}:{item.id('eventId')}"
    occurred_at = item.opt_epoch_ms("occurredAt")
    if occurred_at is None:
        raise PayloadError(item.at("occurredAt"), "required timestamp is missing")
    contact_id = item.id("objectId")
    return NeedsLookup(
        contact_id=contact_id,
        event_id=event_id,
        source=SOURCE,
        type="crm.contact.unsubscribed",
        time=occurred_at,
        data={
            "contact": {"id": contact_id},
            "subscription": {"source": item.opt_text("changeSource"), "occurred_at": occurred_at},
            "raw": item.value,
        },
    )


def _event_id(item: JsonObject) -> str | None:
    portal_id, event_id = item.opt_id("portalId"), item.opt_id("eventId")
    return f"{portal_id}:{event_id}" if portal_id and event_id else None
