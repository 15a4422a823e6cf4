"""Verify inbound webhook signatures against the raw request body bytes.

One verifier per scheme; each takes a sequence of secrets (any one may match, so a secret can be
rotated without downtime) and exposes ``verify(request) -> Verified``. Every failure is a
``SignatureError`` whose ``reason`` is one of ``REASONS``; the webhook server answers all of them
with HTTP 401 and may show ``reason``, ``field`` and ``detail``, which never contain a secret,
a header value or body content. Timed schemes read "now" from an injected clock.

Schemes, with the contract's confidence (/work/shared/contracts/README.md: [V] confirmed,
[P] partial, [U] unverified):

greenhouse
    ``Signature: sha256 <hex>`` = hex HMAC-SHA256(secret, raw body) [V] (section 1.1). No
    timestamp, so no replay window here; see ``GreenhouseVerifier``.
lever
    Not a header: the JSON body carries ``token``, ``triggeredAt`` (epoch ms) and ``signature`` =
    hex HMAC-SHA256(signatureToken, token + str(triggeredAt)) [P] (section 2.1: community code
    only, Lever's own reference was not reachable). The signature does not cover ``data`` [P].
    Lever's retry policy is [U], so the replay window is our own choice.
ashby
    ``Ashby-Signature: sha256=<hex>`` = hex HMAC-SHA256(secret token, raw body) [V] (section 3).
    No timestamp.
hubspot
    v3 [V] (section 4.5): ``X-HubSpot-Signature-v3`` = base64 HMAC-SHA256(client secret,
    METHOD + URI + body + timestamp) with ``X-HubSpot-Request-Timestamp`` in epoch ms, rejected
    when older than 300 s. Decoding some percent-escapes in the URI first is [P] in the contract
    (HubSpot's current page lists the table used below). v1/v2 [V], chosen by
    ``X-HubSpot-Signature-Version``: sha256_hex(secret + body) and
    sha256_hex(secret + METHOD + URI + body); unsigned in time, so accepted only on request.
standard_webhooks
    Not in the contract; implemented from the Standard Webhooks spec 1.0.0
    (https://www.standardwebhooks.com, ``spec/standard-webhooks.md``) and checked against its
    reference library's test vector: ``webhook-id``, ``webhook-timestamp`` (epoch s),
    ``webhook-signature`` (space-separated ``v1,<base64>``), content ``{id}.{timestamp}.{body}``,
    key = base64 after ``whsec_``, 5 minutes tolerance either way. Asymmetric ``v1a`` entries are
    ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final, Literal, Protocol

Reason = Literal["missing", "malformed", "mismatch", "stale", "future"]
REASONS: Final[tuple[Reason, ...]] = ("missing", "malformed", "mismatch", "stale", "future")

Clock = Callable[[], datetime]
Secret = str | bytes

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_HEX_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")
# Standard base64 of a 32-byte digest: 43 symbols and one pad character (tolerated if dropped).
_B64_SHA256: Final = re.compile(r"[A-Za-z0-9+/]{43}=?")
# 19 digits still fit in a signed 64-bit integer; anything longer is not a timestamp.
_MAX_TIMESTAMP_DIGITS: Final = 19

# HubSpot's v3 page: decode exactly these escapes in the URI before signing; other escapes stay.
_HUBSPOT_URI_DECODE: Final = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_HUBSPOT_URI_ESCAPE: Final = re.compile(
    "|".join(re.escape(escape) for escape in _HUBSPOT_URI_DECODE), re.IGNORECASE
)


class SignatureError(Exception):
    """An inbound request failed verification.

    ``reason`` is one of ``REASONS``: ``missing`` (header or field absent or empty),
    ``malformed`` (present but not in the scheme's format), ``mismatch`` (well-formed, but no
    secret produces it), ``stale`` / ``future`` (signed timestamp outside the window).
    ``field`` names the header or body field at fault. Nothing here echoes request content.
    """

    def __init__(self, scheme: str, reason: Reason, detail: str, *, field: str | None) -> None:
        super().__init__(f"{scheme}: {reason}: {detail}")
        self.scheme = scheme
        self.reason: Reason = reason
        self.detail = detail
        self.field = field


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """The parts of one HTTP request a verifier reads.

    ``headers`` may be any ``Mapping[str, str]`` (a dict, aiohttp's ``CIMultiDict``); lookups are
    case-insensitive and a repeated signature header is refused. ``body`` must be the bytes as
    received: re-serialised JSON does not verify. ``url`` is the full URL the sender called
    (scheme, host, path, query) as the public internet sees it; only HubSpot v2/v3 read it.
    """

    headers: Mapping[str, str]
    body: bytes
    method: str = "POST"
    url: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            raise TypeError("body must be the raw request bytes, not decoded or re-encoded text")


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed verification.

    ``key_index`` is the position of the matching secret, so operators can see when an old secret
    stops being used. ``replay_key`` is the SHA-256 hex of exactly what was signed: a replayed
    request has the same one, so remembering it for the replay window refuses replays.
    ``message_id`` is a sender id covered by the signature (Standard Webhooks ``webhook-id``),
    else None; ``signed_at`` is the signed timestamp for timed schemes, else None.
    """

    scheme: str
    key_index: int
    replay_key: str
    version: str | None = None
    signed_at: datetime | None = None
    message_id: str | None = None


class SignatureVerifier(Protocol):
    """What the webhook server calls for each inbound request."""

    @property
    def scheme(self) -> str: ...

    def verify(self, request: InboundRequest) -> Verified: ...


class GreenhouseVerifier:
    """Greenhouse: ``Signature: sha256 <hex>`` over the raw body.

    The scheme has no timestamp, so a captured request verifies forever. Replays must be refused
    by de-duplication elsewhere: the contract names ``Greenhouse-Event-ID``, but that header is not
    signed and a replayer can change it, so also de-duplicate on ``Verified.replay_key`` (which
    depends on the body only).
    """

    scheme: ClassVar[str] = "greenhouse"

    def __init__(self, secrets: Sequence[Secret]) -> None:
        self._keys = _text_keys(secrets)

    def verify(self, request: InboundRequest) -> Verified:
        """Return ``Verified`` or raise ``SignatureError``."""
        value = _Headers(self.scheme, request.headers).require("Signature")
        algorithm, _, digest = value.partition(" ")
        if algorithm.lower() != "sha256":
            raise SignatureError(
                self.scheme, "malformed", "expected 'sha256 <hex>'", field="Signature"
            )
        given = _parse_hex(self.scheme, digest.strip(), "Signature")
        index = _match_hmac(self.scheme, self._keys, request.body, given, "Signature")
        return Verified(self.scheme, index, _sha256_hex(request.body))


class AshbyVerifier:
    """Ashby: ``Ashby-Signature: sha256=<hex>`` over the raw body.

    No timestamp, as for Greenhouse: de-duplicate on ``Verified.replay_key`` to refuse replays.
    """

    scheme: ClassVar[str] = "ashby"

    def __init__(self, secrets: Sequence[Secret]) -> None:
        self._keys = _text_keys(secrets)

    def verify(self, request: InboundRequest) -> Verified:
        """Return ``Verified`` or raise ``SignatureError``."""
        header = "Ashby-Signature"
        value = _Headers(self.scheme, request.headers).require(header)
        algorithm, equals, digest = value.partition("=")
        if algorithm.strip().lower() != "sha256" or not equals:
            raise SignatureError(self.scheme, "malformed", "expected 'sha256=<hex>'", field=header)
        given = _parse_hex(self.scheme, digest.strip(), header)
        index = _match_hmac(self.scheme, self._keys, request.body, given, header)
        return Verified(self.scheme, index, _sha256_hex(request.body))


class LeverVerifier:
    """Lever: ``signature`` = hex HMAC-SHA256(signatureToken, token + str(triggeredAt)) in the body.

    The signature covers ``token`` and ``triggeredAt`` only, not ``data``: whoever holds one
    signed delivery can attach any ``data`` to it while ``triggeredAt`` is inside the window. So
    the window is short and ``Verified.replay_key`` (a digest of token and triggeredAt) must be
    de-duplicated for as long as the window lasts; treat ``data`` as a hint and read the
    opportunity back from Lever's API.

    Default window: 5 minutes old, 5 minutes ahead, like HubSpot and Standard Webhooks. Lever's
    retry policy is unverified; if Lever retries with the original ``triggeredAt``, retries later
    than ``max_age`` fail as ``stale``. Widen ``max_age`` if that shows up in the logs, but keep
    the de-duplication store at least as long.
    """

    scheme: ClassVar[str] = "lever"

    def __init__(
        self,
        secrets: Sequence[Secret],
        *,
        max_age: timedelta = timedelta(minutes=5),
        max_future: timedelta = timedelta(minutes=5),
        now: Clock | None = None,
    ) -> None:
        self._keys = _text_keys(secrets)
        self._window = _Window(self.scheme, max_age, max_future, now or _utc_now)

    def verify(self, request: InboundRequest) -> Verified:
        """Return ``Verified`` or raise ``SignatureError``; headers are not read."""
        document = self._parse_body(request.body)
        token = self._text_field(document, "token")
        triggered_at = self._triggered_at(document)
        given = _parse_hex(self.scheme, self._text_field(document, "signature"), "signature")
        message = _utf8(self.scheme, token, "token") + triggered_at.encode("ascii")
        index = _match_hmac(self.scheme, self._keys, message, given, "signature")
        # Checked after the signature, so "stale" and "future" always describe a genuine delivery.
        signed_at = self._window.check(int(triggered_at), "triggeredAt")
        return Verified(self.scheme, index, _sha256_hex(message), signed_at=signed_at)

    def _parse_body(self, body: bytes) -> dict[str, object]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            # ``from None``: the decoder's exception keeps the whole body (``.doc``, ``.object``).
            raise SignatureError(
                self.scheme, "malformed", "body is not UTF-8 JSON", field=None
            ) from None
        if not isinstance(document, dict):
            raise SignatureError(self.scheme, "malformed", "body is not a JSON object", field=None)
        return document

    def _text_field(self, document: dict[str, object], name: str) -> str:
        value = document.get(name)
        if value is None or value == "":
            raise SignatureError(self.scheme, "missing", f"body has no {name!r}", field=name)
        if not isinstance(value, str):
            raise SignatureError(self.scheme, "malformed", f"{name!r} is not a string", field=name)
        return value

    def _triggered_at(self, document: dict[str, object]) -> str:
        """The digits as they enter the signed message; only integers render unambiguously."""
        value = document.get("triggeredAt")
        if value is None or value == "":
            raise SignatureError(
                self.scheme, "missing", "body has no 'triggeredAt'", field="triggeredAt"
            )
        # bool is an int subclass; 1.5e12 would print differently here than in Lever's code.
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)
        if isinstance(value, str) and _is_digits(value):
            return value
        raise SignatureError(
            self.scheme, "malformed", "'triggeredAt' is not epoch milliseconds", field="triggeredAt"
        )


class HubSpotVerifier:
    """HubSpot request signatures: v3 always; v1 and v2 only with ``allow_legacy=True``.

    v3 wins whenever ``X-HubSpot-Signature-v3`` is present. v1/v2 carry no timestamp, so a
    captured request verifies forever, and since HubSpot sends the old header beside v3, accepting
    them by default would let anyone strip the v3 headers from a captured request and replay it.
    Enable them only for senders that sign with v1/v2 alone, and de-duplicate ``replay_key``.

    ``request.url`` must be the full URL HubSpot called, as configured in HubSpot (behind a proxy,
    build it from configuration, not from the Host header); an empty one raises ``ValueError``.
    """

    scheme: ClassVar[str] = "hubspot"
    _V3: ClassVar[str] = "X-HubSpot-Signature-v3"
    _TIMESTAMP: ClassVar[str] = "X-HubSpot-Request-Timestamp"
    _LEGACY: ClassVar[str] = "X-HubSpot-Signature"
    _VERSION: ClassVar[str] = "X-HubSpot-Signature-Version"

    def __init__(
        self,
        secrets: Sequence[Secret],
        *,
        max_age: timedelta = timedelta(seconds=300),
        max_future: timedelta = timedelta(seconds=300),
        allow_legacy: bool = False,
        now: Clock | None = None,
    ) -> None:
        self._keys = _text_keys(secrets)
        self._window = _Window(self.scheme, max_age, max_future, now or _utc_now)
        self._allow_legacy = allow_legacy

    def verify(self, request: InboundRequest) -> Verified:
        """Return ``Verified`` or raise ``SignatureError``."""
        headers = _Headers(self.scheme, request.headers)
        if headers.get(self._V3):
            return self._verify_v3(headers, request)
        if not self._allow_legacy:
            raise SignatureError(
                self.scheme,
                "missing",
                f"no {self._V3} header (v1/v2 signatures are not accepted)",
                field=self._V3,
            )
        version = headers.require(self._VERSION).lower()
        if version == "v1":
            message = request.body
        elif version == "v2":
            message = (
                request.method.upper().encode("ascii", "replace")
                + _utf8(self.scheme, _required_url(request), "url")
                + request.body
            )
        else:
            raise SignatureError(
                self.scheme, "malformed", "version is neither v1 nor v2", field=self._VERSION
            )
        given = _parse_hex(self.scheme, headers.require(self._LEGACY), self._LEGACY)
        # v1/v2 are plain SHA-256 of secret + message, not an HMAC.
        index = _match(
            self.scheme,
            [hashlib.sha256(key + message).digest() for key in self._keys],
            given,
            self._LEGACY,
        )
        return Verified(self.scheme, index, _sha256_hex(message), version=version)

    def _verify_v3(self, headers: _Headers, request: InboundRequest) -> Verified:
        given = _parse_b64_sha256(self.scheme, headers.require(self._V3), self._V3)
        timestamp = headers.require(self._TIMESTAMP)
        if not _is_digits(timestamp):
            raise SignatureError(
                self.scheme,
                "malformed",
                "timestamp is not epoch milliseconds",
                field=self._TIMESTAMP,
            )
        uri = _HUBSPOT_URI_ESCAPE.sub(
            lambda match: _HUBSPOT_URI_DECODE[match.group(0).upper()], _required_url(request)
        )
        message = (
            request.method.upper().encode("ascii", "replace")
            + _utf8(self.scheme, uri, "url")
            + request.body
            + timestamp.encode("ascii")
        )
        index = _match_hmac(self.scheme, self._keys, message, given, self._V3)
        signed_at = self._window.check(int(timestamp), self._TIMESTAMP)
        return Verified(self.scheme, index, _sha256_hex(message), version="v3", signed_at=signed_at)


class StandardWebhooksVerifier:
    """Standard Webhooks v1 (symmetric): HMAC-SHA256 over ``{id}.{timestamp}.{body}``.

    Secrets are given as the sender shows them, ``whsec_<base64>`` (a bare base64 string also
    works, as in the reference library), or as the raw key bytes. The header may carry several
    signatures (the sender's own rotation); one matching entry is enough. Use
    ``Verified.message_id`` (the signed ``webhook-id``) as the idempotency key.
    """

    scheme: ClassVar[str] = "standard_webhooks"

    def __init__(
        self,
        secrets: Sequence[Secret],
        *,
        max_age: timedelta = timedelta(minutes=5),
        max_future: timedelta = timedelta(minutes=5),
        now: Clock | None = None,
    ) -> None:
        self._keys = tuple(_standard_webhooks_key(secret) for secret in _secret_list(secrets))
        self._window = _Window(self.scheme, max_age, max_future, now or _utc_now)

    def verify(self, request: InboundRequest) -> Verified:
        """Return ``Verified`` or raise ``SignatureError``."""
        headers = _Headers(self.scheme, request.headers)
        message_id = headers.require("webhook-id")
        timestamp = headers.require("webhook-timestamp")
        if not _is_digits(timestamp):
            raise SignatureError(
                self.scheme,
                "malformed",
                "timestamp is not epoch seconds",
                field="webhook-timestamp",
            )
        candidates: list[bytes] = []
        for entry in headers.require("webhook-signature").split():
            version, _, signature = entry.partition(",")
            # Other versions (v1a is ed25519) are someone else's to check; skip, don't fail.
            if version == "v1" and _B64_SHA256.fullmatch(signature):
                candidates.append(_decode_b64_sha256(signature))
        if not candidates:
            raise SignatureError(
                self.scheme,
                "malformed",
                "no well-formed 'v1,<base64>' entry",
                field="webhook-signature",
            )
        message = b".".join(
            (_utf8(self.scheme, message_id, "webhook-id"), timestamp.encode("ascii"), request.body)
        )
        expected = [hmac.new(key, message, hashlib.sha256).digest() for key in self._keys]
        matched = [_find(expected, given) for given in candidates]
        index = next((found for found in matched if found is not None), None)
        if index is None:
            raise SignatureError(
                self.scheme, "mismatch", "no signature matches", field="webhook-signature"
            )
        signed_at = self._window.check(int(timestamp) * 1000, "webhook-timestamp")
        return Verified(
            self.scheme,
            index,
            _sha256_hex(message),
            version="v1",
            signed_at=signed_at,
            message_id=message_id,
        )


# --- helpers ---------------------------------------------------------------------------------


class _Headers:
    """Case-insensitive header lookup that notices repeated headers."""

    def __init__(self, scheme: str, raw: Mapping[str, str]) -> None:
        self._scheme = scheme
        self._values: dict[str, list[object]] = {}
        # items() yields every value of a multi-dict, so repeats are visible here.
        for name, value in raw.items():
            if isinstance(name, str):
                self._values.setdefault(name.lower(), []).append(value)

    def get(self, name: str) -> str | None:
        values = self._values.get(name.lower())
        if not values:
            return None
        if len(values) > 1:
            # Two signatures for one request: which one a proxy or framework keeps is arbitrary.
            raise SignatureError(self._scheme, "malformed", "header is repeated", field=name)
        value = values[0]
        if not isinstance(value, str):
            raise SignatureError(self._scheme, "malformed", "header is not text", field=name)
        return value.strip()

    def require(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise SignatureError(self._scheme, "missing", "header is absent or empty", field=name)
        return value


@dataclass(frozen=True, slots=True)
class _Window:
    """Replay window on a signed epoch-millisecond timestamp."""

    scheme: str
    max_age: timedelta
    max_future: timedelta
    now: Clock

    def __post_init__(self) -> None:
        if self.max_age < timedelta(0) or self.max_future < timedelta(0):
            raise ValueError("max_age and max_future must not be negative")

    def check(self, signed_ms: int, field: str) -> datetime:
        now = self.now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)  # a naive clock is taken to be UTC, as in the engine
        # Integer milliseconds: no float rounding and no datetime overflow on hostile values.
        age_ms = (now - _EPOCH) // _MS - signed_ms
        if age_ms > self.max_age // _MS:
            raise SignatureError(self.scheme, "stale", "signed timestamp is too old", field=field)
        if -age_ms > self.max_future // _MS:
            raise SignatureError(
                self.scheme, "future", "signed timestamp is too far ahead", field=field
            )
        return _EPOCH + timedelta(milliseconds=signed_ms)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _secret_list(secrets: Sequence[Secret]) -> list[Secret]:
    # A bare string is a Sequence too; iterating it would make every character a "secret".
    if isinstance(secrets, str | bytes):
        raise TypeError("secrets must be a sequence of secrets, e.g. [current] or [new, old]")
    listed = list(secrets)
    if not listed:
        raise ValueError("at least one secret is required")
    for secret in listed:
        if not isinstance(secret, str | bytes) or not secret:
            raise ValueError("each secret must be a non-empty str or bytes")
    return listed


def _text_keys(secrets: Sequence[Secret]) -> tuple[bytes, ...]:
    return tuple(
        secret.encode("utf-8") if isinstance(secret, str) else secret
        for secret in _secret_list(secrets)
    )


def _standard_webhooks_key(secret: Secret) -> bytes:
    if isinstance(secret, bytes):
        return secret
    encoded = secret.removeprefix("whsec_")
    try:
        # The reference library tolerates missing padding; so do we.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret must be 'whsec_<base64>'") from None
    if not key:
        raise ValueError("a Standard Webhooks secret must not be empty")
    return key


def _required_url(request: InboundRequest) -> str:
    if not request.url:
        raise ValueError("HubSpot v2/v3 verification needs the full URL HubSpot called")
    return request.url


def _is_digits(value: str) -> bool:
    # isascii() first: str.isdigit() also accepts digits such as '²' and '٣'.
    return value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS


def _utf8(scheme: str, value: str, field: str) -> bytes:
    # aiohttp decodes header bytes with surrogateescape; this restores the bytes that were sent.
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise SignatureError(scheme, "malformed", "text is not encodable", field=field) from None


def _parse_hex(scheme: str, value: str, field: str) -> bytes:
    if not _HEX_SHA256.fullmatch(value):
        raise SignatureError(scheme, "malformed", "expected 64 hex digits", field=field)
    return bytes.fromhex(value)


def _parse_b64_sha256(scheme: str, value: str, field: str) -> bytes:
    if not _B64_SHA256.fullmatch(value):
        raise SignatureError(scheme, "malformed", "expected base64 of 32 bytes", field=field)
    return _decode_b64_sha256(value)


def _decode_b64_sha256(value: str) -> bytes:
    # Only called on strings matching _B64_SHA256, so decoding cannot fail.
    return base64.b64decode(value.rstrip("=") + "=")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _find(expected: Sequence[bytes], given: bytes) -> int | None:
    """Index of the first key whose digest equals ``given``; every comparison runs."""
    found: int | None = None
    for index, digest in enumerate(expected):
        if hmac.compare_digest(digest, given) and found is None:
            found = index
    return found


def _match(scheme: str, expected: Sequence[bytes], given: bytes, field: str) -> int:
    index = _find(expected, given)
    if index is None:
        raise SignatureError(scheme, "mismatch", "signature does not match", field=field)
    return index


def _match_hmac(
    scheme: str, keys: Sequence[bytes], message: bytes, given: bytes, field: str
) -> int:
    expected = [hmac.new(key, message, hashlib.sha256).digest() for key in keys]
    return _match(scheme, expected, given, field)


__all__ = [
    "REASONS",
    "AshbyVerifier",
    "Clock",
    "GreenhouseVerifier",
    "HubSpotVerifier",
    "InboundRequest",
    "LeverVerifier",
    "Reason",
    "Secret",
    "SignatureError",
    "SignatureVerifier",
    "StandardWebhooksVerifier",
    "Verified",
]
