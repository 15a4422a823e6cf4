"""Greenhouse ``new_candidate_application`` / stage-change payloads, as the webhook sends them.

The demo and the proof suite's traffic post such deliveries to the daemon; this is the one
place that knows their shape (the parser in ``webhooks.py`` reads it).
"""

from __future__ import annotations

from typing import Any


def application_payload(
    *,
    application_id: int,
    candidate_id: str,
    first_name: str,
    last_name: str,
    email: str | None,
    job: tuple[int, str, str],
    stage: str,
    stage_id: int,
    status: str = "active",
    reason: str | None = None,
    rejected_at: str | None = None,
) -> dict[str, Any]:
    """The ``payload`` of a delivery about one application; ``job`` is (id, title,
    department) and ``reason`` the rejection reason's name, if rejected."""
    job_id, title, department = job
    return {
        "application": {
            "id": application_id,
            "status": status,
            "prospect": False,
            "applied_at": "2026-03-02T09:00:00Z",
            "rejected_at": rejected_at,
            "current_stage": {"id": stage_id, "name": stage, "interviews": []},
            "rejection_reason": (
                {"id": 14, "name": reason, "type": {"id": 3, "name": "We rejected them"}}
                if reason
                else None
            ),
            "jobs": [
                {
                    "id": job_id,
                    "name": title,
                    "status": "open",
                    "departments": [{"id": 90, "name": department}],
                    "offices": [{"id": 31, "name": "Berlin", "location": "Berlin, Germany"}],
                }
            ],
            "candidate": {
                "id": int(candidate_id),
                "first_name": first_name,
                "last_name": last_name,
                "email_addresses": [{"value": email, "type": "personal"}] if email else [],
                "tags": [],
                "can_email": True,
                "recruiter": {"id": 40211, "name": "Rhea", "email": "rhea@acme.example"},
            },
        }
    }
