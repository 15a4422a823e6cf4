"""Slack incoming webhook client against the loopback simulator."""

from __future__ import annotations

import aiohttp
import pytest

from adapters.slack.client import SlackWebhook
from adapters.slack.simulator import SlackSimulator
from engine import AdapterRejected, AdapterUnavailable
from tests.engine.conftest import _serve


async def test_an_alert_is_posted_as_text_and_recorded() -> None:
    simulator = SlackSimulator()
    runner, url = await _serve(simulator.app())
    try:
        async with aiohttp.ClientSession() as session:
            await SlackWebhook(session, url + "/services/T/B/X", "ops").send_alert(
                "[nurture] dead letter", "candidate: gh-1"
            )
    finally:
        await runner.cleanup()
    assert simulator.messages == [{"text": "*[nurture] dead letter*\ncandidate: gh-1"}]


async def test_vendor_text_in_an_alert_shows_as_written_and_pings_nobody() -> None:
    simulator = SlackSimulator()
    runner, url = await _serve(simulator.app())
    try:
        async with aiohttp.ClientSession() as session:
            await SlackWebhook(session, url + "/services/T/B/X").send_alert(
                "[nurture] dead letter <x>",
                "HubSpot said: <!channel> fix me & <https://e.vil|here>",
            )
    finally:
        await runner.cleanup()
    assert simulator.messages == [
        {
            "text": "*[nurture] dead letter &lt;x&gt;*\nHubSpot said: &lt;!channel&gt; fix me "
            "&amp; &lt;https://e.vil|here&gt;"
        }
    ]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, "rollup_error", AdapterUnavailable),
        (429, "rate_limited", AdapterUnavailable),
        (400, "invalid_payload", AdapterRejected),
        (404, "channel_not_found", AdapterRejected),
        (410, "channel_is_archived", AdapterRejected),
    ],
)
async def test_slack_errors_are_classified(status: int, body: str, error: type) -> None:
    simulator = SlackSimulator()
    simulator.fail_next(status, body)
    runner, url = await _serve(simulator.app())
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(error) as raised:
                await SlackWebhook(session, url + "/services/T/B/X").send_alert("s", "t")
    finally:
        await runner.cleanup()
    assert body in str(raised.value) and simulator.messages == []
