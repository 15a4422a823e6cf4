"""Inbound webhook sources for the daemon: verify the signature, then normalise.

Each source turns a delivery into canonical events or a refusal the server answers with:
401 for a missing, wrong or stale signature (the reason, never the secret); 400 for a body that
is not the vendor's shape (naming the field); 202 for a known event nurture does not map.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from adapters.ashby.webhooks import parse_webhook as parse_ashby
from adapters.greenhouse.webhooks import parse_webhook as parse_greenhouse
from adapters.hubspot.webhooks import parse_webhook as parse_hubspot
from adapters.normalise import Ignored, PayloadError, WebhookOutcome, normalise_email
from adapters.signatures import (
    AshbyVerifier,
    GreenhouseVerifier,
    HubSpotVerifier,
    InboundRequest,
    SignatureError,
    SignatureVerifier,
    Verified,
)
from engine import AdapterRejected, Event
from engine.webhook_handler import InputRejected, Received

Parser = Callable[[Mapping[str, str], bytes], WebhookOutcome]
LookupEmail = Callable[[str], Awaitable[str | None]]


class VerifiedSource:
    """A vendor whose deliveries are complete once verified (Greenhouse, Ashby)."""

    def __init__(
        self,
        name: str,
        verifier: SignatureVerifier,
        parser: Parser,
        *,
        replay_keys: bool = False,
    ) -> None:
        self.name = name
        self.verifier = verifier
        self.parser = parser
        # the scheme signs the body only, with no timestamp, and the delivery id is a header
        # anyone can change: remember what was signed, so a replay is a duplicate
        self.replay_keys = replay_keys

    def _verify(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Verified:
        try:
            return self.verifier.verify(
                InboundRequest(headers=headers, body=body, method=method, url=url)
            )
        except SignatureError as exc:
            raise InputRejected(
                401, f"signature_{exc.reason}", f"{exc.detail} ({exc.field or 'signature'})"
            ) from None

    def _parse(self, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
        try:
            return self.parser(headers, body)
        except PayloadError as exc:
            raise InputRejected(400, "bad_payload", str(exc)) from None

    async def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Received:
        verified = self._verify(method, url, headers, body)
        outcome = self._parse(headers, body)
        if isinstance(outcome, Ignored):
            return Received(ignored=outcome.reason)
        return Received(
            events=tuple(outcome.events),
            ignored="; ".join(i.reason for i in outcome.ignored) or None,
            replay_key=verified.replay_key if self.replay_keys else None,
        )


class HubSpotSource(VerifiedSource):
    """HubSpot names contacts by id only; an unsubscribe needs the address, so look it up."""

    def __init__(self, verifier: SignatureVerifier, lookup_email: LookupEmail) -> None:
        super().__init__("hubspot", verifier, parse_hubspot)
        self.lookup_email = lookup_email

    async def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Received:
        self._verify(method, url, headers, body)
        outcome = self._parse(headers, body)
        if isinstance(outcome, Ignored):
            return Received(ignored=outcome.reason)
        events: list[Event] = list(outcome.events)
        ignored = [i.reason for i in outcome.ignored]
        for lookup in outcome.lookups:
            try:
                email = await self.lookup_email(lookup.contact_id)
            except AdapterRejected as exc:
                if exc.status != 404:
                    raise  # the server answers 503: HubSpot retries
                email = None  # deleted since: there is nobody left to unsubscribe
            address = normalise_email(email)  # complete() raises on a non-address: was a 500
            if address:
                events.append(lookup.complete(address))
            else:
                ignored.append(f"HubSpot contact {lookup.contact_id[:40]} has no email address")
        return Received(events=tuple(events), ignored="; ".join(ignored) or None)


def greenhouse(secrets: Sequence[str]) -> VerifiedSource:
    return VerifiedSource(
        "greenhouse",
        GreenhouseVerifier(secrets),
        lambda headers, body: parse_greenhouse(headers, body),
        replay_keys=True,
    )


def ashby(secrets: Sequence[str]) -> VerifiedSource:
    # no replay keys: Ashby's event id comes from the signed body (webhookActionId, else the
    # body's digest), so a replay already arrives as a duplicate
    return VerifiedSource(
        "ashby", AshbyVerifier(secrets), lambda headers, body: parse_ashby(headers, body)
    )


def hubspot(secrets: Sequence[str], lookup_email: LookupEmail) -> HubSpotSource:
    return HubSpotSource(HubSpotVerifier(secrets), lookup_email)


class LeverSource:
    """Lever signs only ``token + triggeredAt`` and sends ids, so the event is read back from
    Lever's API (the client) after the signature is checked."""

    name = "lever"

    def __init__(self, secrets: Sequence[str], reader: Any) -> None:
        from adapters.signatures import LeverVerifier

        self.verifier = LeverVerifier(secrets)
        self.reader = reader

    async def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Received:
        from adapters.lever.webhooks import verify_and_parse

        request = InboundRequest(headers=headers, body=body, method=method, url=url)
        try:
            outcome = await verify_and_parse(request, verifier=self.verifier, reader=self.reader)
        except SignatureError as exc:
            raise InputRejected(
                401, f"signature_{exc.reason}", f"{exc.detail} ({exc.field or 'signature'})"
            ) from None
        except PayloadError as exc:
            raise InputRejected(400, "bad_payload", str(exc)) from None
        if isinstance(outcome, Ignored):
            return Received(ignored=outcome.reason)
        return Received(
            events=tuple(outcome.events),
            ignored="; ".join(i.reason for i in outcome.ignored) or None,
        )


def lever(secrets: Sequence[str], reader: Any) -> LeverSource:
    return LeverSource(secrets, reader)
