"""The webhook server over real HTTP: answers, operations endpoints, admin, signed links."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.sources import ashby, greenhouse
from engine import Event
from engine.clock import ManualClock
from engine.config.load import ConfigSet
from engine.links import LinkClaim, LinkSigner
from engine.metrics import Metrics
from engine.runtime import Runtime
from engine.server import WebhookServer
from engine.store import queries
from engine.store.store import Store
from engine.testing import Recorder
from engine.webhook_handler import Received, ServerState
from tests.engine.conftest import POSTGRES_URL, _serve

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "contracts" / "examples"
SECRET = "gh_test_secret"
TOKEN = "admin-token-for-tests"
CONFIG = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> contact
    trigger: ats.application.created
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email}
  - id: keep-me-posted
    description: one-click link -> ATS tag
    trigger: link.clicked
    actions:
      - action: ats.add_tag
        params: {tag: Re-engaged}
        fields: {candidate_id: candidate.id}
"""


def example(name: str) -> bytes:
    path = EXAMPLES / "greenhouse" / name
    assert path.is_file(), f"contract examples missing at {path}"
    return json.dumps(json.loads(path.read_text()), separators=(",", ":")).encode()


def signed(body: bytes, delivery: str = "evt-1", secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Signature": f"sha256 {digest}",
        "Greenhouse-Event-ID": delivery,
        "Content-Type": "application/json",
    }


class Daemon:
    def __init__(self, url: str, server: WebhookServer, store: Store) -> None:
        self.url, self.server, self.store = url, server, store

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, data=body, headers=headers) as response,
        ):
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + path, headers=headers or {}) as response,
        ):
            return response.status, await response.text()

    async def inbox(self) -> int:
        async with self.store.read() as conn:
            return int((await conn.exec_driver_sql("SELECT count(*) FROM inbox")).scalar_one())


@pytest.fixture
async def daemon_for(
    clock: ManualClock, make_config: Callable[[str], ConfigSet]
) -> AsyncIterator[Callable[..., Any]]:
    runners = []

    async def start(store: Store, **kwargs: Any) -> Daemon:
        recorder = Recorder(clock)
        runtime = Runtime.build(
            store, make_config(CONFIG), clock, recorder, ats=recorder, notifier=recorder
        )
        server = WebhookServer(
            lambda: runtime.intake,
            store,
            {"greenhouse": greenhouse([SECRET])},
            clock,
            Metrics(),
            admin_token=TOKEN,
            links=LinkSigner(b"0123456789abcdef0123", "http://nurture.test"),
            **kwargs,
        )
        runner, url = await _serve(server.app())
        runners.append(runner)
        return Daemon(url, server, store)

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_signed_webhook_is_committed_before_the_2xx_and_a_redelivery_changes_nothing(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    daemon = await daemon_for(store)
    body = example("webhook_new_candidate_application.json")
    assert await daemon.post("/webhooks/greenhouse", body, signed(body)) == (
        200,
        {"accepted": 1, "duplicates": 0},
    )
    assert await daemon.inbox() == 1  # stored by the time the 200 arrived
    assert await daemon.post("/webhooks/greenhouse", body, signed(body)) == (
        200,
        {"accepted": 0, "duplicates": 1},
    )
    assert await daemon.inbox() == 1


async def test_a_signed_delivery_replayed_under_another_delivery_id_is_a_duplicate(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    """Greenhouse signs the body only and the Greenhouse-Event-ID header is not signed:
    whoever held one delivery could send it again under a new id, and it was a new event
    (another scheduling email, another enrolment attempt) every time."""
    daemon = await daemon_for(store)
    body = example("webhook_new_candidate_application.json")
    assert await daemon.post("/webhooks/greenhouse", body, signed(body, "evt-1")) == (
        200,
        {"accepted": 1, "duplicates": 0},
    )
    assert await daemon.post("/webhooks/greenhouse", body, signed(body, "evt-2")) == (
        200,
        {"accepted": 0, "duplicates": 1},
    )
    assert await daemon.inbox() == 1
    other = body.replace(b"}", b" }", 1)  # another signed body is another delivery
    assert await daemon.post("/webhooks/greenhouse", other, signed(other, "evt-3")) == (
        200,
        {"accepted": 1, "duplicates": 0},
    )
    assert await daemon.inbox() == 2


async def test_a_replayed_ashby_delivery_is_a_duplicate_without_a_replay_key(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    """Ashby names no delivery in a header: the event id comes from the signed body, so the
    same bytes again are the same event, and its source keeps no replay keys."""
    daemon = await daemon_for(store)
    source = ashby(["ashby-secret"])
    daemon.server.serve({**daemon.server.sources, "ashby": source}, daemon.server.links, None)
    path = EXAMPLES / "ashby" / "webhook_applicationSubmit.json"
    body = json.dumps(json.loads(path.read_text()), separators=(",", ":")).encode()
    digest = hmac.new(b"ashby-secret", body, hashlib.sha256).hexdigest()
    headers = {"Ashby-Signature": f"sha256={digest}", "Content-Type": "application/json"}
    assert await daemon.post("/webhooks/ashby", body, headers) == (
        200,
        {"accepted": 1, "duplicates": 0},
    )
    assert await daemon.post("/webhooks/ashby", body, headers) == (
        200,
        {"accepted": 0, "duplicates": 1},
    )
    assert await daemon.inbox() == 1
    received = await source.receive("POST", "http://x/webhooks/ashby", headers, body)
    assert received.replay_key is None


def test_each_event_of_a_delivery_gets_its_own_replay_key() -> None:
    one = Received(events=(_event("e1"),), replay_key="k")
    two = Received(events=(_event("e1"), _event("e2")), replay_key="k")
    assert [one.replay_key_of(0)] == ["k"]
    assert [two.replay_key_of(0), two.replay_key_of(1)] == ["k.0", "k.1"]
    assert Received(events=(_event("e1"),)).replay_key_of(0) is None


def _event(delivery: str) -> Event:
    return Event(
        id=delivery,
        source="ats/greenhouse",
        type="ats.candidate.updated",
        time=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        data={"candidate": {"id": "c1"}},
    )


@pytest.mark.parametrize(
    ("mutate", "status", "error"),
    [
        pytest.param(
            lambda b, h: (b, {**h, "Signature": "sha256 " + "0" * 64}),
            401,
            "signature_mismatch",
            id="wrong-signature",
        ),
        pytest.param(
            lambda b, h: (b, {k: v for k, v in h.items() if k != "Signature"}),
            401,
            "signature_missing",
            id="no-signature",
        ),
        pytest.param(
            lambda b, h: (b"{not json", signed(b"{not json")),
            400,
            "bad_payload",
            id="malformed-json",
        ),
        pytest.param(
            lambda b, h: (
                b'{"action":"new_candidate_application","payload":{}}',
                signed(b'{"action":"new_candidate_application","payload":{}}'),
            ),
            400,
            "bad_payload",
            id="wrong-shape",
        ),
    ],
)
async def test_bad_input_gets_the_documented_status_and_a_json_error_and_stores_nothing(
    daemon_for: Callable[..., Any], store: Store, mutate: Any, status: int, error: str
) -> None:
    daemon = await daemon_for(store)
    body = example("webhook_new_candidate_application.json")
    bad_body, headers = mutate(body, signed(body))
    code, answer = await daemon.post("/webhooks/greenhouse", bad_body, headers)
    assert code == status and answer["error"] == error and answer["detail"]
    assert await daemon.inbox() == 0


async def test_unknown_event_is_202_unknown_source_404_oversize_413(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    daemon = await daemon_for(store, max_body=4096)
    ping = b'{"action":"ping","payload":{"web_hook_id":1}}'
    code, answer = await daemon.post("/webhooks/greenhouse", ping, signed(ping))
    assert code == 202 and answer["status"] == "ignored"
    code, answer = await daemon.post("/webhooks/workday", ping, signed(ping))
    assert code == 404 and answer["error"] == "unknown_source"
    big = b'{"action":"ping","payload":{"x":"' + b"a" * 5000 + b'"}}'
    code, answer = await daemon.post("/webhooks/greenhouse", big, signed(big))
    assert code == 413 and answer["error"] == "too_large"


async def test_store_unreachable_answers_503_so_the_vendor_retries(
    daemon_for: Callable[..., Any],
) -> None:
    # nothing listens on port 1: every connection attempt is refused
    unreachable = Store(create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/test"))
    daemon = await daemon_for(unreachable)
    body = example("webhook_new_candidate_application.json")
    code, answer = await daemon.post("/webhooks/greenhouse", body, signed(body))
    assert code == 503 and answer["error"] == "store_unavailable"
    code, text = await daemon.get("/readyz")
    assert code == 503 and json.loads(text)["checks"]["store"] is False
    await unreachable.close()


async def test_a_store_whose_connections_are_all_taken_answers_503_not_500(
    daemon_for: Callable[..., Any],
) -> None:
    """A pool that hands out no connection in time is the store being unavailable: the
    vendor should retry, and readiness say so (it was a 500, from SQLAlchemy's TimeoutError)."""
    url = POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    busy = Store(create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2))
    daemon = await daemon_for(busy)
    try:
        async with busy.engine.connect():  # the pool's only connection, held
            body = example("webhook_new_candidate_application.json")
            code, answer = await daemon.post("/webhooks/greenhouse", body, signed(body))
            assert code == 503 and answer["error"] == "store_unavailable"
            code, text = await daemon.get("/readyz")
            assert code == 503 and json.loads(text)["checks"]["store"] is False
    finally:
        await busy.close()


async def test_shutdown_answers_503(daemon_for: Callable[..., Any], store: Store) -> None:
    daemon = await daemon_for(store, state=ServerState(accepting=False))
    body = example("webhook_new_candidate_application.json")
    code, answer = await daemon.post("/webhooks/greenhouse", body, signed(body))
    assert code == 503 and answer["error"] == "shutting_down"


async def test_health_ready_and_metrics(daemon_for: Callable[..., Any], store: Store) -> None:
    daemon = await daemon_for(store)
    body = example("webhook_new_candidate_application.json")
    await daemon.post("/webhooks/greenhouse", body, signed(body))
    assert (await daemon.get("/healthz"))[0] == 200
    code, text = await daemon.get("/readyz")
    assert code == 200 and json.loads(text)["ready"] is True
    code, text = await daemon.get("/metrics")
    assert code == 200
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert samples['nurture_webhooks_total{source="greenhouse",status="200"}'] == "1"
    assert (
        samples['nurture_events_total{source="ats/greenhouse",type="ats.application.created"}']
        == "1"
    )
    assert samples['nurture_webhook_seconds_count{source="greenhouse"}'] == "1"
    assert samples['nurture_actions{status="pending"}'] == "1"
    assert samples['nurture_actions{status="dead"}'] == "0"  # open statuses, 0 included
    assert 'nurture_actions{status="done"}' not in samples  # history is not a gauge
    assert samples["nurture_steps_pending"] == "0"
    assert samples["nurture_steps_overdue_seconds"] == "0"
    matched = [k for k in samples if k.startswith("nurture_rule_matches_total{")]
    assert matched and all(samples[k] == "1" for k in matched)


async def test_admin_endpoints_refuse_without_the_token_and_work_with_it(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    daemon = await daemon_for(store)
    code, answer = await daemon.post("/admin/pause", b"{}", {})
    assert code == 401 and answer["error"] == "unauthorized"
    code, answer = await daemon.post("/admin/pause", b"{}", {"Authorization": "Bearer nope"})
    assert code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert await daemon.post("/admin/pause", b'{"rule": "application-to-crm"}', auth) == (
        200,
        {"paused": ["application-to-crm"]},
    )
    assert await daemon.post("/admin/resume", b'{"rule": "application-to-crm"}', auth) == (
        200,
        {"paused": []},
    )
    code, answer = await daemon.post("/admin/dlq/replay", b"{}", auth)
    assert code == 400
    assert await daemon.post("/admin/dlq/replay", b'{"all": true}', auth) == (200, {"replayed": 0})
    code, text = await daemon.get("/admin/status", auth)
    assert code == 200 and json.loads(text)["accepting"] is True


async def test_signed_links_record_a_click_and_refuse_tampering_and_expiry(
    daemon_for: Callable[..., Any], store: Store, clock: ManualClock
) -> None:
    daemon = await daemon_for(store)
    signer = daemon.server.links
    assert signer is not None
    url = signer.url(
        "gh-71",
        "maya@example.com",
        "keep-me-posted",
        clock.now(),
        sequence="silver-medalist-nurture",
        step="day-90-keep-me-posted",
    )
    path = url.removeprefix("http://nurture.test")
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    code, text = await daemon.get(tampered)
    assert code == 400 and "not valid" in text
    old = signer.token(LinkClaim("gh-71", None, "keep-me-posted", clock.now() - timedelta(1)))
    code, text = await daemon.get(f"/l/{old}")
    assert code == 400 and "expired" in text
    assert await daemon.inbox() == 0  # refused links record nothing
    code, text = await daemon.get(path)
    assert code == 200 and "keep you posted" in text
    assert (await daemon.get(path))[0] == 200  # a second click is the same event
    async with store.read() as conn:
        row = (await conn.exec_driver_sql("SELECT type, subject FROM inbox")).all()
        actions = await queries.status_counts(conn)
    assert [tuple(r) for r in row] == [("link.clicked", "gh-71")]
    assert actions == {"pending": 1}  # the ATS re-engagement tag is queued


async def test_a_signed_link_respelt_in_base64_is_refused_and_records_no_second_click(
    daemon_for: Callable[..., Any], store: Store, clock: ManualClock
) -> None:
    """The last base64 symbol of a 32-byte MAC carries 2 unused bits, padding and stray symbols
    are skipped by the lenient decoder: every respelling decoded to the same claim, and each
    was a new event id (the token's hash), so one link recorded a click per spelling."""
    daemon = await daemon_for(store)
    signer = daemon.server.links
    assert signer is not None
    path = signer.url("gh-71", None, "keep-me-posted", clock.now()).removeprefix(
        "http://nurture.test"
    )
    assert (await daemon.get(path))[0] == 200
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(path[-1])
    respelt = [
        path[:-1] + alphabet[last ^ 1],  # an unused low bit
        path + "=",  # padding the token never has
        path.replace(".", "=.", 1),
    ]
    for variant in respelt:
        code, text = await daemon.get(variant)
        assert code == 400 and "not valid" in text, variant
    assert await daemon.inbox() == 1


async def test_a_head_request_on_a_signed_link_records_no_click(
    daemon_for: Callable[..., Any], store: Store, clock: ManualClock
) -> None:
    """Link checkers and mail scanners HEAD the links in an email: aiohttp answers HEAD on a
    GET route by running it, so each such probe recorded a re-engagement click."""
    daemon = await daemon_for(store)
    signer = daemon.server.links
    assert signer is not None
    path = signer.url("gh-71", None, "keep-me-posted", clock.now()).removeprefix(
        "http://nurture.test"
    )
    async with aiohttp.ClientSession() as session, session.head(daemon.url + path) as answer:
        assert answer.status == 405
    assert await daemon.inbox() == 0


async def test_metrics_name_the_exposition_format_version_in_the_content_type(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    daemon = await daemon_for(store)
    async with aiohttp.ClientSession() as session, session.get(daemon.url + "/metrics") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_deliveries_to_unknown_sources_share_one_metric_label(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    """The path is the sender's to choose: as a label value a newline broke the exposition
    for every scrape after it, and each new name added series without bound."""
    daemon = await daemon_for(store)
    ping = b'{"action":"ping","payload":{"web_hook_id":1}}'
    for name in ["workday", "bad%0Aname%22%5C", *(f"probe-{i}" for i in range(20))]:
        code, answer = await daemon.post(f"/webhooks/{name}", ping, signed(ping))
        assert code == 404 and answer["error"] == "unknown_source"
    # any label value is escaped as the text format requires (\\, \", \n)
    daemon.server.metrics.inc("nurture_rule_errors_total", rule='odd\n"rule"\\')
    code, text = await daemon.get("/metrics")
    assert code == 200
    sample = re.compile(r'[a-z_]+(\{([a-z_]+="([^"\\\n]|\\[\\"n])*",?)*\})? \S+')
    bad = [ln for ln in text.splitlines() if not ln.startswith("#") and not sample.fullmatch(ln)]
    assert bad == []
    webhooks = [ln for ln in text.splitlines() if ln.startswith("nurture_webhooks_total{")]
    assert webhooks == ['nurture_webhooks_total{source="unknown",status="404"} 22']
    assert 'nurture_rule_errors_total{rule="odd\\n\\"rule\\"\\\\"} 1' in text


async def test_metric_values_keep_every_digit(daemon_for: Callable[..., Any], store: Store) -> None:
    """``{:g}`` kept 6 significant digits: the reload timestamp read 1.76723e+09, over an hour off,
    and a counter past a million stopped moving between scrapes."""
    daemon = await daemon_for(store, state=ServerState(last_reload_at=1767225600.25))
    metrics = daemon.server.metrics
    metrics.inc("nurture_webhooks_total", 1_234_567, source="greenhouse", status="200")
    code, text = await daemon.get("/metrics")
    assert code == 200
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert samples["nurture_last_reload_timestamp_seconds"] == "1767225600.25"
    assert samples['nurture_webhooks_total{source="greenhouse",status="200"}'] == "1234567"


async def test_admin_endpoints_answer_503_json_while_the_store_is_unreachable(
    daemon_for: Callable[..., Any],
) -> None:
    unreachable = Store(create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/test"))
    daemon = await daemon_for(unreachable)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        code, text = await daemon.get("/admin/status", auth)
        assert code == 503 and json.loads(text)["error"] == "store_unavailable", text
        for path, body in [
            ("/admin/pause", b""),
            ("/admin/resume", b'{"rule": "application-to-crm"}'),
            ("/admin/dlq/replay", b'{"all": true}'),
        ]:
            code, answer = await daemon.post(path, body, auth)
            assert code == 503 and answer["error"] == "store_unavailable", (path, answer)
    finally:
        await unreachable.close()


async def test_a_delivery_id_longer_than_the_store_keeps_is_400_not_a_503_retried_forever(
    daemon_for: Callable[..., Any], store: Store
) -> None:
    """PostgreSQL refused the 201-character id (String(200)) as a database error, answered 503:
    Greenhouse retried a delivery that can never be stored for 15 hours."""
    daemon = await daemon_for(store)
    body = example("webhook_new_candidate_application.json")
    code, answer = await daemon.post("/webhooks/greenhouse", body, signed(body, "e" * 201))
    assert code == 400 and answer["error"] == "bad_payload", answer
    assert "delivery id is 201 characters" in answer["detail"]
    assert await daemon.inbox() == 0
    code, _ = await daemon.post("/webhooks/greenhouse", body, signed(body, "e" * 200))
    assert code == 200 and await daemon.inbox() == 1
