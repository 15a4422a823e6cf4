"""Hypothesis strategies for hostile webhook deliveries, each with the answer it must get.

A ``Case`` is one request (path, headers in order with repeats, body) plus its oracle: the
statuses the API documents for it (``schema/openapi.yaml``) and, where exactly one refusal is
right, the error code. Kinds: arbitrary bytes and headers, arbitrary JSON correctly signed,
mutated genuine payloads correctly signed (so the vendor parsers run), forged and retired-secret
signatures, stale and future timestamps, one flipped byte, repeated signature headers, bodies
over the limit (plain, chunked, and a gzip bomb), empty bodies, odd text encodings and content
types, undecodable Content-Encoding, and unknown source names.
"""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.adapters.fuzzing import json_values, mutation_of
from tests.proof.target import SOURCES, Target, example

SIGNED_OK = frozenset({200, 202, 400})  # a genuine signature over any body: parsed or refused
_SIGNATURE_HEADERS = {
    "greenhouse": ("Signature",),
    "ashby": ("Ashby-Signature",),
    "hubspot": ("X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"),
    "generic": ("webhook-id", "webhook-timestamp", "webhook-signature"),
    "lever": (),
}
_KEYS = {
    "greenhouse": ["action", "payload", "application", "candidate", "email_addresses", "id"],
    "ashby": ["action", "data", "application", "candidate", "primaryEmailAddress", "value"],
    "lever": ["event", "token", "triggeredAt", "signature", "data", "opportunityId"],
    "hubspot": ["subscriptionType", "objectId", "propertyName", "propertyValue", "eventId"],
    "generic": ["type", "time", "source", "subject", "data", "candidate", "application"],
}
# printable Latin-1 without DEL: what an HTTP client can put in a header value
_HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)
_CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
        "*/*",
        "application/json; charset=ebcdic",
    ]
)


@dataclass
class Case:
    kind: str
    source: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes | list[bytes]  # a list is sent chunked, without Content-Length
    expect: frozenset[int]
    error: str | None = None  # the one right error code, when there is one

    def describe(self) -> str:
        size = len(self.body) if isinstance(self.body, bytes) else sum(map(len, self.body))
        names = ", ".join(name for name, _ in self.headers)
        return f"{self.kind} to {self.path} ({size} bytes; headers: {names})"


def _quiet_seed(source: str) -> Any:
    """A genuine payload whose candidate has no address: accepted events queue no CRM work,
    so the fuzz does not drain the CRM rate limit the interleaved valid traffic needs."""
    document = copy.deepcopy(example(source, 0, "x@proof.example.com"))
    if source == "greenhouse":
        document["payload"]["application"]["candidate"]["email_addresses"] = []
    elif source == "ashby":
        del document["data"]["application"]["candidate"]["primaryEmailAddress"]
    elif source == "generic":
        del document["data"]["candidate"]["email"]
    elif source == "lever":
        document["data"]["opportunityId"] = "no-such-opportunity"
    elif source == "hubspot":
        document[0]["objectId"] = 404_404  # no such contact: ignored after the read-back
    return document


def lever_signable(document: Any) -> bool:
    """Lever signs the body's ``token``: only an object with a non-empty string one can carry a
    signature (the daemon answers 401 ``signature_missing`` to an empty token, as to none)."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("token"), str)
        and bool(document["token"])
    )


def _signed(target: Target, source: str, document: Any, **sign: Any) -> Case:
    """``document`` signed as ``source`` would (Lever: see ``lever_signable``)."""
    if source == "lever":
        if lever_signable(document):
            body = target.lever_body(document, **sign)
            return Case("", source, "", [("Content-Type", "application/json")], body, SIGNED_OK)
        body = json.dumps(document).encode()
        return Case("", source, "", [], body, frozenset({401}))
    body = json.dumps(document).encode()
    headers = list(target.sign(source, body, **sign).items())
    return Case("", source, "", headers, body, SIGNED_OK)


def _bytes(case: Case) -> bytes:
    assert isinstance(case.body, bytes), "a signed case has one body"
    return case.body


def _named(case: Case, kind: str, source: str) -> Case:
    case.kind, case.source, case.path = kind, source, f"/webhooks/{source}"
    return case


@st.composite
def cases(draw: st.DrawFn, target: Target, max_body: int) -> Case:
    source = draw(st.sampled_from(SOURCES))
    seed = _quiet_seed(source)
    kind = draw(
        st.sampled_from(
            [
                "garbage",
                "signed-json",
                "mutated",
                "mutated",
                "forged",
                "retired-secret",
                "stale",
                "flipped-byte",
                "repeated-header",
                "over-limit",
                "empty",
                "encoding",
                "content-encoding",
                "unknown-source",
            ]
        )
    )
    if kind == "garbage":
        body = draw(st.binary(max_size=2048) | st.text(max_size=400).map(str.encode))
        names = [*_SIGNATURE_HEADERS[source], "Content-Type", "Greenhouse-Event-ID"]
        # one of each: a repeated Content-Type is refused by the HTTP parser (a framing case)
        headers = draw(
            st.lists(
                st.tuples(st.sampled_from(names), _HEADER_TEXT),
                max_size=5,
                unique_by=lambda header: header[0],
            )
        )
        return _named(Case("", "", "", headers, body, frozenset({401})), kind, source)
    if kind == "signed-json":
        document = draw(json_values(_KEYS[source]))
        if source == "lever" and isinstance(document, dict):
            document.setdefault("token", draw(st.text(min_size=1, max_size=20)))
        return _named(_signed(target, source, document), kind, source)
    if kind == "mutated":
        document = draw(mutation_of(seed, json_values(_KEYS[source])))
        return _named(_signed(target, source, document), kind, source)
    if kind in ("forged", "retired-secret"):
        secret = (
            draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
            if kind == "forged"
            else "retired-" + source + "-secret-0000"
        )
        case = _signed(target, source, seed, secret=secret)
        case.expect, case.error = frozenset({401}), "signature_mismatch"
        return _named(case, kind, source)
    if kind == "stale":
        if source in ("greenhouse", "ashby"):  # no signed timestamp: a replay is a duplicate
            return _named(_signed(target, source, seed), kind, source)
        import time

        skew = draw(st.integers(310, 10**7)) * draw(st.sampled_from([-1, 1]))
        case = _signed(target, source, seed, at=time.time() + skew)
        case.expect = frozenset({401})
        case.error = "signature_stale" if skew < 0 else "signature_future"
        return _named(case, kind, source)
    if kind == "flipped-byte":
        case = _signed(target, source, seed)
        if source == "lever":  # Lever signs token + triggeredAt only: flip the signature
            document = json.loads(_bytes(case))
            signature = document["signature"]
            document["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
            case.body = json.dumps(document).encode()
        else:
            flipped = bytearray(_bytes(case))
            index = draw(st.integers(0, len(flipped) - 1))
            flipped[index] ^= draw(st.integers(1, 255))
            case.body = bytes(flipped)
        case.expect, case.error = frozenset({401}), "signature_mismatch"
        return _named(case, kind, source)
    if kind == "repeated-header":
        source = draw(st.sampled_from(["greenhouse", "ashby", "hubspot", "generic"]))
        case = _signed(target, source, _quiet_seed(source))
        name, value = next(
            (n, v) for n, v in case.headers if n.lower() == _SIGNATURE_HEADERS[source][0].lower()
        )
        case.headers.append((name, draw(st.sampled_from([value, value[:-1] + "0"]))))
        case.expect, case.error = frozenset({401}), "signature_malformed"
        return _named(case, kind, source)
    if kind == "over-limit":
        size = draw(st.integers(max_body + 1, 3 * max_body))
        form = draw(st.sampled_from(["plain", "chunked", "gzip-bomb"]))
        if form == "gzip-bomb":  # small on the wire, over the limit once inflated
            raw = gzip.compress(b"0" * (size + max_body))
            headers = [("Content-Encoding", "gzip"), *target.sign(source, b"0").items()]
            return _named(Case("", "", "", headers, raw, frozenset({413})), kind, source)
        payload: bytes | list[bytes] = b"{" * size
        if form == "chunked":
            payload = [b"[" * 8192] * (size // 8192 + 1)
        headers = list(target.sign(source, b"x").items())
        over = Case("", "", "", headers, payload, frozenset({413}), "too_large")
        return _named(over, kind, source)
    if kind == "empty":
        case = _signed(target, source, None)
        case.body = b""
        if source != "lever":
            case.headers = list(target.sign(source, b"").items())
        case.expect = frozenset({401} if source == "lever" else {400})
        return _named(case, kind, source)
    if kind == "encoding":
        case = _signed(target, source, seed)
        text = _bytes(case).decode()
        codec = draw(st.sampled_from(["utf-16", "utf-32", "utf-8-sig", "latin-1", "cp500"]))
        case.body = text.replace('"', '"\u00e9', 1).encode(codec, "replace")
        if source == "lever":
            case.expect = frozenset({400, 401})  # the signature is read from the body
        else:
            case.headers = list(target.sign(source, case.body).items())
        case.headers = [(n, v) for n, v in case.headers if n != "Content-Type"]
        case.headers.append(("Content-Type", draw(_CONTENT_TYPES)))
        return _named(case, kind, source)
    if kind == "content-encoding":
        case = _signed(target, source, seed)
        case.headers.append(("Content-Encoding", draw(st.sampled_from(["gzip", "deflate"]))))
        case.expect, case.error = frozenset({400}), "bad_encoding"
        return _named(case, kind, source)
    name = draw(st.from_regex(r"[A-Za-z0-9_.~-]{1,24}", fullmatch=True))
    name = draw(st.sampled_from([name, "..", "%2e%2e", "greenhouse%00", "GreenHouse"]))
    if name in SOURCES:
        name += "x"
    case = _signed(target, "greenhouse", seed)
    case.kind, case.source, case.path = kind, name, f"/webhooks/{name}"
    # the client resolves dot segments ("." and ".."), so those reach no route (not_found)
    dots = name in (".", "..", "%2e%2e")
    case.expect, case.error = frozenset({404}), None if dots else "unknown_source"
    return case
