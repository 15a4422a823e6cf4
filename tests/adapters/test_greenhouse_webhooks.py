"""Greenhouse webhook bodies -> canonical events, checked on the shared contract examples."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.greenhouse import parse_webhook
from adapters.normalise import Accepted, Ignored, PayloadError, WebhookOutcome
from engine import EVENT_DATA, Event
from tests.adapters.fuzzing import json_values, mutation_of

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "contracts" / "examples"
VENDOR_DIR = EXAMPLES / "greenhouse"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HEADERS = {"Greenhouse-Event-ID": "gh-delivery-1"}


class FixedClock:
    def now(self) -> datetime:
        return NOW


def example_doc(name: str) -> Any:
    if not VENDOR_DIR.is_dir():
        pytest.fail(
            f"contract examples not found at {VENDOR_DIR}: the shared/ folder must sit beside "
            "the repository checkout (shared/contracts/examples/greenhouse)",
            pytrace=False,
        )
    return json.loads((VENDOR_DIR / name).read_bytes())


def example(name: str) -> bytes:
    example_doc(name)  # fails clearly when the folder is missing
    return (VENDOR_DIR / name).read_bytes()


def parse(body: bytes | Any, headers: dict[str, str] | None = None) -> WebhookOutcome:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_webhook(HEADERS if headers is None else headers, raw, clock=FixedClock())


def only_event(outcome: WebhookOutcome) -> Event:
    assert isinstance(outcome, Accepted), outcome
    assert len(outcome.events) == 1
    event = outcome.events[0]
    EVENT_DATA[event.type].model_validate(event.data)
    assert event.time.tzinfo is not None
    return event


EXPECTED_TYPES = {
    "webhook_new_candidate_application.json": "ats.application.created",
    "webhook_new_prospect_application.json": "ats.application.created",
    "webhook_candidate_stage_change.json": "ats.application.stage_changed",
    "webhook_reject_candidate.json": "ats.application.rejected",
    "webhook_hire_candidate.json": "ats.application.hired",
    "webhook_unhire_candidate.json": None,
}


def test_every_greenhouse_webhook_example_has_an_expectation() -> None:
    example_doc("webhook_new_candidate_application.json")
    found = {path.name for path in VENDOR_DIR.glob("webhook_*.json")}
    assert found == set(EXPECTED_TYPES)


@pytest.mark.parametrize(
    ("name", "event_type"), [pytest.param(n, t, id=n) for n, t in EXPECTED_TYPES.items()]
)
def test_example_maps_to_its_canonical_type(name: str, event_type: str | None) -> None:
    outcome = parse(example(name))
    if event_type is None:
        assert isinstance(outcome, Ignored)
        assert outcome.event_id == "gh-delivery-1"
        return
    event = only_event(outcome)
    assert event.type == event_type
    assert event.id == "gh-delivery-1"
    assert event.source == "ats/greenhouse"
    assert event.subject == event.data["candidate"]["id"]
    assert event.data["raw"] == example_doc(name)["payload"]


def test_new_candidate_application_maps_candidate_job_stage_and_recruiter() -> None:
    event = only_event(parse(example("webhook_new_candidate_application.json")))
    candidate, application = event.data["candidate"], event.data["application"]
    assert candidate["id"] == "71234567"
    assert candidate["email"] == "maya.okafor@example.com"
    assert candidate["emails"] == ["maya.okafor@example.com"]
    assert (candidate["first_name"], candidate["last_name"]) == ("Maya", "Okafor")
    assert candidate["phone"] == "+1 555 0142"
    assert candidate["tags"] == ["Python", "Referral"]
    assert candidate["can_email"] is True
    assert candidate["do_not_contact"] is False
    assert application["id"] == "93300111"
    assert application["status"] == "active"
    assert application["prospect"] is False
    assert application["job"] == {
        "id": "502311",
        "title": "Senior Data Engineer",
        "department": "Data Platform",
        "location": "Berlin, Germany",
        "status": "open",
        "url": None,
    }
    assert application["stage"] == {"id": "7700101", "name": "Application Review"}
    assert application["previous_stage"] is None
    assert application["recruiter"]["email"] == "rhea.lindqvist@acme-hiring.example"
    assert application["source"] == "LinkedIn (Prospecting)"
    assert event.time == datetime(2026, 3, 2, 9, 15, 12, tzinfo=UTC)


def test_new_prospect_application_has_no_stage_and_no_job() -> None:
    event = only_event(parse(example("webhook_new_prospect_application.json")))
    application = event.data["application"]
    assert event.data["candidate"]["id"] == "71239999"
    assert event.data["candidate"]["email"] == "jonas.ferreira@example.org"
    assert application["prospect"] is True
    assert application["stage"] is None
    assert application["job"] is None
    assert application["source"] == "Referral"  # from source.public_name


def test_stage_change_carries_the_new_stage_only() -> None:
    event = only_event(parse(example("webhook_candidate_stage_change.json")))
    assert event.data["application"]["stage"]["name"] == "Technical Interview"
    assert event.data["application"]["previous_stage"] is None
    assert event.time == datetime(2026, 3, 5, 16, 40, 2, tzinfo=UTC)


def test_reject_maps_the_rejection_reason_and_time() -> None:
    event = only_event(parse(example("webhook_reject_candidate.json")))
    application = event.data["application"]
    assert application["status"] == "rejected"
    assert application["rejection_reason"] == {
        "name": "Not enough experience",
        "type": "We rejected them",
    }
    assert application["stage"]["name"] == "Technical Interview"
    assert application["rejected_at"] == "2026-03-09T11:02:44Z"
    assert event.time == datetime(2026, 3, 9, 11, 2, 44, tzinfo=UTC)


def test_hire_uses_the_offer_acceptance_as_hired_at() -> None:
    event = only_event(parse(example("webhook_hire_candidate.json")))
    assert event.data["application"]["status"] == "hired"
    assert event.data["application"]["hired_at"] == "2026-04-01T10:00:00Z"
    assert event.data["application"]["job"]["title"] == "Senior Data Engineer"


def test_unhire_is_ignored_with_a_reason() -> None:
    outcome = parse(example("webhook_unhire_candidate.json"))
    assert isinstance(outcome, Ignored)
    assert "un-hiring" in outcome.reason


def _with_candidate(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example_doc("webhook_new_candidate_application.json"))
    doc["payload"]["application"]["candidate"].update(changes)
    return dict(doc)


def test_primary_email_prefers_personal_and_is_lower_cased() -> None:
    doc = _with_candidate(
        email_addresses=[
            {"value": " Maya@Work.EXAMPLE ", "type": "work"},
            {"value": "Maya.Home@Example.COM", "type": "personal"},
        ]
    )
    candidate = only_event(parse(doc)).data["candidate"]
    assert candidate["email"] == "maya.home@example.com"
    assert candidate["emails"] == ["maya@work.example", "maya.home@example.com"]


def test_primary_email_falls_back_to_the_first_address() -> None:
    doc = _with_candidate(email_addresses=[{"value": "A@X.example", "type": "work"}])
    assert only_event(parse(doc)).data["candidate"]["email"] == "a@x.example"


def test_no_address_gives_no_email() -> None:
    doc = _with_candidate(email_addresses=[])
    assert only_event(parse(doc)).data["candidate"]["email"] is None


def test_do_not_contact_tag_is_matched_case_insensitively() -> None:
    doc = _with_candidate(tags=["Python", "do not CONTACT"])
    candidate = only_event(parse(doc)).data["candidate"]
    assert candidate["do_not_contact"] is True
    assert candidate["can_email"] is True


def test_can_email_false_also_means_do_not_contact() -> None:
    doc = _with_candidate(can_email=False)
    candidate = only_event(parse(doc)).data["candidate"]
    assert (candidate["can_email"], candidate["do_not_contact"]) == (False, True)


def test_unknown_application_status_falls_back_to_the_action() -> None:
    doc = copy.deepcopy(example_doc("webhook_reject_candidate.json"))
    doc["payload"]["application"]["status"] = "converted"
    assert only_event(parse(doc)).data["application"]["status"] == "rejected"


def test_update_candidate_maps_to_candidate_updated() -> None:
    candidate = copy.deepcopy(
        example_doc("webhook_new_candidate_application.json")["payload"]["application"]["candidate"]
    )
    candidate["tags"] = ["Do Not Contact"]
    event = only_event(parse({"action": "update_candidate", "payload": {"candidate": candidate}}))
    assert event.type == "ats.candidate.updated"
    assert event.data["candidate"]["id"] == "71234567"
    assert event.data["candidate"]["email"] == "maya.okafor@example.com"
    assert event.data["candidate"]["do_not_contact"] is True
    assert event.time == NOW


def test_delete_and_merge_map_to_candidate_deleted() -> None:
    person = {"id": 37031511, "first_name": "Jack", "can_email": False}
    deleted = only_event(parse({"action": "delete_candidate", "payload": {"person": person}}))
    merged = only_event(
        parse(
            {
                "action": "merge_candidate",
                "payload": {"person": {**person, "new_candidate_id": 457456}},
            }
        )
    )
    for event in (deleted, merged):
        assert event.type == "ats.candidate.deleted"
        assert event.subject == "37031511"
    assert merged.data["raw"]["person"]["new_candidate_id"] == 457456


def test_candidate_anonymized_maps_the_candidate_id() -> None:
    body = {
        "action": "candidate_anonymized",
        "payload": {"candidate_id": 37031511, "anonymized_fields": ["full_name"]},
    }
    event = only_event(parse(body))
    assert event.type == "ats.candidate.anonymized"
    assert event.data["candidate"]["id"] == "37031511"
    assert event.time == NOW


def test_unknown_action_is_ignored() -> None:
    outcome = parse({"action": "brand_new_thing", "payload": {}})
    assert isinstance(outcome, Ignored)
    assert "brand_new_thing" in outcome.reason


def test_ping_is_ignored() -> None:
    assert isinstance(parse({"action": "ping", "payload": {"web_hook_id": 1}}), Ignored)


def test_delivery_header_is_read_case_insensitively() -> None:
    outcome = parse(example("webhook_hire_candidate.json"), {"greenhouse-event-id": "abc"})
    assert only_event(outcome).id == "abc"


def test_missing_delivery_header_falls_back_to_a_body_hash() -> None:
    body = example("webhook_hire_candidate.json")
    first, again = only_event(parse(body, {})), only_event(parse(body, {}))
    assert first.id.startswith("sha256:")
    assert first.id == again.id


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="syntax"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    ],
)
def test_malformed_json_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(body)
    assert caught.value.pointer == ""


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        pytest.param(
            lambda d: d["payload"]["application"].pop("candidate"),
            "/payload/application/candidate",
            id="no-candidate",
        ),
        pytest.param(lambda d: d.pop("payload"), "/payload", id="no-payload"),
        pytest.param(lambda d: d.pop("action"), "/action", id="no-action"),
        pytest.param(
            lambda d: d["payload"]["application"]["candidate"].pop("id"),
            "/payload/application/candidate/id",
            id="no-candidate-id",
        ),
        pytest.param(
            lambda d: d["payload"]["application"]["candidate"].update(tags=["a", 3]),
            "/payload/application/candidate/tags/1",
            id="tag-not-string",
        ),
        pytest.param(
            lambda d: d["payload"]["application"].update(applied_at="yesterday"),
            "/payload/application/applied_at",
            id="bad-timestamp",
        ),
        pytest.param(
            lambda d: d["payload"]["application"]["jobs"][0].pop("name"),
            "/payload/application/jobs/0/name",
            id="job-without-name",
        ),
    ],
)
def test_shape_errors_name_the_field(mutate: Any, pointer: str) -> None:
    doc = copy.deepcopy(example_doc("webhook_new_candidate_application.json"))
    mutate(doc)
    with pytest.raises(PayloadError) as caught:
        parse(doc)
    assert caught.value.pointer == pointer


def test_a_body_that_is_not_an_object_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        parse(b"[1, 2]")


# -- robustness: nothing but PayloadError, whatever arrives -------------------------------------

ACTIONS = [
    "new_candidate_application",
    "new_prospect_application",
    "candidate_stage_change",
    "reject_candidate",
    "hire_candidate",
    "update_candidate",
    "delete_candidate",
    "merge_candidate",
    "candidate_anonymized",
    "unhire_candidate",
]
JSON = json_values(
    ["action", "payload", "application", "candidate", "jobs", "email_addresses", "id", "name"]
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    names = [n for n, t in EXPECTED_TYPES.items() if t] + ["webhook_unhire_candidate.json"]
    return draw(mutation_of(example_doc(draw(st.sampled_from(names))), JSON))


def _assert_only_payload_errors(body: bytes) -> None:
    try:
        outcome = parse_webhook(HEADERS, body, clock=FixedClock())
    except PayloadError:
        return
    if isinstance(outcome, Accepted):
        for event in outcome.events:
            EVENT_DATA[event.type].model_validate(event.data)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_nothing_but_payload_error(body: bytes) -> None:
    _assert_only_payload_errors(body)


@settings(max_examples=200, deadline=None, database=None)
@given(JSON | st.fixed_dictionaries({"action": st.sampled_from(ACTIONS), "payload": JSON}))
def test_random_json_raises_nothing_but_payload_error(doc: Any) -> None:
    _assert_only_payload_errors(json.dumps(doc).encode())


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(mutated_examples())
def test_mutated_examples_raise_nothing_but_payload_error(doc: Any) -> None:
    _assert_only_payload_errors(json.dumps(doc).encode())
