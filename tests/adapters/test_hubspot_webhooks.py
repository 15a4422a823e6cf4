"""HubSpot webhook batches and polled e-mail/subscription pages -> canonical events."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.hubspot import parse_email_events, parse_subscription_timeline, parse_webhook
from adapters.normalise import Accepted, Ignored, NeedsLookup, PayloadError, WebhookOutcome
from engine import EVENT_DATA, Event
from tests.adapters.fuzzing import json_values, mutation_of

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "contracts" / "examples"
VENDOR_DIR = EXAMPLES / "hubspot"
EMAIL_EVENTS = "email_events_open_click_response.json"
TIMELINE = "subscriptions_timeline_unsubscribe_response.json"


def example_doc(name: str) -> Any:
    if not VENDOR_DIR.is_dir():
        pytest.fail(
            f"contract examples not found at {VENDOR_DIR}: the shared/ folder must sit beside "
            "the repository checkout (shared/contracts/examples/hubspot)",
            pytrace=False,
        )
    return json.loads((VENDOR_DIR / name).read_bytes())


def example(name: str) -> bytes:
    example_doc(name)
    return (VENDOR_DIR / name).read_bytes()


def parse(body: bytes | Any) -> WebhookOutcome:
    return parse_webhook({}, body if isinstance(body, bytes) else json.dumps(body).encode())


def valid(event: Event) -> Event:
    EVENT_DATA[event.type].model_validate(event.data)
    assert event.time.tzinfo is not None
    assert event.source == "crm/hubspot"
    return event


# Webhook bodies among the examples; webhook_headers_example.json is a header set, not a body.
EXPECTED_WEBHOOKS = {
    "webhook_contact_creation.json": None,
    "webhook_contact_propertyChange_optout.json": "crm.contact.unsubscribed",
}


def test_every_hubspot_webhook_example_has_an_expectation() -> None:
    example_doc(EMAIL_EVENTS)
    found = {path.name for path in VENDOR_DIR.glob("webhook_*.json")}
    assert found == {*EXPECTED_WEBHOOKS, "webhook_headers_example.json"}


def test_contact_creation_is_ignored() -> None:
    outcome = parse(example("webhook_contact_creation.json"))
    assert isinstance(outcome, Ignored)
    assert "contact.creation" in outcome.reason
    assert outcome.event_id == "44001234:1834500012"


def test_opt_out_property_change_needs_the_contact_address() -> None:
    outcome = parse(example("webhook_contact_propertyChange_optout.json"))
    assert isinstance(outcome, Accepted)
    assert outcome.events == ()
    (lookup,) = outcome.lookups
    assert isinstance(lookup, NeedsLookup)
    assert lookup.contact_id == "51234"
    assert lookup.type == "crm.contact.unsubscribed"
    assert lookup.event_id == "44001234:1834500077"
    assert lookup.time == datetime(2026, 1, 3, tzinfo=UTC)

    event = valid(lookup.complete(" Maya.Okafor@Example.COM "))
    assert event.type == "crm.contact.unsubscribed"
    assert event.id == "44001234:1834500077"
    assert event.data["contact"] == {"id": "51234", "email": "maya.okafor@example.com"}
    assert event.data["subscription"]["source"] == "EMAIL"
    assert event.data["subscription"]["occurred_at"] == "2026-01-03T00:00:00Z"
    assert event.data["raw"]["propertyName"] == "hs_email_optout"


def test_completing_a_lookup_with_a_blank_address_is_refused() -> None:
    outcome = parse(example("webhook_contact_propertyChange_optout.json"))
    assert isinstance(outcome, Accepted)
    with pytest.raises(ValueError, match="51234"):
        outcome.lookups[0].complete("  ")


def test_a_mixed_batch_lists_what_was_ignored() -> None:
    batch = example_doc("webhook_contact_creation.json") + example_doc(
        "webhook_contact_propertyChange_optout.json"
    )
    outcome = parse(batch)
    assert isinstance(outcome, Accepted)
    assert [lookup.contact_id for lookup in outcome.lookups] == ["51234"]
    assert [ignored.event_id for ignored in outcome.ignored] == ["44001234:1834500012"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param({"propertyValue": "false"}, "only opting out", id="opt-in-again"),
        pytest.param({"propertyName": "firstname"}, "firstname", id="other-property"),
    ],
)
def test_other_property_changes_are_ignored(change: dict[str, Any], fragment: str) -> None:
    batch = example_doc("webhook_contact_propertyChange_optout.json")
    batch[0].update(change)
    outcome = parse(batch)
    assert isinstance(outcome, Ignored)
    assert fragment in outcome.reason


def test_an_empty_batch_is_ignored() -> None:
    assert isinstance(parse(b"[]"), Ignored)


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        pytest.param(b"[{", "", id="malformed"),
        pytest.param(b'{"eventId": 1}', "", id="object-not-array"),
        pytest.param(b"[1]", "/0", id="item-not-object"),
        pytest.param(b"[{}]", "/0/subscriptionType", id="no-subscription-type"),
    ],
)
def test_bad_batches_are_payload_errors(body: bytes, pointer: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(body)
    assert caught.value.pointer == pointer


@pytest.mark.parametrize("field", ["objectId", "eventId", "portalId", "occurredAt"])
def test_an_unsubscribe_without_its_envelope_names_the_field(field: str) -> None:
    batch = example_doc("webhook_contact_creation.json") + example_doc(
        "webhook_contact_propertyChange_optout.json"
    )
    del batch[1][field]
    with pytest.raises(PayloadError) as caught:
        parse(batch)
    assert caught.value.pointer == f"/1/{field}"


# -- polled: e-mail events and the subscriptions timeline ---------------------------------------


def test_email_open_and_click_become_engagement_events() -> None:
    page = parse_email_events(example(EMAIL_EVENTS))
    opened, clicked = (valid(event) for event in page.events)
    assert page.skipped == ()
    assert (page.has_more, page.offset) == (False, "CiUgL2VtYWlsL3B1YmxpYy92MS9ldmVudHM")

    assert opened.type == "crm.email.opened"
    assert opened.id == "email-event:b7d2a1c4-0e9f-4c3b-8a71-2f6e5d4c3b2a"
    assert opened.subject is None
    assert opened.data["contact"] == {"id": None, "email": "maya.okafor@example.com"}
    assert opened.data["email"]["id"] == "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"  # sentBy.id
    assert opened.data["email"]["url"] is None
    assert opened.time == datetime(2026, 1, 3, 2, 0, tzinfo=UTC)

    assert clicked.type == "crm.email.clicked"
    assert clicked.id == "email-event:c8e3b2d5-1f0a-4d4c-9b82-3a7f6e5d4c3b"
    assert clicked.data["email"]["url"] == "https://careers.acme-hiring.example/jobs/502311"
    assert clicked.data["email"]["id"] == opened.data["email"]["id"]
    assert clicked.data["raw"]["emailCampaignId"] == 220011334


def test_other_email_event_types_are_skipped() -> None:
    doc = example_doc(EMAIL_EVENTS)
    doc["events"][0]["type"] = "DELIVERED"
    doc["events"][1]["recipient"] = " Maya.Okafor@EXAMPLE.com"
    page = parse_email_events(json.dumps(doc).encode())
    assert [event.type for event in page.events] == ["crm.email.clicked"]
    assert page.events[0].data["contact"]["email"] == "maya.okafor@example.com"
    assert [s.event_id for s in page.skipped] == [
        "email-event:b7d2a1c4-0e9f-4c3b-8a71-2f6e5d4c3b2a"
    ]


def test_email_event_without_sent_by_uses_its_own_id() -> None:
    doc = example_doc(EMAIL_EVENTS)
    del doc["events"][0]["sentBy"]
    event = parse_email_events(json.dumps(doc).encode()).events[0]
    assert event.data["email"]["id"] == "b7d2a1c4-0e9f-4c3b-8a71-2f6e5d4c3b2a"


def test_timeline_unsubscribe_becomes_contact_unsubscribed() -> None:
    page = parse_subscription_timeline(example(TIMELINE))
    (event,) = (valid(event) for event in page.events)
    assert event.type == "crm.contact.unsubscribed"
    assert event.id == "subscription-change:d9f4c3e6-2a1b-4e5d-8c93-4b8a7f6e5d4c:7723011"
    assert event.data["contact"] == {"id": None, "email": "jonas.ferreira@example.org"}
    assert event.data["subscription"]["id"] == "7723011"
    assert event.data["subscription"]["source"] == "SOURCE_RECIPIENT"
    assert event.time == datetime(2026, 1, 4, 1, 10, tzinfo=UTC)
    assert event.data["raw"]["recipient"] == "jonas.ferreira@example.org"
    assert (page.has_more, page.offset) == (False, "CK_PuKu3KBXr8LqG")


def test_timeline_other_changes_are_skipped_and_ids_stay_stable() -> None:
    doc = example_doc(TIMELINE)
    entry = doc["timeline"][0]
    resubscribe = {**entry["changes"][0], "change": "SUBSCRIBED"}
    portal_optout = copy.deepcopy(entry["changes"][0])
    del portal_optout["subscriptionId"], portal_optout["causedByEvent"]
    portal_optout["changeType"] = "PORTAL_STATUS"
    entry["changes"] = [resubscribe, portal_optout]
    body = json.dumps(doc).encode()
    page = parse_subscription_timeline(body)
    (event,) = page.events
    assert event.data["subscription"]["id"] is None
    assert event.id.endswith(":PORTAL_STATUS")
    assert event.id == parse_subscription_timeline(body).events[0].id
    assert len(page.skipped) == 1


@pytest.mark.parametrize(
    ("name", "mutate", "pointer"),
    [
        pytest.param(
            EMAIL_EVENTS,
            lambda d: d["events"][1].pop("recipient"),
            "/events/1/recipient",
            id="no-recipient",
        ),
        pytest.param(
            EMAIL_EVENTS,
            lambda d: d["events"][0].update(created="soon"),
            "/events/0/created",
            id="created-not-ms",
        ),
        pytest.param(EMAIL_EVENTS, lambda d: d.update(events={}), "/events", id="events-object"),
        pytest.param(
            TIMELINE,
            lambda d: d["timeline"][0]["changes"][0].pop("change"),
            "/timeline/0/changes/0/change",
            id="no-change",
        ),
    ],
)
def test_polled_shape_errors_name_the_field(name: str, mutate: Any, pointer: str) -> None:
    doc = example_doc(name)
    mutate(doc)
    parser = parse_email_events if name == EMAIL_EVENTS else parse_subscription_timeline
    with pytest.raises(PayloadError) as caught:
        parser(json.dumps(doc).encode())
    assert caught.value.pointer == pointer


# -- robustness: nothing but PayloadError, whatever arrives -------------------------------------

JSON = json_values(
    [
        "subscriptionType",
        "propertyName",
        "propertyValue",
        "objectId",
        "eventId",
        "portalId",
        "occurredAt",
        "events",
        "timeline",
        "changes",
        "recipient",
        "type",
        "id",
        "created",
    ]
)


@st.composite
def mutated(draw: st.DrawFn, name: str) -> Any:
    return draw(mutation_of(example_doc(name), JSON))


def _only_payload_errors(body: bytes) -> None:
    try:
        outcome = parse_webhook({}, body)
    except PayloadError:
        pass
    else:
        if isinstance(outcome, Accepted):
            for lookup in outcome.lookups:
                valid(lookup.complete("someone@example.com"))
    for parser in (parse_email_events, parse_subscription_timeline):
        try:
            page = parser(body)
        except PayloadError:
            continue
        for event in page.events:
            valid(event)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_nothing_but_payload_error(body: bytes) -> None:
    _only_payload_errors(body)


@settings(max_examples=200, deadline=None, database=None)
@given(JSON)
def test_random_json_raises_nothing_but_payload_error(doc: Any) -> None:
    _only_payload_errors(json.dumps(doc).encode())


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    mutated("webhook_contact_propertyChange_optout.json")
    | mutated(EMAIL_EVENTS)
    | mutated(TIMELINE)
)
def test_mutated_examples_raise_nothing_but_payload_error(doc: Any) -> None:
    _only_payload_errors(json.dumps(doc).encode())
