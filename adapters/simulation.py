"""What every loopback simulator shares: injected faults and the ``/_faults`` harness route.

A fault answers the next ``remaining`` requests whose path starts with ``path_prefix`` with
``status`` (and ``Retry-After`` when given); each simulator renders it in its vendor's error
shape. Tests call ``fail_next`` directly; a demo or a person can POST ``/_faults``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
