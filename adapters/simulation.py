"""What every loopback simulator shares: injected faults and the ``/_faults`` harness route.

A fault answers the next ``remaining`` requests whose path starts with ``path_prefix`` with
``status`` (and ``Retry-After`` when given); each simulator renders it in its vendor's error
shape. Tests call ``fail_next`` directly; a demo or a person can POST ``/_faults``.

``Chaos`` is the random kind, for fault-injection runs: every request independently may get a
5xx, a 429 with ``Retry-After``, or hang past the client's timeout (and then be processed, as
a vendor's server would); ``outage`` answers 503 to everything until switched off.

Also here, because several vendors' simulators need them alike: HTTP Basic parsing, a sliding
rate window and the body of a request as it is recorded.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web


@dataclass
class Fault:
    status: int
    retry_after: float | None = None
    path_prefix: str = "/"
    remaining: int = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(int(self.retry_after))} if self.retry_after is not None else {}


def take_fault(faults: list[Fault], path: str) -> Fault | None:
    """The first live fault for this path, used up by one; None when the request may pass."""
    for fault in faults:
        if fault.remaining > 0 and path.startswith(fault.path_prefix):
            fault.remaining -= 1
            return fault
    return None


class FaultInjection:
    """``fail_next`` for a simulator that keeps its live faults in ``injected_faults()`` (in its
    resettable state, so ``/_reset`` clears them)."""

    default_fault_prefix = "/"  # where a fault applies when no ``path_prefix`` is given

    def injected_faults(self) -> list[Fault]:
        raise NotImplementedError

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status``."""
        prefix = self.default_fault_prefix if path_prefix is None else path_prefix
        self.injected_faults().append(Fault(status, retry_after, prefix, times))


FailNext = Callable[..., None]


def fault_route(
    fail_next: FailNext, default_prefix: str = "/"
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``POST /_faults {"status", "times"?, "retry_after"?, "path_prefix"?}``."""

    async def add_fault(request: web.Request) -> web.Response:
        body = await request.json()
        fail_next(
            int(body["status"]),
            times=int(body.get("times", 1)),
            retry_after=body.get("retry_after"),
            path_prefix=str(body.get("path_prefix", default_prefix)),
        )
        return web.json_response({"ok": True})

    return add_fault


ChaosKind = Literal["outage", "error", "rate_limit", "timeout"]


@dataclass
class Chaos:
    """Random faults, drawn per request; ``injected`` counts what was drawn, by kind."""

    error_rate: float = 0.0  # answered 500/502/503
    rate_limit_rate: float = 0.0  # answered 429 with Retry-After
    retry_after: float = 1.0
    timeout_rate: float = 0.0  # held for ``hang`` seconds, then processed anyway
    hang: float = 0.0
    outage: bool = False  # every request answers 503
    seed: int | None = None
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.error_rate + self.rate_limit_rate + self.timeout_rate > 1:
            raise ValueError("chaos rates add up to more than 1")
        self._rng = random.Random(self.seed)

    def draw(self) -> ChaosKind | None:
        """The fault for one request, or None when it may pass."""
        kind: ChaosKind | None = None
        if self.outage:
            kind = "outage"
        else:
            roll = self._rng.random()
            rates: tuple[tuple[ChaosKind, float], ...] = (
                ("error", self.error_rate),
                ("rate_limit", self.rate_limit_rate),
                ("timeout", self.timeout_rate),
            )
            for name, rate in rates:
                if roll < rate:
                    kind = name
                    break
                roll -= rate
        if kind is not None:
            self.injected[kind] += 1
        return kind

    def error_status(self) -> int:
        return self._rng.choice((500, 502, 503))


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header; None when absent or unreadable."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def sliding_window_wait(sent: deque[float], now: float, limit: int, window: float) -> float | None:
    """Count a request at ``now`` against ``limit`` per ``window`` seconds (``sent`` holds the
    admitted ones): None when admitted, else the seconds until the oldest leaves the window."""
    while sent and now - sent[0] >= window:
        sent.popleft()
    if len(sent) < limit:
        sent.append(now)
        return None
    return sent[0] + window - now


async def recorded_body(request: web.Request) -> Any:
    """A request's body as a simulator records it: the JSON, else the text; None when empty."""
    text = await request.text() if request.can_read_body else ""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
