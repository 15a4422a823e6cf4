"""The webhook poster: signed deliveries at a fixed concurrency, every answer recorded.

It behaves like a vendor: a delivery is retried (same body, same delivery id) after a
connection failure, a timeout, a 429 or a 5xx, with capped exponential backoff, until it is
acknowledged (2xx) or ``give_up_after`` passes; a 4xx other than 429 is final. Every attempt
is kept (status, start, end), so a scenario knows exactly which events were accepted and when,
and can check what the daemon answered while it was down. A delivery with ``after`` waits
until that one is acknowledged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp

from tests.proof.harness import SECRETS
from tests.proof.traffic import Delivery


@dataclass(frozen=True)
class Attempt:
    status: int | None  # None: no answer (refused, reset, timed out)
    started: float  # wall clock (time.time()), comparable with the simulators' records
    ended: float
    error: str | None = None


@dataclass
class Outcome:
    delivery: Delivery
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def accepted(self) -> Attempt | None:
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.status is not None and last.status < 300 else None

    @property
    def latency(self) -> float | None:
        return None if self.accepted is None else self.accepted.ended - self.accepted.started


def sign(delivery: Delivery, url: str) -> dict[str, str]:
    """The headers the vendor itself would send (HubSpot v3 signs the URL and a timestamp)."""
    headers = {"Content-Type": "application/json"}
    if delivery.source == "greenhouse":
        key = SECRETS["GREENHOUSE_WEBHOOK_SECRET"].encode()
        digest = hmac.new(key, delivery.body, hashlib.sha256).hexdigest()
        headers |= {"Signature": f"sha256 {digest}", "Greenhouse-Event-ID": delivery.id}
    elif delivery.source == "hubspot":
        key = SECRETS["HUBSPOT_CLIENT_SECRET"].encode()
        stamp = str(int(time.time() * 1000))
        message = b"POST" + url.encode() + delivery.body + stamp.encode()
        signature = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
        headers |= {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}
    else:
        raise ValueError(f"no signing for source {delivery.source!r}")
    return headers


class Poster:
    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 8,
        give_up_after: float = 180.0,
        timeout: float = 30.0,
        seed: int = 3,
        pace: float | None = None,
    ) -> None:
        self.base_url = base_url
        self.concurrency = concurrency
        self.pace = pace  # deliveries started per second at most (None: as fast as answered)
        self.give_up_after = give_up_after
        self.timeout = timeout
        self.outcomes: dict[str, Outcome] = {}
        self._acked: dict[str, asyncio.Event] = {}
        self._rng = random.Random(seed)

    def acknowledged(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.accepted is not None]

    async def post_all(self, deliveries: Iterable[Delivery]) -> list[Outcome]:
        """Post every delivery (``concurrency`` at a time, in order); returns their outcomes."""
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        batch = list(deliveries)
        for delivery in batch:
            self._acked.setdefault(delivery.id, asyncio.Event())
            queue.put_nowait(delivery)
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            started = time.monotonic()
            count = 0

            async def worker() -> None:
                nonlocal count
                while not queue.empty():
                    delivery = queue.get_nowait()
                    if self.pace:  # spread the load over time, as vendors send it
                        count += 1
                        await asyncio.sleep(
                            max(0.0, started + count / self.pace - time.monotonic())
                        )
                    await self._deliver(session, delivery)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return [self.outcomes[d.id] for d in batch]

    async def _deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        outcome = self.outcomes.setdefault(delivery.id, Outcome(delivery))
        if delivery.after is not None and delivery.after in self._acked:
            before = self._acked[delivery.after]
            try:
                await asyncio.wait_for(before.wait(), timeout=self.give_up_after)
            except TimeoutError:
                return  # its prerequisite was never accepted: neither is this one
        url = f"{self.base_url}/webhooks/{delivery.source}"
        first = time.monotonic()
        pause = 0.05
        while True:
            started = time.time()
            status: int | None = None
            error = None
            try:
                async with session.post(
                    url, data=delivery.body, headers=sign(delivery, url)
                ) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = type(exc).__name__
            outcome.attempts.append(Attempt(status, started, time.time(), error))
            if status is not None and status < 300:
                self._acked[delivery.id].set()
                return
            if status is not None and 400 <= status < 500 and status != 429:
                return  # refused: a vendor would not retry it either
            if time.monotonic() - first > self.give_up_after:
                return
            await asyncio.sleep(pause * self._rng.uniform(0.5, 1.5))
            pause = min(pause * 2, 2.0)
