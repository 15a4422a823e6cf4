"""Who an event is about: normalised emails and the ordering key of a person's actions."""

from __future__ import annotations

from typing import Any

from engine.events import Event


def normalise_email(value: Any) -> str | None:
    """Lower-cased and trimmed; None for anything that is not a plausible address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if "@" in email and len(email) <= 320 else None


def ordering_key(event: Event, data: dict[str, Any]) -> str:
    """One person's actions run in order: keyed by email, which two ATS records share."""
    candidate = data.get("candidate") or {}
    contact = data.get("contact") or {}
    email = normalise_email(candidate.get("email")) or normalise_email(contact.get("email"))
    if email:
        return email
    if event.subject:
        return f"candidate:{event.subject}"
    return f"event:{event.source}:{event.id}"
