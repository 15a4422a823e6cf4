"""What every loopback simulator shares: injected faults and the ``/_faults`` harness route.

A fault answers the next ``remaining`` requests whose path starts with ``path_prefix`` with
``status`` (and ``Retry-After`` when given); each simulator renders it in its vendor's error
shape. Tests call ``fail_next`` directly; a demo or a person can POST ``/_faults``.

``Chaos`` is the random kind, for fault-injection runs: every request independently may get a
5xx, a 429 with ``Retry-After``, or hang past the client's timeout (and then be processed, as
a vendor's server would); ``outage`` answers 503 to everything until switched off.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

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
