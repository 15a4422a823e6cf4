"""Who an event is about: normalised emails, the ordering key of a person's actions, and the
identity links (email -> CRM contact) an action learns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
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


@dataclass(frozen=True)
class IdentityLink:
    """An email's CRM contact (and the ATS candidate it belongs to), learned by an action."""

    email: str
    contact_id: str
    candidate_id: str | None


_LEARNED: ContextVar[list[IdentityLink] | None] = ContextVar("nurture_learned", default=None)


@contextmanager
def learning() -> Iterator[list[IdentityLink]]:
    """Collect what the action run inside learns (``learn``), for its outcome's transaction."""
    learned: list[IdentityLink] = []
    token = _LEARNED.set(learned)
    try:
        yield learned
    finally:
        _LEARNED.reset(token)


def learn(link: IdentityLink) -> bool:
    """Hand ``link`` to the outcome's transaction; False outside ``learning`` (the caller then
    stores it itself)."""
    learned = _LEARNED.get()
    if learned is None:
        return False
    learned.append(link)
    return True
