"""Ashby webhook bodies -> canonical events, checked on the shared contract examples."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.ashby import parse_webhook
from adapters.normalise import Accepted, Ignored, PayloadError, WebhookOutcome
from engine import EVENT_DATA, Event
from tests.adapters.fuzzing import json_values, mutation_of

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "contracts" / "examples"
VENDOR_DIR = EXAMPLES / "ashby"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def example_doc(name: str) -> Any:
    if not VENDOR_DIR.is_dir():
        pytest.fail(
            f"contract examples not found at {VENDOR_DIR}: the shared/ folder must sit beside "
            "the repository checkout (shared/contracts/examples/ashby)",
            pytrace=False,
        )
    return json.loads((VENDOR_DIR / name).read_bytes())


def example(name: str) -> bytes:
    example_doc(name)
    return (VENDOR_DIR / name).read_bytes()


def parse(body: bytes | Any) -> WebhookOutcome:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_webhook({}, raw, clock=FixedClock())


def events_of(outcome: WebhookOutcome) -> tuple[Event, ...]:
    assert isinstance(outcome, Accepted), outcome
    for event in outcome.events:
        EVENT_DATA[event.type].model_validate(event.data)
        assert event.time.tzinfo is not None
        assert event.source == "ats/ashby"
    return outcome.events


def only_event(outcome: WebhookOutcome) -> Event:
    events = events_of(outcome)
    assert len(events) == 1
    return events[0]


EXPECTED_TYPES = {
    "webhook_applicationSubmit.json": "ats.application.created",
    "webhook_candidateStageChange.json": "ats.application.stage_changed",
    "webhook_candidateHire.json": "ats.application.hired",
    "webhook_ping.json": None,
}
CANDIDATE_ID = "0b6f2a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"


def test_every_ashby_webhook_example_has_an_expectation() -> None:
    example_doc("webhook_ping.json")
    assert {path.name for path in VENDOR_DIR.glob("webhook_*.json")} == set(EXPECTED_TYPES)


@pytest.mark.parametrize(
    ("name", "event_type"), [pytest.param(n, t, id=n) for n, t in EXPECTED_TYPES.items()]
)
def test_example_maps_to_its_canonical_type(name: str, event_type: str | None) -> None:
    outcome = parse(example(name))
    if event_type is None:
        assert isinstance(outcome, Ignored)
        return
    event = only_event(outcome)
    assert event.type == event_type
    assert event.subject == CANDIDATE_ID
    assert event.data["candidate"]["id"] == CANDIDATE_ID
    assert event.data["candidate"]["email"] == "lena.hoffmann@example.com"
    assert event.data["application"]["id"] == "6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a"
    assert event.data["application"]["job"]["title"] == "Product Designer"
    assert event.data["raw"] == example_doc(name)["data"]


def test_application_submit_maps_candidate_stage_and_source() -> None:
    event = only_event(parse(example("webhook_applicationSubmit.json")))
    candidate, application = event.data["candidate"], event.data["application"]
    assert (candidate["first_name"], candidate["last_name"]) == ("Lena", "Hoffmann")
    assert candidate["emails"] == ["lena.hoffmann@example.com"]
    assert application["status"] == "active"
    assert application["prospect"] is False
    assert application["stage"] == {
        "id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "name": "Application Review",
    }
    assert application["source"] == "Referral"
    assert event.time == datetime(2026, 3, 2, 9, 15, 12, tzinfo=UTC)


def test_stage_change_carries_the_new_stage() -> None:
    event = only_event(parse(example("webhook_candidateStageChange.json")))
    assert event.data["application"]["stage"]["name"] == "Portfolio Review"
    assert event.data["application"]["previous_stage"] is None
    assert event.time == datetime(2026, 3, 5, 16, 40, 2, tzinfo=UTC)


def test_hire_is_hired_with_hired_at() -> None:
    event = only_event(parse(example("webhook_candidateHire.json")))
    assert event.data["application"]["status"] == "hired"
    assert event.data["application"]["stage"]["name"] == "Hired"
    assert event.data["application"]["hired_at"] == "2026-03-05T16:40:02Z"


def test_ping_is_ignored_as_ping() -> None:
    outcome = parse(example("webhook_ping.json"))
    assert isinstance(outcome, Ignored)
    assert outcome.reason == "ping"


def test_without_action_id_the_event_id_is_the_body_hash() -> None:
    body = example("webhook_candidateStageChange.json")
    event = only_event(parse(body))
    assert event.id == f"sha256:{hashlib.sha256(body).hexdigest()}"
    assert only_event(parse(body)).id == event.id


def test_webhook_action_id_keeps_sibling_webhooks_apart() -> None:
    hire = example_doc("webhook_candidateHire.json")
    stage = example_doc("webhook_candidateStageChange.json")
    hire["webhookActionId"] = stage["webhookActionId"] = "75395d87-4044-4dc4-bc29-0cec185e5f06"
    hire_id = only_event(parse(hire)).id
    stage_id = only_event(parse(stage)).id
    assert hire_id == "75395d87-4044-4dc4-bc29-0cec185e5f06:candidateHire"
    assert stage_id == "75395d87-4044-4dc4-bc29-0cec185e5f06:candidateStageChange"


def test_archived_stage_change_also_yields_a_rejection_at_the_stage_before() -> None:
    doc = example_doc("webhook_candidateStageChange.json")
    app = doc["data"]["application"]
    app["status"] = "Archived"
    app["archivedAt"] = "2026-03-06T08:00:00.000Z"
    app["archiveReason"] = {"id": "r1", "text": "Not Selected", "reasonType": "RejectedByOrg"}
    app["currentInterviewStage"] = {"id": "s9", "title": "Archived", "type": "Archived"}
    rejected, stage_changed = events_of(parse(doc))  # the rejection first: see the module doc
    assert stage_changed.type == "ats.application.stage_changed"
    assert stage_changed.data["application"]["stage"] == {"id": "s9", "name": "Archived"}
    assert rejected.type == "ats.application.rejected"
    assert rejected.id == f"{stage_changed.id}:rejected"
    assert rejected.data["application"]["stage"] is None  # the engine knows where it was
    assert rejected.data["application"]["rejection_reason"] == {
        "name": "Not Selected",
        "type": "RejectedByOrg",
    }
    assert rejected.data["application"]["status"] == "rejected"
    assert rejected.time == datetime(2026, 3, 6, 8, 0, tzinfo=UTC)


def test_lead_status_is_a_prospect() -> None:
    doc = example_doc("webhook_applicationSubmit.json")
    doc["data"]["application"]["status"] = "Lead"
    application = only_event(parse(doc)).data["application"]
    assert (application["status"], application["prospect"]) == ("active", True)


def test_recruiter_comes_from_the_hiring_team() -> None:
    doc = example_doc("webhook_applicationSubmit.json")
    member = {"userId": "u1", "firstName": "Ada", "lastName": "Lee", "email": "Ada@X.io"}
    doc["data"]["application"]["hiringTeam"] = [
        {**member, "role": "Hiring Manager"},
        {**member, "userId": "u2", "firstName": "Bo", "email": "Bo@X.io", "role": "Recruiter"},
    ]
    recruiter = only_event(parse(doc)).data["application"]["recruiter"]
    assert recruiter == {"id": "u2", "name": "Bo Lee", "email": "bo@x.io"}


def test_email_is_lower_cased_and_trimmed() -> None:
    doc = example_doc("webhook_applicationSubmit.json")
    doc["data"]["application"]["candidate"]["primaryEmailAddress"]["value"] = " Lena@Example.COM "
    assert only_event(parse(doc)).data["candidate"]["email"] == "lena@example.com"


def test_candidate_delete_and_merge_map_to_candidate_deleted() -> None:
    deleted = only_event(parse({"action": "candidateDelete", "data": {"candidate": {"id": "c1"}}}))
    merged = only_event(
        parse(
            {
                "action": "candidateMerge",
                "data": {"deletedCandidate": {"id": "c2"}, "mergedCandidate": {"id": "c3"}},
            }
        )
    )
    assert (deleted.type, deleted.subject, deleted.time) == ("ats.candidate.deleted", "c1", NOW)
    assert (merged.type, merged.subject) == ("ats.candidate.deleted", "c2")


@pytest.mark.parametrize("action", ["applicationUpdate", "offerCreate", "somethingNew"])
def test_unmapped_and_unknown_actions_are_ignored(action: str) -> None:
    outcome = parse({"action": action, "data": {}})
    assert isinstance(outcome, Ignored)
    assert outcome.reason


def test_malformed_json_is_a_payload_error() -> None:
    with pytest.raises(PayloadError) as caught:
        parse(b'{"action": "applicationSubmit", "data": ')
    assert caught.value.pointer == ""


def test_missing_application_candidate_names_the_field() -> None:
    doc = example_doc("webhook_applicationSubmit.json")
    del doc["data"]["application"]["candidate"]
    with pytest.raises(PayloadError) as caught:
        parse(doc)
    assert caught.value.pointer == "/data/application/candidate"


def test_stage_without_title_names_the_field() -> None:
    doc = example_doc("webhook_candidateStageChange.json")
    del doc["data"]["application"]["currentInterviewStage"]["title"]
    with pytest.raises(PayloadError) as caught:
        parse(doc)
    assert caught.value.pointer == "/data/application/currentInterviewStage/title"


# -- robustness: nothing but PayloadError, whatever arrives -------------------------------------

ACTIONS = [
    "applicationSubmit",
    "candidateStageChange",
    "candidateHire",
    "candidateDelete",
    "candidateMerge",
    "ping",
]
JSON = json_values(
    ["action", "data", "application", "candidate", "job", "currentInterviewStage", "id", "title"]
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    return draw(mutation_of(example_doc(draw(st.sampled_from(sorted(EXPECTED_TYPES)))), JSON))


def _assert_only_payload_errors(body: bytes) -> None:
    try:
        outcome = parse_webhook({}, body, clock=FixedClock())
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
@given(JSON | st.fixed_dictionaries({"action": st.sampled_from(ACTIONS), "data": JSON}))
def test_random_json_raises_nothing_but_payload_error(doc: Any) -> None:
    _assert_only_payload_errors(json.dumps(doc).encode())


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(mutated_examples())
def test_mutated_examples_raise_nothing_but_payload_error(doc: Any) -> None:
    _assert_only_payload_errors(json.dumps(doc).encode())
