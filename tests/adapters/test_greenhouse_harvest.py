"""HarvestClient against the loopback Harvest simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from adapters.greenhouse.harvest import (
    BasicAuth,
    HarvestAuth,
    HarvestClient,
    OAuthClientCredentials,
    basic_authorization,
    harvest_request,
    parse_link_header,
)
from adapters.greenhouse.simulator import HarvestSimulator
from engine import AdapterRejected, AdapterUnavailable
from engine.clock import ManualClock
from tests.adapters.ticker import Ticker

API_KEY = "harvest-key-7f3a9c"
CLIENT_ID = "client-abc"
CLIENT_SECRET = "client-secret-5e8d2b"
USER = "40211"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def harvest(ticker: Ticker) -> AsyncIterator[tuple[HarvestSimulator, str]]:
    simulator = HarvestSimulator(
        API_KEY,
        oauth_clients={CLIENT_ID: CLIENT_SECRET},
        rate_limit=1000,
        monotonic=ticker,
        wall=lambda: START.timestamp(),
    )
    runner, url = await _serve(simulator.app())
    yield simulator, url
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


MakeClient = Callable[..., HarvestClient]


@pytest.fixture
def make_client(
    session: aiohttp.ClientSession, harvest: tuple[HarvestSimulator, str], clock: ManualClock
) -> MakeClient:
    def build(auth: HarvestAuth | None = None, **kwargs: object) -> HarvestClient:
        return HarvestClient(
            session,
            harvest[1],
            on_behalf_of=USER,
            auth=auth or BasicAuth(API_KEY),
            clock=clock.now,
            **kwargs,  # type: ignore[arg-type]
        )

    return build


@pytest.fixture
def sim(harvest: tuple[HarvestSimulator, str]) -> HarvestSimulator:
    return harvest[0]


def oauth(harvest: tuple[HarvestSimulator, str], secret: str = CLIENT_SECRET) -> HarvestAuth:
    return OAuthClientCredentials(CLIENT_ID, secret, harvest[1] + "/token", USER)


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    texts = [str(exc), repr(exc), getattr(exc, "body_excerpt", "")]
    for secret in secrets:
        assert all(secret not in text for text in texts), secret


# -- tags ---------------------------------------------------------------------------------
async def test_add_tag_creates_once_then_applies(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    client = make_client()
    await client.add_tag("1001", "Nurture: Q3 newsletter")
    await client.add_tag("1002", "nurture: Q3 NEWSLETTER")  # same tag, other case

    assert sim.tags_of("1001") == ["Nurture: Q3 newsletter"]
    assert sim.tags_of("1002") == ["Nurture: Q3 newsletter"]
    assert sim.state.tag_create_requests == 1
    creates = sim.requests_to("POST", "/v1/tags/candidate")
    assert creates[0].body == {"name": "Nurture: Q3 newsletter"}
    puts = sim.requests_to("PUT", "/v1/candidates/")
    assert [p.path.split("/")[3] for p in puts] == ["1001", "1002"]
    for recorded in [*creates, *puts]:
        assert recorded.headers["On-Behalf-Of"] == USER
        expected = base64.b64encode(f"{API_KEY}:".encode()).decode()
        assert recorded.headers["Authorization"] == f"Basic {expected}"
    assert client.rate_limit_remaining is not None


async def test_add_tag_that_already_exists_answers_200_and_is_applied(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    [tag_id] = sim.add_tags("Referral")
    await make_client().add_tag("77", "REFERRAL")
    assert sim.state.tags_created == 1  # only the seed
    assert sim.tags_of("77") == ["Referral"]
    assert sim.requests_to("PUT", "/v1/candidates/")[0].path == f"/v1/candidates/77/tags/{tag_id}"


async def test_cached_tag_gone_from_catalogue_is_created_again(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    client = make_client()
    await client.add_tag("1", "Alumni")
    sim.state.tags.clear()
    sim.state.applied.clear()
    await client.add_tag("1", "Alumni")
    assert sim.tags_of("1") == ["Alumni"]
    assert sim.state.tag_create_requests == 2


async def test_remove_tag_resolves_id_by_listing_then_deletes(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    await make_client().add_tag("1001", "Do Not Contact")
    client = make_client()  # a fresh client: no cached ids
    await client.remove_tag("1001", "do not contact")
    assert sim.tags_of("1001") == []
    assert len(sim.requests_to("GET", "/v1/tags/candidate")) == 1
    deletes = sim.requests_to("DELETE", "/v1/candidates/1001/tags/")
    assert len(deletes) == 1
    assert deletes[0].headers["On-Behalf-Of"] == USER

    await client.remove_tag("1001", "Do Not Contact")  # already gone: the 404 is success
    assert len(sim.requests_to("DELETE", "/v1/candidates/1001/tags/")) == 2


async def test_remove_tag_unknown_to_the_catalogue_is_a_no_op(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    await make_client().remove_tag("1001", "Never created")
    assert sim.requests_to("DELETE", "/") == []


async def test_tag_listing_follows_link_pages(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    names = [f"Tag {i}" for i in range(8)]
    ids = sim.add_tags(*names)
    client = make_client(tag_page_size=3)
    tags = await client.list_tags()
    assert [t["name"] for t in tags] == names
    gets = sim.requests_to("GET", "/v1/tags/candidate")
    assert [g.query.get("page", "1") for g in gets] == ["1", "2", "3"]
    assert all(g.query["per_page"] == "3" for g in gets)

    sim.state.applied["5"] = [ids[-1]]
    await make_client(tag_page_size=3).remove_tag("5", "tag 7")  # found on the last page
    assert sim.tags_of("5") == []


def test_parse_link_header() -> None:
    value = (
        '<https://h.example/v1/tags/candidate?page=2&per_page=3>; rel="next", '
        '<https://h.example/v1/tags/candidate?page=1&per_page=3>; rel="prev", '
        '<https://h.example/v1/tags/candidate?page=3&per_page=3>; rel="last"'
    )
    links = parse_link_header(value)
    assert links["next"].endswith("page=2&per_page=3")
    assert links["last"].endswith("page=3&per_page=3")
    assert parse_link_header(None) == {}
    assert parse_link_header("") == {}


# -- notes --------------------------------------------------------------------------------
async def test_add_note_on_behalf_of_the_user(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    await make_client().add_note("1001", "Synced to CRM.", "admin_only")
    [request] = sim.requests_to("POST", "/v1/candidates/1001/activity_feed/notes")
    assert request.headers["On-Behalf-Of"] == USER
    assert request.body == {"user_id": 40211, "body": "Synced to CRM.", "visibility": "admin_only"}
    [note] = sim.state.notes["1001"]
    assert note["visibility"] == note["visiblity"] == "admin_only"
    assert note["body"] == "Synced to CRM."


async def test_invalid_visibility_is_rejected_with_the_validation_message(
    make_client: MakeClient,
) -> None:
    with pytest.raises(AdapterRejected) as caught:
        await make_client().add_note("1001", "x", "everyone")
    assert caught.value.status == 422
    assert "visibility: Must be one of: admin_only, private, public" in str(caught.value)
    assert caught.value.retryable is False


async def test_rejected_candidate_answers_422(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    sim.reject_candidate("1001")
    client = make_client()
    with pytest.raises(AdapterRejected) as caught:
        await client.add_tag("1001", "Python")
    assert caught.value.status == 422
    assert "Validation error" in str(caught.value)
    assert "candidate_id: Candidate 1001 cannot be modified" in str(caught.value)
    with pytest.raises(AdapterRejected):
        await client.add_note("1001", "hello", "private")


async def test_simulator_requires_on_behalf_of_on_writes(
    session: aiohttp.ClientSession, harvest: tuple[HarvestSimulator, str]
) -> None:
    auth = {"Authorization": basic_authorization(API_KEY)}
    async with session.post(
        harvest[1] + "/v1/tags/candidate", json={"name": "x"}, headers=auth
    ) as response:
        assert response.status == 403
        assert "On-Behalf-Of" in (await response.json())["message"]
    async with session.get(harvest[1] + "/v1/tags/candidate", headers=auth) as response:
        assert response.status == 200
        assert response.headers["X-RateLimit-Limit"] == "1000"


# -- errors and limits ----------------------------------------------------------------------
async def test_wrong_api_key_is_rejected_without_leaking_it(make_client: MakeClient) -> None:
    wrong = "wrong-key-93b1"
    with pytest.raises(AdapterRejected) as caught:
        await make_client(BasicAuth(wrong)).add_tag("1", "Python")
    assert caught.value.status == 401
    assert_no_secret(caught.value, wrong, API_KEY)
    assert wrong not in repr(BasicAuth(wrong))


async def test_rate_limit_429_carries_retry_after(
    sim: HarvestSimulator, make_client: MakeClient, ticker: Ticker
) -> None:
    sim.rate_limit = 2
    client = make_client()
    await client.add_tag("1", "Python")  # create + apply: the window is full
    assert client.rate_limit_remaining == 0
    with pytest.raises(AdapterUnavailable) as caught:
        await client.add_tag("2", "Python")
    assert caught.value.status == 429
    assert caught.value.retry_after == 10.0
    assert caught.value.retryable is True
    [limited] = [r for r in sim.state.requests if r.path == "/v1/candidates/2/tags/365000"]
    assert limited.method == "PUT"

    ticker.value += 10  # the next window
    await client.add_tag("2", "Python")
    assert sim.tags_of("2") == ["Python"]
    assert sim.state.rate_limited == 1


async def test_injected_429_and_5xx_are_retryable(
    sim: HarvestSimulator, make_client: MakeClient
) -> None:
    client = make_client()
    sim.fail_next(429, retry_after=7)
    with pytest.raises(AdapterUnavailable) as caught:
        await client.add_note("1", "x", "public")
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    sim.fail_next(503)
    with pytest.raises(AdapterUnavailable) as caught:
        await client.add_note("1", "x", "public")
    assert caught.value.status == 503
    await client.add_note("1", "x", "public")


async def test_retry_after_falls_back_to_rate_limit_reset(
    session: aiohttp.ClientSession,
) -> None:
    reset = int(datetime.now(UTC).timestamp()) + 30

    async def limited(_request: web.Request) -> web.Response:
        return web.json_response(
            {"message": "Rate limit exceeded"},
            status=429,
            headers={"X-RateLimit-Reset": str(reset), "X-RateLimit-Remaining": "0"},
        )

    app = web.Application()
    app.router.add_get("/v1/tags/candidate", limited)
    runner, url = await _serve(app)
    try:
        with pytest.raises(AdapterUnavailable) as caught:
            await harvest_request(session, "GET", url + "/v1/tags/candidate")
        assert caught.value.retry_after is not None
        assert 25 <= caught.value.retry_after <= 30
    finally:
        await runner.cleanup()


# -- OAuth (Harvest v3 auth) ------------------------------------------------------------------
async def test_oauth_token_is_fetched_once_and_reused(
    sim: HarvestSimulator, harvest: tuple[HarvestSimulator, str], make_client: MakeClient
) -> None:
    client = make_client(oauth(harvest))
    await client.add_tag("1", "Python")
    await client.add_note("1", "hello", "private")
    assert sim.state.tokens_issued == 1
    [token_request] = sim.requests_to("POST", "/token")
    assert token_request.body == {"grant_type": "client_credentials", "sub": USER}
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["Authorization"] == f"Basic {basic}"
    token = next(iter(sim.state.tokens))
    for recorded in sim.state.requests[1:]:
        assert recorded.headers["Authorization"] == f"Bearer {token}"


async def test_oauth_token_is_refreshed_a_minute_before_expiry(
    sim: HarvestSimulator,
    harvest: tuple[HarvestSimulator, str],
    make_client: MakeClient,
    clock: ManualClock,
) -> None:
    client = make_client(oauth(harvest))
    await client.add_note("1", "a", "private")
    clock.advance(timedelta(seconds=3600 - 61))
    await client.add_note("1", "b", "private")
    assert sim.state.tokens_issued == 1
    clock.advance(timedelta(seconds=2))  # now inside the 60 s margin
    await client.add_note("1", "c", "private")
    assert sim.state.tokens_issued == 2
    assert client.token_fetches == 2


async def test_oauth_401_refreshes_once_and_retries(
    sim: HarvestSimulator, harvest: tuple[HarvestSimulator, str], make_client: MakeClient
) -> None:
    client = make_client(oauth(harvest))
    await client.add_note("1", "a", "private")
    sim.revoke_tokens()  # the vendor no longer accepts the cached token
    await client.add_note("1", "b", "private")
    assert sim.state.tokens_issued == 2
    assert len(sim.state.notes["1"]) == 2

    sim.fail_next(401, times=2)  # refused again after the refresh: give up, no loop
    with pytest.raises(AdapterRejected) as caught:
        await client.add_note("1", "c", "private")
    assert caught.value.status == 401
    assert sim.state.tokens_issued == 3
    assert_no_secret(caught.value, CLIENT_SECRET, *sim.state.tokens)


async def test_oauth_bad_client_secret_never_appears_in_errors(
    harvest: tuple[HarvestSimulator, str], make_client: MakeClient
) -> None:
    wrong = "not-the-secret-0c4f"
    auth = oauth(harvest, wrong)
    client = make_client(auth)
    with pytest.raises(AdapterRejected) as caught:
        await client.add_tag("1", "Python")
    assert caught.value.status == 401
    assert_no_secret(caught.value, wrong)
    assert wrong not in repr(auth)
    assert wrong not in repr(client)


async def test_concurrent_calls_share_one_token(
    sim: HarvestSimulator, harvest: tuple[HarvestSimulator, str], make_client: MakeClient
) -> None:
    client = make_client(oauth(harvest))
    calls: list[Awaitable[None]] = [client.add_note("1", str(i), "public") for i in range(5)]
    await asyncio.gather(*calls)
    assert sim.state.tokens_issued == 1


# -- harness ------------------------------------------------------------------------------
async def test_harness_stats_and_reset(
    session: aiohttp.ClientSession, harvest: tuple[HarvestSimulator, str], make_client: MakeClient
) -> None:
    await make_client().add_tag("9", "Python")
    async with session.get(harvest[1] + "/_stats") as response:
        stats = await response.json()
    assert stats["tags_created"] == 1
    assert stats["applied"] == {"9": ["Python"]}
    async with session.post(harvest[1] + "/_faults", json={"status": 500}) as response:
        assert response.status == 200
    with pytest.raises(AdapterUnavailable):
        await make_client().add_note("9", "x", "public")
    async with session.post(harvest[1] + "/_reset") as response:
        assert response.status == 200
    assert harvest[0].stats()["requests"] == 0
