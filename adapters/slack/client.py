"""Slack incoming webhook (contract section 5): ``POST {"text": ...}`` answers 200 ``ok``.

The webhook URL is itself the secret, so it only ever comes from an environment variable.
Errors are plain text (400 invalid_payload, 403, 404, 410 channel_is_archived, 429 with
Retry-After, 500 rollup_error) and map to the engine's adapter errors like any other vendor's.
"""

from __future__ import annotations

import aiohttp

from adapters.http import request_json


class SlackWebhook:
    """An alert target: one incoming webhook."""

    def __init__(self, session: aiohttp.ClientSession, url: str, name: str = "slack") -> None:
        self.session = session
        self.url = url
        self.name = name

    async def send_alert(self, subject: str, text: str) -> None:
        await request_json(
            self.session,
            "POST",
            self.url,
            vendor="slack",
            ok=(200,),
            json={"text": f"*{_escaped(subject)}*\n{_escaped(text)}"},
        )


def _escaped(text: str) -> str:
    """Slack reads ``<...>`` as a control sequence (``<!channel>`` pings everyone, ``<url|x>``
    is a link) and ``&`` as the start of an escape: an alert quotes vendors' error text, which
    must show as written, so the three are escaped as Slack's formatting guide asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
