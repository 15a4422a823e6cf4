"""A loopback Slack incoming webhook: records messages; ``fail_next`` answers errors.

Routes: ``POST /services/{path}`` (the webhook), ``GET /_messages``, ``POST /_reset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class SlackSimulator:
    messages: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)

    def fail_next(self, status: int = 500, body: str = "rollup_error", times: int = 1) -> None:
        self.failures.extend([(status, body)] * times)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/{path:.*}", self._post)
        app.router.add_get("/_messages", self._list)
        app.router.add_post("/_reset", self._reset)
        return app

    async def _post(self, request: web.Request) -> web.Response:
        if self.failures:
            status, body = self.failures.pop(0)
            return web.Response(status=status, text=body)
        try:
            payload = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(payload, dict) or not payload.get("text"):
            return web.Response(status=400, text="no_text")
        self.messages.append(payload)
        return web.Response(text="ok")

    async def _list(self, _request: web.Request) -> web.Response:
        return web.json_response(self.messages)

    async def _reset(self, _request: web.Request) -> web.Response:
        self.messages.clear()
        self.failures.clear()
        return web.json_response({"ok": True})
