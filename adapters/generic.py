"""Generic HTTP: wire an unsupported ATS or CRM by configuration alone.

Outbound, ``HttpActionHandler`` runs the ``http.request`` action: ``params.method`` to
``params.url`` with ``params.headers``, plus ``params.secret_headers`` whose values come from the
environment (an absent variable is a permanent failure naming the variable, never a value), the
action's fields as the JSON body and ``Idempotency-Key: <outbox idempotency key>`` so the
receiver can drop a retried delivery. 408/409/429/5xx and network failures are retried (honouring
``Retry-After``), other non-2xx answers are permanent (see ``adapters.http.request_json``).
Redirects are not followed: secret headers must not travel to a host nobody configured.

Inbound, ``adapters.generic_webhooks`` serves ``POST /webhooks/generic``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from adapters.generic_webhooks import describe
from adapters.http import request_json
from engine.config.actions import HttpRequestParams
from engine.outbox import ActionFailed
from engine.store.queries import Claimed

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_SUCCESS: Final = tuple(range(200, 300))


class HttpActionHandler:
    """The outbox handler of ``http.request``; register it as ``{"http.request": handler}``."""

    action_type: Final = "http.request"

    def __init__(self, session: aiohttp.ClientSession, environ: Mapping[str, str]) -> None:
        self.session = session
        self.environ = environ

    async def __call__(self, job: Claimed) -> dict[str, Any]:
        params = self._params(job)
        fields = job.payload.get("fields") or {}
        if not isinstance(fields, dict):
            raise ActionFailed("http.request: the action's fields are not a JSON object")
        headers = self._headers(params, job.idempotency_key)
        body: dict[str, Any] = {}
        if params.method != "GET" or fields:
            body["json"] = fields
        status, _ = await request_json(
            self.session,
            params.method,
            params.url,
            vendor=_vendor(params.url),
            ok=_SUCCESS,
            timeout=params.timeout,
            headers=headers,
            allow_redirects=False,
            **body,
        )
        return {"status": status}

    def __repr__(self) -> str:  # never show the environment
        return f"{type(self).__name__}()"

    @staticmethod
    def _params(job: Claimed) -> HttpRequestParams:
        try:
            return HttpRequestParams.model_validate(job.payload.get("params") or {})
        except ValidationError as exc:
            raise ActionFailed(
                f"http.request: invalid params: {describe(exc, '/params')}"
            ) from None

    def _headers(self, params: HttpRequestParams, idempotency_key: str) -> dict[str, str]:
        reserved = {IDEMPOTENCY_HEADER.lower()}
        headers = {k: v for k, v in params.headers.items() if k.lower() not in reserved}
        for header, variable in params.secret_headers.items():
            value = self.environ.get(variable)
            if not value:
                raise ActionFailed(
                    f"http.request: environment variable {variable} (for header {header!r}) "
                    "is not set"
                )
            headers = {k: v for k, v in headers.items() if k.lower() != header.lower()}
            headers[header] = value
        headers[IDEMPOTENCY_HEADER] = idempotency_key
        return headers


def _vendor(url: str) -> str:
    host = urlsplit(url).hostname
    return f"http:{host}" if host else "http"


__all__ = ["IDEMPOTENCY_HEADER", "HttpActionHandler"]
