"""Generic HTTP: the http.request action over loopback HTTP and the Standard Webhooks source."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.generic import HttpActionHandler
from adapters.generic_webhooks import StandardWebhooksSource
from engine import AdapterRejected, AdapterUnavailable
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.metrics import Metrics
from engine.outbox import ActionFailed
from engine.runtime import Runtime
from engine.server import WebhookServer
from engine.store.queries import Claimed
from engine.store.store import Store
from engine.testing import Recorder
from engine.webhook_handler import InputRejected
from tests.engine.conftest import _serve

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
TOKEN = "s3cr3t-token-value"


@dataclass
class Receiver:
    """A tiny HTTP endpoint that records requests and answers from a script (then 200)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": json.loads(text) if text else None,
            }
        )
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.json_response({"ok": status < 400}, status=status, headers=headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    endpoint = Receiver()
    runner, url = await _serve(endpoint.app())
    yield endpoint, url
    await runner.cleanup()


def claimed(url: str, **params: Any) -> Claimed:
    return Claimed(
        id=1,
        event_id=1,
        rule_id="to-generic-crm",
        action_type="http.request",
        candidate_id="c-1",
        trigger="ats.application.created",
        payload={
            "params": {"url": url, **params},
            "fields": {"email": "maya@example.com", "stage": "Onsite"},
        },
        idempotency_key="idem-123",
        attempts=0,
        ordering_key="candidate:c-1",
    )


# --- the http.request handler ----------------------------------------------------------------


async def test_the_handler_sends_the_mapped_body_headers_secret_and_idempotency_key(
    session: aiohttp.ClientSession, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    handler = HttpActionHandler(session, {"GENERIC_TOKEN": TOKEN})
    job = claimed(
        url + "/contacts",
        method="PUT",
        headers={"X-Team": "talent"},
        secret_headers={"Authorization": "GENERIC_TOKEN"},
        timeout=5,
    )
    assert await handler(job) == {"status": 200}
    (request,) = endpoint.requests
    assert request["method"] == "PUT" and request["path"] == "/contacts"
    assert request["body"] == {"email": "maya@example.com", "stage": "Onsite"}
    assert request["headers"]["X-Team"] == "talent"
    assert request["headers"]["Authorization"] == TOKEN
    assert request["headers"]["Idempotency-Key"] == "idem-123"
    assert request["headers"]["Content-Type"] == "application/json"


async def test_503_is_retryable_with_retry_after_and_400_is_permanent(
    session: aiohttp.ClientSession, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    handler = HttpActionHandler(session, {})
    endpoint.answers = [(503, {"Retry-After": "30"}), (400, {})]
    with pytest.raises(AdapterUnavailable) as unavailable:
        await handler(claimed(url + "/hook"))
    assert unavailable.value.retry_after == 30.0
    with pytest.raises(AdapterRejected) as rejected:
        await handler(claimed(url + "/hook"))
    assert "400" in str(rejected.value)
    assert len(endpoint.requests) == 2


async def test_a_missing_secret_variable_fails_permanently_naming_the_variable_only(
    session: aiohttp.ClientSession, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    handler = HttpActionHandler(session, {"OTHER": TOKEN})
    with pytest.raises(ActionFailed, match="GENERIC_TOKEN") as failed:
        await handler(claimed(url, secret_headers={"Authorization": "GENERIC_TOKEN"}))
    assert TOKEN not in str(failed.value)
    assert endpoint.requests == []


# --- end to end through the engine -----------------------------------------------------------

CONFIG = """\
version: 1
rules:
  - id: application-to-generic-crm
    description: new application -> a CRM nurture has no adapter for
    trigger: ats.application.created
    actions:
      - action: http.request
        params:
          method: POST
          url: {url}/contacts
          headers: {{X-Source: nurture}}
          secret_headers: {{Authorization: GENERIC_TOKEN}}
          timeout: 5
        fields: {{email: candidate.email, first_name: candidate.first_name,
                 ats_id: candidate.id}}
"""


def envelope(candidate: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "ats.application.created",
        "time": "2026-03-02T09:00:00Z",
        "source": "workable",
        "data": {
            "candidate": candidate
            or {"id": "c-1", "first_name": "Maya", "email": "maya@example.com"},
            "application": {"id": "a-1", "status": "active", "stage": {"name": "Applied"}},
        },
    }
    document.update(overrides)
    return document


def signed(body: bytes, delivery: str = "msg_1", secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{delivery}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": delivery,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
        "Content-Type": "application/json",
    }


async def test_a_rule_with_http_request_reaches_the_receiver_exactly_once(
    store: Store,
    clock: ManualClock,
    make_config: Callable[[str], ConfigSet],
    session: aiohttp.ClientSession,
    receiver: tuple[Receiver, str],
) -> None:
    endpoint, url = receiver
    recorder = Recorder(clock)
    handler = HttpActionHandler(session, {"GENERIC_TOKEN": TOKEN})
    runtime = Runtime.build(
        store,
        make_config(CONFIG.format(url=url)),
        clock,
        recorder,
        ats=recorder,
        notifier=recorder,
        extra_handlers={"http.request": handler},
    )
    source = StandardWebhooksSource([SECRET])
    body = json.dumps(envelope()).encode()
    (event,) = (
        await source.receive("POST", "http://x/webhooks/generic", signed(body), body)
    ).events
    assert (await runtime.intake.accept(event)).queued == 1
    outcomes = await runtime.dispatcher.run_until_idle()
    assert [o.status for o in outcomes] == ["done"]
    assert await runtime.dispatcher.run_until_idle() == []
    clock.advance(timedelta(hours=1))
    assert await runtime.dispatcher.run_until_idle() == []
    assert (await runtime.intake.accept(event)).duplicate  # a redelivery queues nothing
    assert await runtime.dispatcher.run_until_idle() == []
    (request,) = endpoint.requests
    assert request["path"] == "/contacts"
    assert request["body"] == {"email": "maya@example.com", "first_name": "Maya", "ats_id": "c-1"}
    assert request["headers"]["Authorization"] == TOKEN
    assert request["headers"]["X-Source"] == "nurture"
    assert request["headers"]["Idempotency-Key"]


async def test_a_retried_http_request_carries_the_same_idempotency_key(
    store: Store,
    clock: ManualClock,
    make_config: Callable[[str], ConfigSet],
    session: aiohttp.ClientSession,
    receiver: tuple[Receiver, str],
) -> None:
    endpoint, url = receiver
    endpoint.answers = [(503, {"Retry-After": "60"})]
    recorder = Recorder(clock)
    runtime = Runtime.build(
        store,
        make_config(CONFIG.format(url=url)),
        clock,
        recorder,
        ats=recorder,
        notifier=recorder,
        extra_handlers={"http.request": HttpActionHandler(session, {"GENERIC_TOKEN": TOKEN})},
    )
    source = StandardWebhooksSource([SECRET])
    body = json.dumps(envelope()).encode()
    (event,) = (
        await source.receive("POST", "http://x/webhooks/generic", signed(body), body)
    ).events
    await runtime.intake.accept(event)
    assert [o.status for o in await runtime.dispatcher.run_until_idle()] == ["pending"]
    clock.advance(timedelta(seconds=59))
    assert await runtime.dispatcher.run_until_idle() == []  # Retry-After is honoured
    clock.advance(timedelta(minutes=5))
    assert [o.status for o in await runtime.dispatcher.run_until_idle()] == ["done"]
    first, second = endpoint.requests
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]


# --- the Standard Webhooks source ------------------------------------------------------------


async def test_a_signed_canonical_event_becomes_an_engine_event() -> None:
    source = StandardWebhooksSource([SECRET])
    body = json.dumps(envelope()).encode()
    received = await source.receive("POST", "http://x/webhooks/generic", signed(body), body)
    (event,) = received.events
    assert received.ignored is None
    assert event.id == "msg_1" and event.source == "generic/workable"
    assert event.type == "ats.application.created" and event.subject == "c-1"
    assert event.data["candidate"]["email"] == "maya@example.com"
    assert event.data["application"]["stage"]["name"] == "Applied"

    plain = json.dumps(envelope(source=None, subject="other")).encode()
    (event,) = (await source.receive("POST", "", signed(plain, "msg_2"), plain)).events
    assert event.source == "generic/webhook" and event.subject == "other"


@pytest.mark.parametrize(
    ("document", "status", "error", "detail"),
    [
        pytest.param(envelope(type="ats.thing.happened"), 400, "bad_payload", "/type", id="type"),
        pytest.param(
            envelope(candidate={"email": "maya@example.com"}),
            400,
            "bad_payload",
            "/data/candidate/id",
            id="no-candidate-id",
        ),
        pytest.param(envelope(time="yesterday"), 400, "bad_payload", "/time", id="bad-time"),
        pytest.param(
            envelope(source="Not Stable!"), 400, "bad_payload", "/source", id="bad-source"
        ),
        pytest.param([1, 2], 400, "bad_payload", "/", id="not-an-object"),
    ],
)
async def test_a_signed_body_that_is_not_a_canonical_event_is_400_naming_the_field(
    document: Any, status: int, error: str, detail: str
) -> None:
    source = StandardWebhooksSource([SECRET])
    body = json.dumps(document).encode()
    with pytest.raises(InputRejected) as rejected:
        await source.receive("POST", "", signed(body), body)
    assert (rejected.value.status, rejected.value.error) == (status, error)
    assert rejected.value.detail.startswith(detail)


async def test_an_unknown_type_lists_the_known_types() -> None:
    source = StandardWebhooksSource([SECRET])
    body = json.dumps(envelope(type="ats.thing.happened")).encode()
    with pytest.raises(InputRejected) as rejected:
        await source.receive("POST", "", signed(body), body)
    assert "ats.application.created" in rejected.value.detail
    assert "crm.contact.unsubscribed" in rejected.value.detail


async def test_a_wrong_or_missing_signature_is_401() -> None:
    source = StandardWebhooksSource([SECRET])
    body = json.dumps(envelope()).encode()
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(InputRejected) as rejected:
        await source.receive("POST", "", signed(body, secret=other), body)
    assert (rejected.value.status, rejected.value.error) == (401, "signature_mismatch")
    headers = {k: v for k, v in signed(body).items() if k != "webhook-signature"}
    with pytest.raises(InputRejected) as rejected:
        await source.receive("POST", "", headers, body)
    assert (rejected.value.status, rejected.value.error) == (401, "signature_missing")
    tampered = body.replace(b"Maya", b"Mara")
    with pytest.raises(InputRejected) as rejected:
        await source.receive("POST", "", signed(body), tampered)
    assert rejected.value.status == 401


async def test_through_the_webhook_server_a_signed_delivery_is_stored_once(
    store: Store, clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> None:
    recorder = Recorder(clock)
    runtime = Runtime.build(
        store,
        make_config(CONFIG.format(url="http://127.0.0.1:1")),
        clock,
        recorder,
        ats=recorder,
        notifier=recorder,
    )
    server = WebhookServer(
        lambda: runtime.intake,
        store,
        {"generic": StandardWebhooksSource([SECRET])},
        clock,
        Metrics(),
    )
    runner, url = await _serve(server.app())
    try:
        body = json.dumps(envelope()).encode()
        async with aiohttp.ClientSession() as client:
            answers = []
            for headers in (signed(body), signed(body), signed(body, secret="whsec_AAAA")):
                async with client.post(
                    url + "/webhooks/generic", data=body, headers=headers
                ) as response:
                    answers.append((response.status, await response.json()))
            bad = json.dumps(envelope(type="nope")).encode()
            async with client.post(
                url + "/webhooks/generic", data=bad, headers=signed(bad, "msg_9")
            ) as response:
                answers.append((response.status, await response.json()))
    finally:
        await runner.cleanup()
    assert answers[0] == (200, {"accepted": 1, "duplicates": 0})
    assert answers[1] == (200, {"accepted": 0, "duplicates": 1})
    assert answers[2][0] == 401 and answers[2][1]["error"] == "signature_mismatch"
    assert answers[3][0] == 400 and answers[3][1]["detail"].startswith("/type")
    async with store.read() as conn:
        inbox = (await conn.exec_driver_sql("SELECT count(*) FROM inbox")).scalar_one()
        queued = (
            await conn.exec_driver_sql(
                "SELECT count(*) FROM outbox WHERE action_type = 'http.request'"
            )
        ).scalar_one()
    assert (inbox, queued) == (1, 1)
