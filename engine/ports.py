"""What the engine needs from the outside world, as protocols adapters implement.

The engine depends on these shapes only; ``adapters/`` holds the vendor implementations and
their loopback simulators. Errors come back as ``engine.errors.AdapterError`` subclasses.
"""

from __future__ import annotations

from typing import Any, Protocol


class CrmPort(Protocol):
    """A CRM that holds contacts and sends transactional email (HubSpot)."""

    async def search_contact_by_email(self, email: str) -> str | None:
        """The id of the contact with this (normalised) email, or None."""
        ...

    async def upsert_contact(self, email: str, properties: dict[str, str]) -> tuple[str, bool]:
        """Create or update the contact with this (normalised) email in one step at the CRM,
        which looks the email up itself; the contact id and whether it was created."""
        ...

    async def update_contact(self, contact_id: str, properties: dict[str, str]) -> None: ...

    async def add_to_list(self, list_name: str, contact_id: str) -> None: ...

    async def send_transactional(
        self, email_id: str, to: str, send_id: str, variables: dict[str, str]
    ) -> dict[str, Any]:
        """Send one templated email; ``send_id`` de-duplicates at the vendor."""
        ...


class ConsentPort(Protocol):
    """The CRM's own record of consent, read just before a nurture email (HubSpot)."""

    async def opted_out(self, email: str) -> str | None:
        """Why this address must not get nurture email (e.g. NOT_SUBSCRIBED), or None."""
        ...


class MailPort(Protocol):
    """Candidate email the engine renders itself and hands to a relay (SMTP)."""

    async def send_mail(self, to: str, subject: str, text: str, message_id: str) -> None:
        """Deliver one plain-text message; the relay never de-duplicates ``message_id``."""
        ...


class AlertPort(Protocol):
    """Somewhere alerts go (a Slack incoming webhook, an SMTP mailbox)."""

    name: str

    async def send_alert(self, subject: str, text: str) -> None: ...


class AtsPort(Protocol):
    """An ATS we write back to: tags and notes on the candidate record."""

    async def add_tag(self, candidate_id: str, tag: str) -> None: ...

    async def remove_tag(self, candidate_id: str, tag: str) -> None: ...

    async def add_note(self, candidate_id: str, body: str, visibility: str) -> None: ...


class NotifierPort(Protocol):
    """Internal messages (interviewer prompts): email to people, or a Slack target by name."""

    async def email(self, to: list[str], subject: str, text: str) -> None: ...

    async def slack(self, target: str | None, text: str) -> None: ...
