"""Signed one-click links (e.g. Sequence B's "yes, keep me posted").

A token is ``base64url(payload) + "." + base64url(HMAC-SHA256(secret, payload))`` where the
payload names the candidate, the link, the sequence step that sent it and an expiry. Verifying
is constant-time; a tampered, truncated or expired token is refused and records nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class LinkRefused(Exception):
    """The token is not one we issued, or it expired."""


@dataclass(frozen=True)
class LinkClaim:
    candidate_id: str
    email: str | None
    name: str
    expires: datetime
    sequence: str | None = None
    step: str | None = None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: bytes, public_url: str, lifetime: timedelta = timedelta(days=60)):
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes")
        self._secret = secret
        self.public_url = public_url.rstrip("/")
        self.lifetime = lifetime

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def token(self, claim: LinkClaim) -> str:
        payload = json.dumps(
            {
                "c": claim.candidate_id,
                "e": claim.email,
                "n": claim.name,
                "x": int(claim.expires.timestamp()),
                "s": claim.sequence,
                "t": claim.step,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def url(
        self,
        candidate_id: str,
        email: str | None,
        name: str,
        now: datetime,
        sequence: str | None = None,
        step: str | None = None,
    ) -> str:
        claim = LinkClaim(candidate_id, email, name, now + self.lifetime, sequence, step)
        return f"{self.public_url}/l/{self.token(claim)}"

    def verify(self, token: str, now: datetime) -> LinkClaim:
        try:
            encoded, signature = token.split(".")
            payload = _unb64(encoded)
            given = _unb64(signature)
        except (ValueError, TypeError) as exc:
            raise LinkRefused("malformed") from exc
        # The decoder skips stray symbols and padding and ignores a final symbol's spare bits:
        # only the one spelling we issue is ours, or each respelling would be another click.
        if _b64(payload) != encoded or _b64(given) != signature:
            raise LinkRefused("malformed")
        if not hmac.compare_digest(given, self._sign(payload)):
            raise LinkRefused("bad signature")
        try:
            data = json.loads(payload)
            claim = LinkClaim(
                str(data["c"]),
                data.get("e"),
                str(data["n"]),
                datetime.fromtimestamp(int(data["x"]), UTC),
                data.get("s"),
                data.get("t"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkRefused("malformed") from exc
        if now >= claim.expires:
            raise LinkRefused("expired")
        return claim
