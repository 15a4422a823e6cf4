"""``schema/openapi.yaml`` is a valid OpenAPI 3.1 document of exactly the routes the daemon
serves, and the server answers every refusal in the documented ``{"error", "detail"}`` shape."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import jsonschema
import pytest
from ruamel.yaml import YAML
from yarl import URL

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.sources import hubspot as hubspot_source
from engine.clock import ManualClock, SystemClock
from engine.daemon import Daemon
from engine.metrics import Metrics
from engine.server import WebhookServer
from engine.store.store import Store
from tests.engine.conftest import _serve
from tests.engine.test_server import TOKEN, daemon_for  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "schema" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def document() -> dict[str, Any]:
    loaded = YAML(typ="safe", pure=True).load(OPENAPI.read_text())
    assert isinstance(loaded, dict)
    return loaded


def resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def walk(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


def test_the_openapi_document_is_valid_openapi_3_1_and_every_ref_resolves() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    doc = document()
    errors = sorted(
        jsonschema.Draft202012Validator(OPENAPI_31).iter_errors(doc), key=lambda e: e.json_path
    )
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)
    for pointer, node in walk(doc):
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            assert node["$ref"].startswith("#/"), f"{pointer}: only local refs"
            resolve(doc, node)  # a KeyError names the broken reference
        if pointer.endswith("/schema") and isinstance(node, dict):
            jsonschema.Draft202012Validator.check_schema(node)
    # schemathesis reads it as well (the proof suite's scenario depends on that)
    import schemathesis
    from schemathesis.core.result import Ok

    operations = list(schemathesis.openapi.from_path(OPENAPI).get_all_operations())
    assert all(isinstance(op, Ok) for op in operations), operations
    assert len(operations) == sum(len(set(item) & METHODS) for item in doc["paths"].values()), (
        "schemathesis did not load every operation"
    )


def server_routes() -> set[tuple[str, str]]:
    server = WebhookServer(
        lambda: cast(Any, None), cast(Store, None), {}, SystemClock(), Metrics(), admin_token="t"
    )
    routes = set()
    for route in server.app().router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":  # aiohttp adds HEAD beside every GET
            routes.add((route.method, str(path)))
    return routes


def test_the_openapi_paths_are_exactly_the_routes_the_server_registers() -> None:
    documented = set()
    for path, item in document()["paths"].items():
        # a named source documents its headers and body; the server serves it on the template
        served_as = re.sub(r"^/webhooks/[a-z]+$", "/webhooks/{source}", path)
        documented |= {(method.upper(), served_as) for method in item if method in METHODS}
    assert documented == server_routes()


async def test_the_named_webhook_paths_are_the_sources_the_daemon_can_serve(
    tmp_path: Path,
) -> None:
    """With every vendor configured, the daemon serves exactly the documented source names."""
    from tests.proof.target import SECRETS, _config

    (tmp_path / "rules").mkdir()
    config_path = tmp_path / "nurture.yaml"
    config_path.write_text(_config(tmp_path, 8080, "http://127.0.0.1:9", "http://127.0.0.1:9"))
    daemon = Daemon(config_path, env={**SECRETS, "SLACK_URL": "http://127.0.0.1:9/x"})
    loaded = daemon._load()
    assert loaded.config is not None, [d.format_text() for d in loaded.errors]
    store = await Store.open(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        async with aiohttp.ClientSession() as session:
            _, known, _ = daemon._build(loaded.config, store, session, vendor_limits=False)
    finally:
        await store.close()
    named = {
        p.rsplit("/", 1)[1] for p in document()["paths"] if re.fullmatch(r"/webhooks/[a-z]+", p)
    }
    assert named == set(known)


def test_every_documented_error_is_the_error_schema_except_the_link_page_and_readiness() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status, response in operation["responses"].items():
                content = resolve(doc, response)["content"]
                if int(status) < 400:
                    continue
                if path == "/l/{token}":  # a page for a person in a browser
                    assert set(content) == {"text/html"}, (path, status)
                    continue
                if path == "/readyz":  # "not ready" is an answer, with the failing checks
                    continue
                schema = content["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


async def test_unknown_paths_and_wrong_methods_answer_the_json_error_shape(
    daemon_for: Callable[..., Any],  # noqa: F811 - the fixture, imported above
    store: Store,
) -> None:
    daemon = await daemon_for(store)
    async with aiohttp.ClientSession() as session:
        async with session.get(daemon.url + "/nowhere") as answer:
            assert answer.status == 404 and answer.content_type == "application/json"
            assert (await answer.json())["error"] == "not_found"
        async with session.get(daemon.url + "/webhooks/greenhouse") as answer:
            assert answer.status == 405 and answer.headers["Allow"] == "POST"
            assert (await answer.json())["error"] == "method_not_allowed"
        big = io.BytesIO(b"x" * (1_048_576 + 10))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with session.post(daemon.url + "/admin/pause", data=big, headers=auth) as answer:
            assert answer.status == 413 and (await answer.json())["error"] == "too_large"


async def test_admin_bodies_the_operation_cannot_take_are_400_not_a_guess(
    daemon_for: Callable[..., Any],  # noqa: F811 - the fixture, imported above
    store: Store,
) -> None:
    daemon = await daemon_for(store)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path, body in [
        ("/admin/dlq/replay", b'{"id": 100000000000000000000000000000}'),  # no store holds it
        ("/admin/dlq/replay", b'{"id": true}'),
        ("/admin/dlq/replay", b'{"id": 0}'),
        ("/admin/dlq/replay", b'{"all": "yes"}'),
        ("/admin/pause", b'{"rule": 5}'),
        ("/admin/pause", b'{"rule": null}'),  # absent means every rule; null is a mistake
        ("/admin/pause", b'{"rule": ""}'),
        ("/admin/pause", b'{"rule": "a\\u0000b"}'),
        ("/admin/pause", b"[1]"),
        ("/admin/resume", b"not json"),
        ("/admin/resume", b"\xff\xfe"),
        ("/admin/resume", b" "),  # a body, and not JSON (schemathesis, seed 584274146)
        ("/admin/pause", b"\n\t"),
    ]:
        code, answer = await daemon.post(path, body, auth)
        assert code == 400 and answer["error"] == "bad_request", (path, body, code, answer)
    # no body at all still means "every rule", as the operators' curl one-liner sends it
    assert await daemon.post("/admin/pause", b"", auth) == (200, {"paused": ["*"]})
    assert await daemon.post("/admin/resume", b"", auth) == (200, {"paused": []})
    assert await daemon.post("/admin/dlq/replay", b'{"id": 7}', auth) == (200, {"replayed": 0})


HS_SECRET = "hs-client-secret"


def hubspot_delivery(
    url: str, query: str = "", object_id: int = 51234
) -> tuple[bytes, dict[str, str]]:
    """An opt-out of contact ``object_id``, v3-signed for ``url`` (and ``query``, as sent)."""
    body = json.dumps(
        [
            {
                "eventId": 1,
                "portalId": 2,
                "occurredAt": int(time.time() * 1000),
                "subscriptionType": "contact.propertyChange",
                "objectId": object_id,
                "propertyName": "hs_email_optout",
                "propertyValue": "true",
            }
        ]
    ).encode()
    stamp = str(int(time.time() * 1000))
    message = b"POST" + f"{url}/webhooks/hubspot{query}".encode() + body + stamp.encode()
    signature = base64.b64encode(hmac.new(HS_SECRET.encode(), message, hashlib.sha256).digest())
    return body, {
        "X-HubSpot-Signature-v3": signature.decode(),
        "X-HubSpot-Request-Timestamp": stamp,
    }


async def test_a_read_back_the_vendor_cannot_answer_is_503_and_stores_nothing(
    store: Store, clock: ManualClock
) -> None:
    """A HubSpot unsubscribe names a contact id; if HubSpot cannot say whose, HubSpot retries."""
    simulator = HubSpotSimulator("hs-token")
    simulator.fail_next(500, times=100, path_prefix="/crm/v3/objects/contacts/")
    hub_runner, hub_url = await _serve(simulator.app())
    async with aiohttp.ClientSession() as session:
        crm = HubSpotClient(session, hub_url, "hs-token")
        server = WebhookServer(
            lambda: cast(Any, None),
            store,
            {"hubspot": hubspot_source([HS_SECRET], crm.contact_email)},
            clock,
            Metrics(),
        )
        runner, url = await _serve(server.app())
        body, headers = hubspot_delivery(url)
        try:
            async with session.post(url + "/webhooks/hubspot", data=body, headers=headers) as r:
                assert r.status == 503, await r.text()
                assert (await r.json())["error"] == "vendor_unavailable"
        finally:
            await runner.cleanup()
            await hub_runner.cleanup()
    async with store.read() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM inbox")).scalar_one() == 0


async def test_a_body_that_does_not_decode_as_its_content_encoding_is_400_json(
    daemon_for: Callable[..., Any],  # noqa: F811 - the fixture, imported above
    store: Store,
) -> None:
    daemon = await daemon_for(store)
    for encoding in ("gzip", "deflate"):
        for path, auth in (
            ("/webhooks/greenhouse", {}),
            ("/admin/pause", {"Authorization": f"Bearer {TOKEN}"}),
        ):
            code, answer = await daemon.post(
                path, b"not compressed", {"Content-Encoding": encoding, **auth}
            )
            wanted = "bad_encoding" if path.startswith("/webhooks") else "bad_request"
            assert code == 400 and answer["error"] == wanted, (encoding, path, code, answer)


def test_a_request_the_http_parser_refuses_is_logged_without_its_bytes() -> None:
    """aiohttp would log the offending header line, which may carry the admin token."""
    import logging

    from aiohttp.http_exceptions import BadHttpMessage

    from engine.log_lines import JsonFormatter

    try:
        raise BadHttpMessage("Invalid header value char: b'Authorization: Bearer s3cr3t\\x01'")
    except BadHttpMessage:
        import sys

        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request",
            (),
            sys.exc_info(),
        )
    line = json.loads(JsonFormatter().format(record))
    assert "s3cr3t" not in json.dumps(line)
    assert line["decision"] == "refused_http" and line["level"] == "INFO"
    assert line["error"] == "BadHttpMessage"


async def test_hubspot_is_verified_against_the_public_url_it_called_not_the_proxied_one(
    store: Store, clock: ManualClock
) -> None:
    """HubSpot calls https://<public_url>; a TLS proxy hands the daemon http://127.0.0.1:port.
    The query is signed as sent: yarl's ``request.url`` would rewrite ``%7E`` to ``~``."""
    simulator = HubSpotSimulator("hs-token")  # no contact 51234: a verified delivery is 202
    hub_runner, hub_url = await _serve(simulator.app())
    public = "https://hooks.example.test/nurture"
    async with aiohttp.ClientSession() as session:
        crm = HubSpotClient(session, hub_url, "hs-token")
        server = WebhookServer(
            lambda: cast(Any, None),
            store,
            {"hubspot": hubspot_source([HS_SECRET], crm.contact_email)},
            clock,
            Metrics(),
            public_url=public + "/",
        )
        runner, url = await _serve(server.app())
        try:
            body, headers = hubspot_delivery(public, query="?app=%7Eus")
            target = URL(url + "/webhooks/hubspot?app=%7Eus", encoded=True)  # sent as is
            async with session.post(target, data=body, headers=headers) as r:
                assert r.status == 202, await r.text()
            body, headers = hubspot_delivery(url)  # signed for the address HubSpot did not call
            async with session.post(url + "/webhooks/hubspot", data=body, headers=headers) as r:
                assert r.status == 401, await r.text()
        finally:
            await runner.cleanup()
            await hub_runner.cleanup()


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(None, id="contact-gone"),  # its read answers 404: deleted since
        pytest.param("maya at example.com", id="unusable-address"),  # was a plain-text 500
    ],
)
async def test_an_unsubscribe_for_a_contact_without_a_usable_address_is_ignored_not_retried(
    store: Store, clock: ManualClock, address: str | None
) -> None:
    """Nobody is left to unsubscribe: a 202 that says why, as JSON, so HubSpot stops
    retrying what can never succeed."""
    simulator = HubSpotSimulator("hs-token")
    contact = simulator.add_contact(address) if address is not None else "51234"
    hub_runner, hub_url = await _serve(simulator.app())
    async with aiohttp.ClientSession() as session:
        crm = HubSpotClient(session, hub_url, "hs-token")
        server = WebhookServer(
            lambda: cast(Any, None),
            store,
            {"hubspot": hubspot_source([HS_SECRET], crm.contact_email)},
            clock,
            Metrics(),
        )
        runner, url = await _serve(server.app())
        try:
            body, headers = hubspot_delivery(url, object_id=int(contact))
            async with session.post(url + "/webhooks/hubspot", data=body, headers=headers) as r:
                assert r.status == 202, await r.text()
                assert f"{contact} has no email address" in (await r.json())["reason"]
        finally:
            await runner.cleanup()
            await hub_runner.cleanup()
