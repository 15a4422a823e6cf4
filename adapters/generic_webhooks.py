"""Generic inbound: ``StandardWebhooksSource`` serves ``POST /webhooks/generic``.

A delivery is signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) and its body is a canonical event envelope::

    {"type": "ats.application.created", "time": "2026-03-02T09:00:00Z",
     "subject": "cand-1", "source": "workable", "data": {"candidate": {...}, ...}}

The signed ``webhook-id`` is the event id (a redelivery is a duplicate); the event source is
``generic/<source>`` (``generic/webhook`` when the body names none); ``subject`` defaults to
``data.candidate.id``. A body that is not such an envelope is refused with 400 naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from adapters.signatures import (
    Clock,
    InboundRequest,
    Secret,
    SignatureError,
    StandardWebhooksVerifier,
)
from engine import EVENT_DATA, EVENT_TYPES, Event
from engine.webhook_handler import InputRejected, Received

DEFAULT_SOURCE: Final = "webhook"
_SOURCE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_MAX_ERRORS: Final = 5


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    time: AwareDatetime
    subject: str | None = None
    source: str | None = None
    data: dict[str, Any]


class StandardWebhooksSource:
    """``WebhookSource`` for ``POST /webhooks/generic``: Standard Webhooks + canonical events."""

    def __init__(
        self, secrets: Sequence[Secret], *, name: str = "generic", now: Clock | None = None
    ) -> None:
        self.name = name
        self.verifier = StandardWebhooksVerifier(secrets, now=now)

    async def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Received:
        try:
            verified = self.verifier.verify(
                InboundRequest(headers=headers, body=body, method=method, url=url)
            )
        except SignatureError as exc:
            raise InputRejected(
                401, f"signature_{exc.reason}", f"{exc.detail} ({exc.field or 'signature'})"
            ) from None
        delivery = verified.message_id
        if not delivery:  # the verifier requires webhook-id; kept for type narrowing
            raise InputRejected(401, "signature_missing", "header is absent (webhook-id)")
        return Received(events=(self._event(delivery, body),))

    def _event(self, delivery: str, body: bytes) -> Event:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise InputRejected(400, "bad_payload", "/: body is not UTF-8 JSON") from None
        if not isinstance(document, dict):
            raise InputRejected(400, "bad_payload", "/: body is not a JSON object")
        try:
            envelope = _Envelope.model_validate(document)
        except ValidationError as exc:
            raise InputRejected(400, "bad_payload", describe(exc, "")) from None
        if envelope.type not in EVENT_DATA:
            raise InputRejected(
                400,
                "bad_payload",
                f"/type: unknown event type {envelope.type!r}; known: " + ", ".join(EVENT_TYPES),
            )
        source = envelope.source or DEFAULT_SOURCE
        if not _SOURCE_NAME.fullmatch(source):
            raise InputRejected(
                400,
                "bad_payload",
                "/source: must be 1-64 characters of a-z, 0-9, '_', '.', '-' "
                "starting with a letter or digit",
            )
        try:
            data = EVENT_DATA[envelope.type].model_validate(envelope.data)
        except ValidationError as exc:
            raise InputRejected(400, "bad_payload", describe(exc, "/data")) from None
        dumped = data.model_dump(mode="json")
        subject = envelope.subject
        if subject is None:
            candidate = dumped.get("candidate")
            if isinstance(candidate, dict) and isinstance(candidate.get("id"), str):
                subject = candidate["id"]
        try:
            return Event(
                id=delivery,
                source=f"generic/{source}",
                type=envelope.type,
                time=envelope.time,
                subject=subject,
                data=dumped,
            )
        except ValidationError as exc:  # pragma: no cover - every part was validated above
            raise InputRejected(400, "bad_payload", describe(exc, "")) from None


def describe(exc: ValidationError, prefix: str) -> str:
    """'/pointer: message' per error (JSON Pointer from the pydantic loc); no input values."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:_MAX_ERRORS]:
        pointer = prefix + "".join(
            "/" + str(part).replace("~", "~0").replace("/", "~1") for part in error["loc"]
        )
        parts.append(f"{pointer or '/'}: {error['msg']}")
    more = exc.error_count() - _MAX_ERRORS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


__all__ = ["DEFAULT_SOURCE", "StandardWebhooksSource", "describe"]
