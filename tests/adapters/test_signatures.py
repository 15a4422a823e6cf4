"""Webhook signature verification: contract vectors, rotation, replay windows, hostile input.

Signatures are computed here straight from each scheme's description, never with the module
under test, so a shared misunderstanding cannot make both sides agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from adapters.signatures import (
    REASONS,
    AshbyVerifier,
    GreenhouseVerifier,
    HubSpotVerifier,
    InboundRequest,
    LeverVerifier,
    SignatureError,
    SignatureVerifier,
    StandardWebhooksVerifier,
    Verified,
)

# 1767225600000 ms, the timestamp of the Lever and HubSpot vectors in contracts section 7.
VECTOR_TIME = datetime(2026, 1, 1, tzinfo=UTC)
HUBSPOT_URL = "https://hooks.example.test/hubspot"
NOT_UTF8 = b"\xff\xfe\xc3\x28 not utf-8 \x80"


def clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def whsec(label: str) -> str:
    return "whsec_" + b64(label.encode())


def reason_of(verifier: SignatureVerifier, request: InboundRequest) -> tuple[str, str | None]:
    with pytest.raises(SignatureError) as caught:
        verifier.verify(request)
    return caught.value.reason, caught.value.field


# --- signers, written from the scheme descriptions -----------------------------------------


def greenhouse_request(secret: str, body: bytes) -> InboundRequest:
    digest = hmac_sha256(secret.encode(), body).hex()
    return InboundRequest(headers={"Signature": f"sha256 {digest}"}, body=body)


def ashby_request(secret: str, body: bytes) -> InboundRequest:
    digest = hmac_sha256(secret.encode(), body).hex()
    return InboundRequest(headers={"Ashby-Signature": f"sha256={digest}"}, body=body)


def lever_body(
    secret: str,
    *,
    token: str = "a1b2c3d4e5f6",
    triggered_at: int = 1767225600000,
    data: object = None,
) -> bytes:
    signature = hmac_sha256(secret.encode(), f"{token}{triggered_at}".encode()).hex()
    document = {
        "triggeredAt": triggered_at,
        "event": "candidateStageChange",
        "signature": signature,
        "token": token,
        "data": data if data is not None else {"opportunityId": "opp-1", "toStageId": "s-2"},
    }
    return json.dumps(document).encode()


def hubspot_v3_request(
    secret: str,
    body: bytes,
    *,
    timestamp: int = 1767225600000,
    url: str = HUBSPOT_URL,
    signed_url: str | None = None,
) -> InboundRequest:
    message = b"POST" + (signed_url or url).encode() + body + str(timestamp).encode()
    headers = {
        "X-HubSpot-Signature-v3": b64(hmac_sha256(secret.encode(), message)),
        "X-HubSpot-Request-Timestamp": str(timestamp),
    }
    return InboundRequest(headers=headers, body=body, method="POST", url=url)


def hubspot_v1_headers(secret: str, body: bytes) -> dict[str, str]:
    return {
        "X-HubSpot-Signature": sha256_hex(secret.encode() + body),
        "X-HubSpot-Signature-Version": "v1",
    }


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + b64(hmac_sha256(key, signed))


def standard_request(
    secret: str, body: bytes, *, timestamp: int = 1767225600, message_id: str = "msg_1"
) -> InboundRequest:
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, message_id, timestamp, body),
    }
    return InboundRequest(headers=headers, body=body)


# --- the contract's vectors (section 7), plus the vendors' own published examples ----------


def test_greenhouse_contract_vector_verifies() -> None:
    body = b'{"action":"ping","payload":{"web_hook_id":1}}'
    request = InboundRequest(
        headers={
            "Signature": "sha256 c797a01fc4673cc800fa8995618832a7a2367ea5bc58dd8cc4ce3f1c9634ba9b"
        },
        body=body,
    )

    verified = GreenhouseVerifier(["gh_test_secret"]).verify(request)

    assert verified == Verified(scheme="greenhouse", key_index=0, replay_key=sha256_hex(body))


def test_lever_contract_vector_verifies_at_its_trigger_time() -> None:
    body = json.dumps(
        {
            "triggeredAt": 1767225600000,
            "event": "candidateStageChange",
            "signature": "b8c563ca73ea813176f85603b531e8feb60d9bebecea699e884a26a6d2b820a5",
            "token": "a1b2c3d4e5f6",
            "data": {"opportunityId": "opp-1"},
        }
    ).encode()
    verifier = LeverVerifier(["lever_sig_token_test"], now=clock(VECTOR_TIME))

    verified = verifier.verify(InboundRequest(headers={}, body=body))

    assert verified.key_index == 0
    assert verified.signed_at == VECTOR_TIME
    assert verified.replay_key == sha256_hex(b"a1b2c3d4e5f61767225600000")


def test_ashby_contract_vector_verifies() -> None:
    body = b'{"action":"ping","data":{}}'
    request = InboundRequest(
        headers={
            "Ashby-Signature": (
                "sha256=dd859c5a99f4256b5eb2098b69d95ea76e7c3550f87f782ba32074f8896146aa"
            )
        },
        body=body,
    )

    verified = AshbyVerifier(["ashby_test_secret"]).verify(request)

    assert verified == Verified(scheme="ashby", key_index=0, replay_key=sha256_hex(body))


def test_hubspot_v3_contract_vector_verifies_at_its_timestamp() -> None:
    request = InboundRequest(
        headers={
            "X-HubSpot-Signature-v3": "tXvhX6t2sbMMiAO1XsJYW3QF/qZUttUTq/Es+9CmYjk=",
            "X-HubSpot-Request-Timestamp": "1767225600000",
        },
        body=b'[{"eventId":1}]',
        method="POST",
        url=HUBSPOT_URL,
    )
    verifier = HubSpotVerifier(["hs_client_secret_test"], now=clock(VECTOR_TIME))

    verified = verifier.verify(request)

    assert (verified.version, verified.key_index, verified.signed_at) == ("v3", 0, VECTOR_TIME)


def test_hubspot_v2_example_from_hubspot_docs_verifies_when_legacy_is_allowed() -> None:
    # developers.hubspot.com "v2 request validation": GET, empty body, placeholder secret.
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    request = InboundRequest(
        headers={
            "X-HubSpot-Signature": (
                "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
            ),
            "X-HubSpot-Signature-Version": "v2",
        },
        body=b"",
        method="GET",
        url="https://www.example.com/webhook_uri",
    )

    verified = HubSpotVerifier([secret], allow_legacy=True).verify(request)

    assert verified.version == "v2"


def test_standard_webhooks_reference_library_vector_verifies() -> None:
    # From standard-webhooks/standard-webhooks libraries/python/tests/test_webhooks.py.
    request = InboundRequest(
        headers={
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        },
        body=b'{"test": 2432232314}',
    )
    moment = datetime.fromtimestamp(1614265330, UTC)
    verifier = StandardWebhooksVerifier(
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], now=clock(moment)
    )

    verified = verifier.verify(request)

    assert verified.message_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert verified.signed_at == moment


# --- secret rotation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """How to build a verifier and a correctly signed request for one scheme."""

    make: Callable[[list[str]], SignatureVerifier]
    sign: Callable[[str, bytes], InboundRequest]
    secret: Callable[[str], str] = str


SCHEMES = {
    "greenhouse": Scheme(GreenhouseVerifier, greenhouse_request),
    "ashby": Scheme(AshbyVerifier, ashby_request),
    "lever": Scheme(
        lambda secrets: LeverVerifier(secrets, now=clock(VECTOR_TIME)),
        lambda secret, _body: InboundRequest(headers={}, body=lever_body(secret)),
    ),
    "hubspot": Scheme(
        lambda secrets: HubSpotVerifier(secrets, now=clock(VECTOR_TIME)), hubspot_v3_request
    ),
    "standard_webhooks": Scheme(
        lambda secrets: StandardWebhooksVerifier(secrets, now=clock(VECTOR_TIME)),
        standard_request,
        whsec,
    ),
}
BODY = b'{"action":"candidate_stage_change","payload":{"application":{"id":1}}}'


@pytest.mark.parametrize("name", SCHEMES)
def test_old_and_new_secret_both_verify_during_rotation(name: str) -> None:
    scheme = SCHEMES[name]
    new, old = scheme.secret("new-secret"), scheme.secret("old-secret")
    verifier = scheme.make([new, old])

    assert verifier.verify(scheme.sign(new, BODY)).key_index == 0
    assert verifier.verify(scheme.sign(old, BODY)).key_index == 1


@pytest.mark.parametrize("name", SCHEMES)
def test_signature_from_unknown_secret_is_a_mismatch(name: str) -> None:
    scheme = SCHEMES[name]
    verifier = scheme.make([scheme.secret("new-secret"), scheme.secret("old-secret")])

    request = scheme.sign(scheme.secret("someone-else"), BODY)

    assert reason_of(verifier, request)[0] == "mismatch"


@pytest.mark.parametrize("name", SCHEMES)
def test_same_request_gives_same_replay_key(name: str) -> None:
    scheme = SCHEMES[name]
    verifier = scheme.make([scheme.secret("s")])
    request = scheme.sign(scheme.secret("s"), BODY)

    assert verifier.verify(request).replay_key == verifier.verify(request).replay_key


# --- tampering -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["greenhouse", "ashby", "hubspot", "standard_webhooks"])
def test_tampered_body_is_a_mismatch(name: str) -> None:
    scheme = SCHEMES[name]
    signed = scheme.sign(scheme.secret("s"), BODY)
    tampered = InboundRequest(
        headers=signed.headers, body=BODY.replace(b'"id":1', b'"id":2'), url=signed.url
    )

    assert reason_of(scheme.make([scheme.secret("s")]), tampered)[0] == "mismatch"


@pytest.mark.parametrize("name", ["greenhouse", "ashby", "hubspot", "standard_webhooks"])
def test_reserialised_json_body_is_a_mismatch(name: str) -> None:
    scheme = SCHEMES[name]
    signed = scheme.sign(scheme.secret("s"), BODY)
    reserialised = json.dumps(json.loads(BODY), indent=1).encode()

    request = InboundRequest(headers=signed.headers, body=reserialised, url=signed.url)

    assert reason_of(scheme.make([scheme.secret("s")]), request)[0] == "mismatch"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"token": "a1b2c3d4e5f7"}, id="token"),
        pytest.param({"triggeredAt": 1767225600001}, id="triggeredAt"),
    ],
)
def test_lever_tampered_token_or_trigger_time_is_a_mismatch(changes: dict[str, object]) -> None:
    document = json.loads(lever_body("s"))
    document.update(changes)
    verifier = LeverVerifier(["s"], now=clock(VECTOR_TIME))

    request = InboundRequest(headers={}, body=json.dumps(document).encode())

    assert reason_of(verifier, request) == ("mismatch", "signature")


def test_lever_signature_does_not_cover_data_so_changed_data_still_verifies() -> None:
    # A property of Lever's scheme, pinned here so nobody trusts ``data`` by accident.
    verifier = LeverVerifier(["s"], now=clock(VECTOR_TIME))
    genuine = verifier.verify(InboundRequest(headers={}, body=lever_body("s")))

    forged = verifier.verify(
        InboundRequest(headers={}, body=lever_body("s", data={"opportunityId": "someone-else"}))
    )

    assert forged.replay_key == genuine.replay_key


def test_lever_trigger_time_as_digit_string_verifies() -> None:
    document = json.loads(lever_body("s"))
    document["triggeredAt"] = "1767225600000"
    verifier = LeverVerifier(["s"], now=clock(VECTOR_TIME))

    assert verifier.verify(InboundRequest(headers={}, body=json.dumps(document).encode()))


# --- replay windows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """A timed scheme: verifier (secret, now), and a request signed with "s" at a moment."""

    make: Callable[[str, datetime], SignatureVerifier]
    sign_at: Callable[[datetime], InboundRequest]


TIMED = {
    "lever": Timed(
        lambda secret, now: LeverVerifier([secret], now=clock(now)),
        lambda at: InboundRequest(headers={}, body=lever_body("s", triggered_at=epoch_ms(at))),
    ),
    "hubspot": Timed(
        lambda secret, now: HubSpotVerifier([secret], now=clock(now)),
        lambda at: hubspot_v3_request("s", BODY, timestamp=epoch_ms(at)),
    ),
    "standard_webhooks": Timed(
        lambda secret, now: StandardWebhooksVerifier([whsec(secret)], now=clock(now)),
        lambda at: standard_request(whsec("s"), BODY, timestamp=int(at.timestamp())),
    ),
}
FIVE_MINUTES = timedelta(minutes=5)


@pytest.mark.parametrize("name", TIMED)
def test_signature_exactly_five_minutes_old_still_verifies(name: str) -> None:
    timed = TIMED[name]

    verified = timed.make("s", VECTOR_TIME + FIVE_MINUTES).verify(timed.sign_at(VECTOR_TIME))

    assert verified.signed_at == VECTOR_TIME


@pytest.mark.parametrize("name", TIMED)
def test_signature_older_than_five_minutes_is_stale(name: str) -> None:
    timed = TIMED[name]
    verifier = timed.make("s", VECTOR_TIME + FIVE_MINUTES + timedelta(seconds=1))

    assert reason_of(verifier, timed.sign_at(VECTOR_TIME))[0] == "stale"


@pytest.mark.parametrize("name", TIMED)
def test_signature_more_than_five_minutes_ahead_is_future(name: str) -> None:
    timed = TIMED[name]
    verifier = timed.make("s", VECTOR_TIME - FIVE_MINUTES - timedelta(seconds=1))

    assert reason_of(verifier, timed.sign_at(VECTOR_TIME))[0] == "future"


@pytest.mark.parametrize("name", TIMED)
def test_stale_forgery_is_reported_as_mismatch_not_stale(name: str) -> None:
    # The signature is checked first, so "stale" always means a genuine but late delivery.
    timed = TIMED[name]
    request = timed.sign_at(VECTOR_TIME - timedelta(days=1))
    wrong = timed.make("other", VECTOR_TIME)

    assert reason_of(wrong, request)[0] == "mismatch"


def test_window_is_configurable() -> None:
    verifier = LeverVerifier(["s"], max_age=timedelta(hours=1), now=clock(VECTOR_TIME))
    request = InboundRequest(
        headers={}, body=lever_body("s", triggered_at=epoch_ms(VECTOR_TIME - timedelta(minutes=59)))
    )

    assert verifier.verify(request).key_index == 0


def test_naive_clock_is_read_as_utc() -> None:
    verifier = LeverVerifier(["s"], now=clock(VECTOR_TIME.replace(tzinfo=None)))

    assert verifier.verify(InboundRequest(headers={}, body=lever_body("s"))).key_index == 0


# --- HubSpot version selection and URI handling ----------------------------------------------


def test_hubspot_v3_wins_over_an_invalid_legacy_signature() -> None:
    signed = hubspot_v3_request("s", BODY)
    headers = {
        **signed.headers,
        "X-HubSpot-Signature": "0" * 64,
        "X-HubSpot-Signature-Version": "v1",
    }
    verifier = HubSpotVerifier(["s"], allow_legacy=True, now=clock(VECTOR_TIME))

    verified = verifier.verify(InboundRequest(headers=headers, body=BODY, url=HUBSPOT_URL))

    assert verified.version == "v3"


def test_hubspot_bad_v3_does_not_fall_back_to_a_valid_legacy_signature() -> None:
    # Otherwise a forger would send a garbage v3 beside a replayed, timeless v1.
    headers = {
        "X-HubSpot-Signature-v3": b64(b"\x00" * 32),
        "X-HubSpot-Request-Timestamp": "1767225600000",
        **hubspot_v1_headers("s", BODY),
    }
    verifier = HubSpotVerifier(["s"], allow_legacy=True, now=clock(VECTOR_TIME))

    request = InboundRequest(headers=headers, body=BODY, url=HUBSPOT_URL)

    assert reason_of(verifier, request) == ("mismatch", "X-HubSpot-Signature-v3")


def test_hubspot_legacy_signatures_are_refused_by_default() -> None:
    request = InboundRequest(headers=hubspot_v1_headers("s", BODY), body=BODY, url=HUBSPOT_URL)

    assert reason_of(HubSpotVerifier(["s"]), request) == ("missing", "X-HubSpot-Signature-v3")


def test_hubspot_v1_verifies_when_legacy_is_allowed() -> None:
    request = InboundRequest(headers=hubspot_v1_headers("s", BODY), body=BODY)

    verified = HubSpotVerifier(["s"], allow_legacy=True).verify(request)

    assert (verified.version, verified.signed_at) == ("v1", None)


def test_hubspot_v3_decodes_the_listed_percent_escapes_in_the_uri() -> None:
    # HubSpot signs the decoded form; the server passes the URL as it arrived on the wire.
    signed_url = "https://hooks.example.test/hubspot?email=ana@example.com&tags=a,b&q=x%20y"
    wire_url = "https://hooks.example.test/hubspot?email=ana%40example.com&tags=a%2cb&q=x%20y"
    request = hubspot_v3_request("s", BODY, url=wire_url, signed_url=signed_url)

    assert HubSpotVerifier(["s"], now=clock(VECTOR_TIME)).verify(request).version == "v3"


def test_hubspot_method_is_compared_in_upper_case() -> None:
    signed = hubspot_v3_request("s", BODY)
    request = InboundRequest(headers=signed.headers, body=BODY, method="post", url=HUBSPOT_URL)

    assert HubSpotVerifier(["s"], now=clock(VECTOR_TIME)).verify(request).version == "v3"


def test_hubspot_without_the_called_url_is_a_programming_error() -> None:
    signed = hubspot_v3_request("s", BODY)

    with pytest.raises(ValueError, match="full URL"):
        HubSpotVerifier(["s"], now=clock(VECTOR_TIME)).verify(
            InboundRequest(headers=signed.headers, body=BODY)
        )


# --- Standard Webhooks -----------------------------------------------------------------------


def test_standard_webhooks_round_trip_with_one_valid_signature_among_several() -> None:
    secret = whsec("round-trip-secret-of-24-bytes")
    valid = standard_signature(secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1767225600, BODY)
    header = " ".join(
        [
            "v1," + b64(b"\x01" * 32),  # a stale rotation key's signature
            "v1a," + b64(b"\x02" * 64),  # asymmetric, not ours to check
            "v2," + valid.removeprefix("v1,"),  # right bytes, unknown version
            valid,
            "garbage",
        ]
    )
    request = InboundRequest(
        headers={
            "Webhook-Id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            "Webhook-Timestamp": "1767225600",
            "Webhook-Signature": header,
        },
        body=BODY,
    )

    verified = StandardWebhooksVerifier([secret], now=clock(VECTOR_TIME)).verify(request)

    assert verified.message_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert verified.version == "v1"
    assert verified.signed_at == VECTOR_TIME


def test_standard_webhooks_with_no_matching_entry_is_a_mismatch() -> None:
    request = InboundRequest(
        headers={
            "webhook-id": "msg_1",
            "webhook-timestamp": "1767225600",
            "webhook-signature": f"v1,{b64(b'a' * 32)} v1,{b64(b'b' * 32)}",
        },
        body=BODY,
    )

    verifier = StandardWebhooksVerifier([whsec("s")], now=clock(VECTOR_TIME))

    assert reason_of(verifier, request) == ("mismatch", "webhook-signature")


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(whsec("key-bytes"), id="whsec"),
        pytest.param(b64(b"key-bytes"), id="bare-base64"),
        pytest.param(b"key-bytes", id="raw-bytes"),
    ],
)
def test_standard_webhooks_secret_forms_are_equivalent(secret: str | bytes) -> None:
    request = standard_request(whsec("key-bytes"), BODY)

    verifier = StandardWebhooksVerifier([secret], now=clock(VECTOR_TIME))

    assert verifier.verify(request).key_index == 0


def test_standard_webhooks_rejects_undecodable_secret_at_construction() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        StandardWebhooksVerifier(["whsec_not base64!"])


# --- construction mistakes are loud, and never SignatureError --------------------------------


@pytest.mark.parametrize(
    ("secrets", "error"),
    [
        pytest.param("one-secret", TypeError, id="bare-string"),
        pytest.param(b"one-secret", TypeError, id="bare-bytes"),
        pytest.param([], ValueError, id="empty"),
        pytest.param([""], ValueError, id="empty-secret"),
    ],
)
def test_secrets_must_be_a_non_empty_sequence(secrets: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        GreenhouseVerifier(secrets)  # type: ignore[arg-type]


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        LeverVerifier(["s"], max_age=timedelta(seconds=-1))


def test_body_must_be_raw_bytes() -> None:
    with pytest.raises(TypeError, match="raw request bytes"):
        InboundRequest(headers={}, body='{"action":"ping"}')  # type: ignore[arg-type]


# --- headers are looked up case-insensitively ------------------------------------------------


@pytest.mark.parametrize("name", ["Signature", "signature", "SIGNATURE", "sIgNaTuRe"])
def test_header_lookup_ignores_case_in_a_plain_dict(name: str) -> None:
    signed = greenhouse_request("s", BODY)
    request = InboundRequest(headers={name: signed.headers["Signature"]}, body=BODY)

    assert GreenhouseVerifier(["s"]).verify(request).key_index == 0


def test_header_lookup_works_with_aiohttp_multidict() -> None:
    signed = hubspot_v3_request("s", BODY)
    headers = CIMultiDict((name.upper(), value) for name, value in signed.headers.items())

    request = InboundRequest(headers=headers, body=BODY, url=HUBSPOT_URL)

    assert HubSpotVerifier(["s"], now=clock(VECTOR_TIME)).verify(request).version == "v3"


def test_repeated_signature_header_is_malformed() -> None:
    good = greenhouse_request("s", BODY).headers["Signature"]
    headers = CIMultiDict([("Signature", good), ("signature", "sha256 " + "0" * 64)])

    request = InboundRequest(headers=headers, body=BODY)

    assert reason_of(GreenhouseVerifier(["s"]), request) == ("malformed", "Signature")


# --- hostile input: the right reason, and never another exception ----------------------------

GOOD_HEX = "ab" * 32
GOOD_B64 = b64(b"\x00" * 32)
STANDARD_OK = {"webhook-id": "msg_1", "webhook-timestamp": "1767225600"}


def lever_document(**fields: object) -> bytes:
    document: dict[str, object] = {
        "token": "t",
        "triggeredAt": 1767225600000,
        "signature": GOOD_HEX,
    }
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not DROP}).encode()


DROP = object()
GREENHOUSE = GreenhouseVerifier(["s"])
ASHBY = AshbyVerifier(["s"])
LEVER = LeverVerifier(["s"], now=clock(VECTOR_TIME))
HUBSPOT = HubSpotVerifier(["s"], allow_legacy=True, now=clock(VECTOR_TIME))
STANDARD = StandardWebhooksVerifier([whsec("s")], now=clock(VECTOR_TIME))
V3_TS = "X-HubSpot-Request-Timestamp"


def req(headers: Mapping[str, str], body: bytes = BODY, url: str = HUBSPOT_URL) -> InboundRequest:
    return InboundRequest(headers=headers, body=body, url=url)


HOSTILE = [
    # Greenhouse
    pytest.param(GREENHOUSE, req({}), "missing", "Signature", id="gh-missing-header"),
    pytest.param(GREENHOUSE, req({"Signature": "  "}), "missing", "Signature", id="gh-blank"),
    pytest.param(
        GREENHOUSE, req({"Signature": f"sha1={GOOD_HEX}"}), "malformed", "Signature", id="gh-sha1="
    ),
    pytest.param(
        GREENHOUSE, req({"Signature": f"sha1 {GOOD_HEX}"}), "malformed", "Signature", id="gh-sha1"
    ),
    pytest.param(
        GREENHOUSE, req({"Signature": "sha256 " + "zz" * 32}), "malformed", "Signature", id="gh-hex"
    ),
    pytest.param(
        GREENHOUSE, req({"Signature": "sha256 abc"}), "malformed", "Signature", id="gh-short"
    ),
    pytest.param(
        GREENHOUSE,
        req({"Signature": "sha256 " + "a" * 1_000_000}),
        "malformed",
        "Signature",
        id="gh-huge",
    ),
    pytest.param(
        GREENHOUSE,
        req({"Signature": "sha256 " + "\u0663" * 64}),
        "malformed",
        "Signature",
        id="gh-arabic-digits",
    ),
    pytest.param(
        GREENHOUSE,
        req({"Signature": f"sha256 {GOOD_HEX}"}, body=b""),
        "mismatch",
        "Signature",
        id="gh-empty-body",
    ),
    pytest.param(
        GREENHOUSE,
        req({"Signature": f"sha256 {GOOD_HEX}"}, body=NOT_UTF8),
        "mismatch",
        "Signature",
        id="gh-not-utf8-body",
    ),
    # Ashby
    pytest.param(ASHBY, req({}), "missing", "Ashby-Signature", id="ashby-missing-header"),
    pytest.param(
        ASHBY,
        req({"Ashby-Signature": f"sha1={GOOD_HEX}"}),
        "malformed",
        "Ashby-Signature",
        id="ashby-sha1=",
    ),
    pytest.param(
        ASHBY,
        req({"Ashby-Signature": f"sha256 {GOOD_HEX}"}),
        "malformed",
        "Ashby-Signature",
        id="ashby-space-not-equals",
    ),
    pytest.param(
        ASHBY,
        req({"Ashby-Signature": "sha256=" + "g" * 64}),
        "malformed",
        "Ashby-Signature",
        id="ashby-non-hex",
    ),
    pytest.param(
        ASHBY,
        req({"Ashby-Signature": f"sha256={GOOD_HEX}"}, body=b""),
        "mismatch",
        "Ashby-Signature",
        id="ashby-empty-body",
    ),
    pytest.param(
        ASHBY,
        req({"Ashby-Signature": f"sha256={GOOD_HEX}"}, body=NOT_UTF8),
        "mismatch",
        "Ashby-Signature",
        id="ashby-not-utf8-body",
    ),
    # Lever
    pytest.param(LEVER, req({}, body=b""), "malformed", None, id="lever-empty-body"),
    pytest.param(LEVER, req({}, body=NOT_UTF8), "malformed", None, id="lever-not-utf8-body"),
    pytest.param(LEVER, req({}, body=b"token=t"), "malformed", None, id="lever-not-json"),
    pytest.param(LEVER, req({}, body=b"[1, 2]"), "malformed", None, id="lever-json-array"),
    pytest.param(LEVER, req({}, body=b"[" * 100_000), "malformed", None, id="lever-deep-json"),
    pytest.param(LEVER, req({}, body=b"1" * 10_000), "malformed", None, id="lever-huge-number"),
    pytest.param(
        LEVER, req({}, body=lever_document(token=DROP)), "missing", "token", id="lever-no-token"
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(signature=DROP)),
        "missing",
        "signature",
        id="lever-no-signature",
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(triggeredAt=DROP)),
        "missing",
        "triggeredAt",
        id="lever-no-triggeredAt",
    ),
    pytest.param(
        LEVER, req({}, body=lever_document(token=7)), "malformed", "token", id="lever-int-token"
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(triggeredAt=True)),
        "malformed",
        "triggeredAt",
        id="lever-bool-triggeredAt",
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(triggeredAt=1767225600000.0)),
        "malformed",
        "triggeredAt",
        id="lever-float-triggeredAt",
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(triggeredAt=-1)),
        "malformed",
        "triggeredAt",
        id="lever-negative-triggeredAt",
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(triggeredAt="2026-01-01T00:00:00Z")),
        "malformed",
        "triggeredAt",
        id="lever-iso-triggeredAt",
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(signature="sha256=" + GOOD_HEX)),
        "malformed",
        "signature",
        id="lever-prefixed-signature",
    ),
    pytest.param(
        LEVER,
        req({}, body=lever_document(signature="ab" * 20)),
        "malformed",
        "signature",
        id="lever-sha1-length",
    ),
    pytest.param(
        LEVER, req({}, body=lever_document()), "mismatch", "signature", id="lever-wrong-signature"
    ),
    # HubSpot
    pytest.param(HUBSPOT, req({}), "missing", "X-HubSpot-Signature-Version", id="hs-no-headers"),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": GOOD_B64}),
        "missing",
        V3_TS,
        id="hs-v3-no-timestamp",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": "not base64!", V3_TS: "1767225600000"}),
        "malformed",
        "X-HubSpot-Signature-v3",
        id="hs-v3-not-base64",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": b64(b"\x00" * 20), V3_TS: "1767225600000"}),
        "malformed",
        "X-HubSpot-Signature-v3",
        id="hs-v3-sha1-length",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": GOOD_B64, V3_TS: "1767225600000.5"}),
        "malformed",
        V3_TS,
        id="hs-v3-fractional-timestamp",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": GOOD_B64, V3_TS: "9" * 5000}),
        "malformed",
        V3_TS,
        id="hs-v3-huge-timestamp",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": GOOD_B64, V3_TS: "1767225600000"}, body=b""),
        "mismatch",
        "X-HubSpot-Signature-v3",
        id="hs-v3-empty-body",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": GOOD_B64, V3_TS: "1767225600000"}, body=NOT_UTF8),
        "mismatch",
        "X-HubSpot-Signature-v3",
        id="hs-v3-not-utf8-body",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-v3": GOOD_B64, V3_TS: "1767225600000"}, url="https://x/\ud800"),
        "malformed",
        "url",
        id="hs-v3-unencodable-url",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-Version": "v9", "X-HubSpot-Signature": GOOD_HEX}),
        "malformed",
        "X-HubSpot-Signature-Version",
        id="hs-unknown-version",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-Version": "v1", "X-HubSpot-Signature": "sha256=" + GOOD_HEX}),
        "malformed",
        "X-HubSpot-Signature",
        id="hs-v1-prefixed",
    ),
    pytest.param(
        HUBSPOT,
        req({"X-HubSpot-Signature-Version": "v1"}),
        "missing",
        "X-HubSpot-Signature",
        id="hs-v1-no-signature",
    ),
    # Standard Webhooks
    pytest.param(
        STANDARD,
        req({"webhook-timestamp": "1767225600", "webhook-signature": "v1," + GOOD_B64}),
        "missing",
        "webhook-id",
        id="std-no-id",
    ),
    pytest.param(
        STANDARD,
        req({"webhook-id": "msg_1", "webhook-signature": "v1," + GOOD_B64}),
        "missing",
        "webhook-timestamp",
        id="std-no-timestamp",
    ),
    pytest.param(STANDARD, req(STANDARD_OK), "missing", "webhook-signature", id="std-no-signature"),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-timestamp": "soon", "webhook-signature": "v1," + GOOD_B64}),
        "malformed",
        "webhook-timestamp",
        id="std-word-timestamp",
    ),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-timestamp": "-5", "webhook-signature": "v1," + GOOD_B64}),
        "malformed",
        "webhook-timestamp",
        id="std-negative-timestamp",
    ),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-signature": "v1a," + b64(b"\x00" * 64)}),
        "malformed",
        "webhook-signature",
        id="std-only-asymmetric",
    ),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-signature": "v1,!!!not-base64!!!"}),
        "malformed",
        "webhook-signature",
        id="std-not-base64",
    ),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-signature": "sha256=" + GOOD_HEX}),
        "malformed",
        "webhook-signature",
        id="std-wrong-prefix",
    ),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-id": "msg_\ud800", "webhook-signature": "v1," + GOOD_B64}),
        "malformed",
        "webhook-id",
        id="std-unencodable-id",
    ),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-signature": "v1," + GOOD_B64}, body=NOT_UTF8),
        "mismatch",
        "webhook-signature",
        id="std-not-utf8-body",
    ),
    pytest.param(
        STANDARD,
        req({**STANDARD_OK, "webhook-signature": "v1," + GOOD_B64}, body=b""),
        "mismatch",
        "webhook-signature",
        id="std-empty-body",
    ),
]


@pytest.mark.parametrize(("verifier", "request_", "reason", "field"), HOSTILE)
def test_hostile_input_gives_the_right_reason(
    verifier: SignatureVerifier, request_: InboundRequest, reason: str, field: str | None
) -> None:
    assert reason_of(verifier, request_) == (reason, field)


SECRET = "do-not-leak-this-secret"


@pytest.mark.parametrize("name", SCHEMES)
def test_errors_never_contain_the_secret_the_signature_or_the_body(name: str) -> None:
    scheme = SCHEMES[name]
    secret = scheme.secret(SECRET)
    signed = scheme.sign(scheme.secret("another-secret"), BODY)

    with pytest.raises(SignatureError) as caught:
        scheme.make([secret]).verify(signed)

    error = caught.value
    shown = " ".join([str(error), error.detail, error.field or "", repr(error.args)])
    assert error.reason in REASONS
    assert SECRET not in shown and secret not in shown
    assert "candidate_stage_change" not in shown and "opp-1" not in shown
    for value in signed.headers.values():
        assert value not in shown
    assert error.__cause__ is None


# --- properties: arbitrary input never escapes as anything but SignatureError ----------------

HEADER_NAMES = [
    "Signature",
    "Ashby-Signature",
    "X-HubSpot-Signature",
    "X-HubSpot-Signature-v3",
    "X-HubSpot-Signature-Version",
    "X-HubSpot-Request-Timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
]
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=80)
signature_like = st.one_of(
    any_text,
    st.from_regex(r"(sha256|sha1|SHA256)[ =][0-9a-fA-Fz]{0,70}", fullmatch=True),
    st.from_regex(r"(v1,[A-Za-z0-9+/=]{0,50} ?){1,4}", fullmatch=True),
    st.from_regex(r"[0-9.\-]{0,25}", fullmatch=True),
    st.sampled_from(["v1", "v2", "v3", "V1"]),
)
header_name = st.one_of(
    st.sampled_from(HEADER_NAMES).flatmap(
        lambda name: st.sampled_from([name, name.lower(), name.upper()])
    ),
    any_text,
)
headers_strategy = st.dictionaries(header_name, signature_like, max_size=8)
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        any_text,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(any_text, inner)),
    max_leaves=8,
)
lever_like_body = st.dictionaries(
    st.sampled_from(["token", "triggeredAt", "signature", "data", "event"]), json_value
).map(lambda document: json.dumps(document).encode())
body_strategy = st.one_of(st.binary(max_size=200), lever_like_body)
ALL_VERIFIERS: list[SignatureVerifier] = [GREENHOUSE, ASHBY, LEVER, HUBSPOT, STANDARD]


@settings(max_examples=400, database=None, deadline=None)
@given(headers=headers_strategy, body=body_strategy, method=any_text)
def test_random_headers_and_bodies_only_ever_raise_signature_error(
    headers: dict[str, str], body: bytes, method: str
) -> None:
    request = InboundRequest(headers=headers, body=body, method=method, url=HUBSPOT_URL)
    for verifier in ALL_VERIFIERS:
        try:
            verifier.verify(request)
        except SignatureError as error:
            assert error.reason in REASONS
            assert error.scheme == verifier.scheme


@settings(max_examples=200, database=None, deadline=None)
@given(body=st.binary(max_size=500))
def test_any_body_bytes_round_trip_when_signed_correctly(body: bytes) -> None:
    for name in ["greenhouse", "ashby", "hubspot", "standard_webhooks"]:
        scheme = SCHEMES[name]
        secret = scheme.secret("s")
        assert scheme.make([secret]).verify(scheme.sign(secret, body)).key_index == 0
