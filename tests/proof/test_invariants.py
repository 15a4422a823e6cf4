"""The proof's invariant checks are not vacuous: each one fails on the defect it looks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.proof import invariants as inv
from tests.proof.poster import Attempt, Outcome
from tests.proof.traffic import Delivery, Mix, greenhouse_mix

NOW = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)


def _mix() -> Mix:
    mix = Mix()
    mix.expected_contacts = {"a@x.com", "b@x.com"}
    mix.dropped_emails = {"dnc@x.com"}
    mix.records.update({"a@x.com": 1, "b@x.com": 2})
    return mix


def _state(contacts: dict[str, int], sends: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"hubspot": {"contacts_per_email": contacts, "sends": sends}}


def _send(to: str, email_id: int, at: float = 100.0, requests: int = 1) -> dict[str, Any]:
    return {"to": to, "email_id": email_id, "at": at, "requests": requests}


def _action(key: str, status: str = "done", **extra: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "event_id": extra.get("event_id"),
        "action_type": extra.get("action_type", "crm.send_email"),
        "idempotency_key": key,
        "status": status,
        "last_error": None,
        "enrollment_id": extra.get("enrollment_id"),
        "next_attempt_at": extra.get("next_attempt_at", NOW),
    }


def _acked(delivery_id: str, status: int = 200, ended: float = 50.0) -> Outcome:
    delivery = Delivery(delivery_id, "new_candidate_application", b"{}", "application", None, "1")
    return Outcome(delivery, [Attempt(status, ended - 0.01, ended)])


def test_one_contact_per_person_fails_on_a_missing_a_doubled_or_a_forbidden_contact() -> None:
    assert inv.one_contact_per_person(_state({"a@x.com": 1, "b@x.com": 1}, {}), _mix()).held
    for contacts in (
        {"a@x.com": 1},
        {"a@x.com": 2, "b@x.com": 1},
        {"a@x.com": 1, "b@x.com": 1, "dnc@x.com": 1},
    ):
        assert not inv.one_contact_per_person(_state(contacts, {}), _mix()).held


def test_no_email_twice_fails_on_a_second_send_or_a_key_the_store_never_queued() -> None:
    snap = inv.Snapshot(actions=[_action("k1"), _action("k2"), _action("k3")])
    fine = _state({}, {"k1": _send("a@x.com", 1, requests=3), "k2": _send("b@x.com", 1)})
    held, absorbed = inv.no_email_twice(fine, _mix(), snap)
    assert held.held and absorbed == 2
    twice = _state({}, {"k1": _send("a@x.com", 1), "k3": _send("a@x.com", 1)})
    assert not inv.no_email_twice(twice, _mix(), snap)[0].held
    invented = _state({}, {"k9": _send("a@x.com", 2)})
    assert not inv.no_email_twice(invented, _mix(), snap)[0].held
    second_record = _state({}, {"k2": _send("b@x.com", 1), "k3": _send("b@x.com", 1)})
    assert inv.no_email_twice(second_record, _mix(), snap)[0].held  # b has two ATS records


def test_every_accepted_event_processed_fails_on_an_unstored_or_unfinished_event() -> None:
    snap = inv.Snapshot(
        events={("ats/greenhouse", "d1"): 1, ("ats/greenhouse", "d2"): 2},
        actions=[_action("x", "done", event_id=1), _action("y", "pending", event_id=2)],
    )
    assert inv.every_accepted_event_processed([_acked("d1")], snap).held
    assert not inv.every_accepted_event_processed([_acked("d2")], snap).held
    assert not inv.every_accepted_event_processed([_acked("d3")], snap).held


def test_no_due_step_missed_fails_on_a_pending_late_skipped_or_stuck_step() -> None:
    tolerance = timedelta(minutes=15)
    step = {"sequence_id": "s", "step_id": "day-3", "candidate_id": "1", "reason": None}
    due = NOW - timedelta(hours=1)
    assert inv.no_due_step_missed(
        inv.Snapshot(steps=[{**step, "status": "fired", "due_at": due}]), NOW, tolerance
    ).held
    assert inv.no_due_step_missed(
        inv.Snapshot(steps=[{**step, "status": "pending", "due_at": NOW}]), NOW, tolerance
    ).held  # due within the tolerance: not missed yet
    for broken in (
        inv.Snapshot(steps=[{**step, "status": "pending", "due_at": due}]),
        inv.Snapshot(
            steps=[{**step, "status": "skipped", "due_at": due, "reason": "missed by 2 days"}]
        ),
        inv.Snapshot(
            actions=[_action("e:day-3:0", "deferred", enrollment_id=1, next_attempt_at=due)]
        ),
    ):
        assert not inv.no_due_step_missed(broken, NOW, tolerance).held


def test_nothing_after_unsubscribe_fails_on_a_later_send_or_a_missing_suppression() -> None:
    unsubscribe = Delivery(
        "u1", "hs_email_optout", b"[]", "unsubscribe", "a@x.com", "", source="hubspot"
    )
    acked = [Outcome(unsubscribe, [Attempt(200, 99.0, 100.0)])]
    suppressed = inv.Snapshot(suppressed={"a@x.com": NOW})
    before = _state({}, {"k1": _send("a@x.com", 1, at=99.5)})
    assert inv.nothing_after_unsubscribe(acked, before, suppressed)[0].held
    after = _state({}, {"k1": _send("a@x.com", 1, at=100.2)})
    assert not inv.nothing_after_unsubscribe(acked, after, suppressed)[0].held
    assert not inv.nothing_after_unsubscribe(acked, before, inv.Snapshot())[0].held


def test_the_event_mix_has_the_shares_the_issue_names() -> None:
    mix = greenhouse_mix(2000, seed=4)
    kinds = mix.kinds()
    assert len(mix.deliveries) == 2000 and len({d.id for d in mix.deliveries}) == 2000
    assert 0.03 <= kinds["dropped"] / 2000 <= 0.07
    new = kinds["application"] + kinds["repeat"]
    assert 0.06 <= kinds["repeat"] / new <= 0.14
    assert kinds["stage"] > 0 and kinds["rejection"] > 0 and mix.silver_medalists
    order = {d.id: n for n, d in enumerate(mix.deliveries)}
    assert all(order[d.after] < order[d.id] for d in mix.deliveries if d.after)
    assert greenhouse_mix(2000, seed=4).deliveries == mix.deliveries  # deterministic
