"""Generic HTTP: wire an unsupported ATS or CRM by configuration alone.

Outbound, ``HttpActionHandler`` runs the ``http.request`` action: ``params.method`` to
``params.url`` with ``params.headers``, plus ``params.secret_headers`` whose values come from the
environment (an absent variable is a permanent failure naming the variable, never a value), the
action's fields as the JSON body and ``Idempotency-Key: <outbox idempotency key>`` so the
receiver can drop a retried delivery. 408/409/429/5xx and network failures are retried (honouring
``Retry-After``), other non-2xx answers are permanent (see ``adapters.http.request_json``).
Redirects are not followed: secret headers must not travel to a host nobody configured.

Inbound, ``StandardWebhooksSource`` serves ``POST /webhooks/generic``: a delivery signed per
Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) whose body is a
canonical event envelope::

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
from urllib.parse import urlsplit

import aiohttp
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from adapters.http import request_json
from adapters.signatures import (
    Clock,
    InboundRequest,
    Secret,
    SignatureError,
    StandardWebhooksVerifier,
)
from engine import EVENT_DATA, EVENT_TYPES, Event
from engine.config.actions import HttpRequestParams
from engine.outbox import ActionFailed
from engine.server import InputRejected, Received
from engine.store.queries import Claimed

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
DEFAULT_SOURCE: Final = "webhook"
_SOURCE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_SUCCESS: Final = tuple(range(200, 300))
_MAX_ERRORS: Final = 5


# --- outbound: the http.request action -------------------------------------------------------


class HttpActionHandler:
    """The outbox handler of ``http.request``; register it as ``{"http.request": handler}``."""

    action_type: Final = "http.request"

    def __init__(self, session: aiohttp.ClientSession, environ: Mapping[str, str]) -> None:
        self.session = session
        self.environ = environ

    async def __call__(self, job: Claimed) -> dict[str, Any]:
        params = self._params(job)
        fields = job.payload.get("fields") or {}
        if not isinstance(fields, dict):
            raise ActionFailed("http.request: the action's fields are not a JSON object")
        headers = self._headers(params, job.idempotency_key)
        body: dict[str, Any] = {}
        if params.method != "GET" or fields:
            body["json"] = fields
        status, _ = await request_json(
            self.session,
            params.method,
            params.url,
            vendor=_vendor(params.url),
            ok=_SUCCESS,
            timeout=params.timeout,
            headers=headers,
            allow_redirects=False,
            **body,
        )
        return {"status": status}

    def __repr__(self) -> str:  # never show the environment
        return f"{type(self).__name__}()"

    @staticmethod
    def _params(job: Claimed) -> HttpRequestParams:
        try:
            return HttpRequestParams.model_validate(job.payload.get("params") or {})
        except ValidationError as exc:
            raise ActionFailed(
                f"http.request: invalid params: {_describe(exc, '/params')}"
            ) from None

    def _headers(self, params: HttpRequestParams, idempotency_key: str) -> dict[str, str]:
        reserved = {IDEMPOTENCY_HEADER.lower()}
        headers = {k: v for k, v in params.headers.items() if k.lower() not in reserved}
        for header, variable in params.secret_headers.items():
            value = self.environ.get(variable)
            if not value:
                raise ActionFailed(
                    f"http.request: environment variable {variable} (for header {header!r}) "
                    "is not set"
                )
            headers = {k: v for k, v in headers.items() if k.lower() != header.lower()}
            headers[header] = value
        headers[IDEMPOTENCY_HEADER] = idempotency_key
        return headers


def _vendor(url: str) -> str:
    host = urlsplit(url).hostname
    return f"http:{host}" if host else "http"


# --- inbound: Standard Webhooks carrying canonical events -------------------------------------


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
            raise InputRejected(400, "bad_payload", _describe(exc, "")) from None
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
            raise InputRejected(400, "bad_payload", _describe(exc, "/data")) from None
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
            raise InputRejected(400, "bad_payload", _describe(exc, "")) from None


def _describe(exc: ValidationError, prefix: str) -> str:
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


__all__ = ["DEFAULT_SOURCE", "IDEMPOTENCY_HEADER", "HttpActionHandler", "StandardWebhooksSource"]
