"""`nurture run` with ``vendors.greenhouse.poll_every``: the daemon (a real subprocess) reads the
Greenhouse simulator on loopback and feeds intake, with no webhook sent."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.greenhouse.simulator import HarvestSimulator
from adapters.hubspot.simulator import HubSpotSimulator
from adapters.slack.simulator import SlackSimulator
from tests.engine.conftest import _serve
from tests.engine.test_daemon import Running, free_port, until

RULES = """\
version: 1
rules:
  - id: application-receipt
    description: polled application -> CRM contact + receipt
    trigger: ats.application.created
    condition: "candidate.email != `null`"
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email}
      - action: crm.send_email
        params: {template: receipt}
        fields: {to: candidate.email, first_name: candidate.first_name}
  - id: interview-email
    description: polled interview -> scheduling email
    trigger: ats.interview.scheduled
    condition: "candidate.email != `null`"
    actions:
      - action: crm.send_email
        params: {template: interview}
        fields: {to: candidate.email, first_name: candidate.first_name}
templates:
  - id: receipt
    subject: "Thanks {first_name}"
    crm_email_id: "100001"
    category: transactional
    variables: [first_name]
  - id: interview
    subject: "Your interview, {first_name}"
    crm_email_id: "100002"
    category: transactional
    variables: [first_name]
"""


async def waited(running: Running, check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        await until(check, what)
    except TimeoutError:
        raise AssertionError(
            f"no {what}:\n"
            + "\n".join(
                line for line in running.log.read_text().splitlines() if "polled" not in line
            )[-3000:]
        ) from None


@pytest.fixture
async def polling_daemon(
    tmp_path: Path,
) -> AsyncIterator[tuple[Running, HarvestSimulator, HubSpotSimulator]]:
    hubspot = HubSpotSimulator("hs-token")
    harvest = HarvestSimulator("gh-key", rate_limit=1000)  # a 1 s poll would hit 50 / 10 s
    slack = SlackSimulator()
    runners = []
    urls = []
    for app in (hubspot.app(), harvest.app(), slack.app()):
        runner, url = await _serve(app)
        runners.append(runner)
        urls.append(url)
    hub_url, harvest_url, slack_url = urls
    port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES)
    (tmp_path / "sequences").mkdir()
    (tmp_path / "nurture.yaml").write_text(f"""\
version: 1
ats: greenhouse
store: {{url: "sqlite:///{tmp_path / "nurture.db"}"}}
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
vendors:
  greenhouse:
    base_url: "{harvest_url}"
    auth: basic
    api_key_env: GREENHOUSE_API_KEY
    on_behalf_of: "40211"
    webhook_secret_envs: [GREENHOUSE_WEBHOOK_SECRET]
    poll_every: 1s
  hubspot: {{base_url: "{hub_url}", token_env: HUBSPOT_TOKEN, poll_every: 1h}}
alerting:
  targets: [{{name: ops, kind: slack, webhook_url_env: SLACK_URL}}]
""")
    env = {
        **os.environ,
        "HUBSPOT_TOKEN": "hs-token",
        "GREENHOUSE_API_KEY": "gh-key",
        "GREENHOUSE_WEBHOOK_SECRET": "unused-here",
        "SLACK_URL": slack_url + "/services/x",
        "NURTURE_ADMIN_TOKEN": "admin",
        "NURTURE_LINK_SECRET": "0123456789abcdef-link",
    }
    running = Running(tmp_path, port, env)
    yield running, harvest, hubspot
    if running.process is not None and running.process.returncode is None:
        running.process.kill()
        await running.process.wait()
    for runner in runners:
        await runner.cleanup()


async def test_daemon_polls_an_application_and_an_interview_from_greenhouse(
    polling_daemon: tuple[Running, HarvestSimulator, HubSpotSimulator],
) -> None:
    running, harvest, hubspot = polling_daemon
    now = datetime.now(UTC)  # the daemon runs on the wall clock: records are "just now"
    harvest.records.add_candidate(7001, "Maya", "Okafor", "maya@example.com", at=now)
    app = harvest.records.add_application(7001, (502311, "Data Engineer"), "Review", at=now)
    # the first sweeps fail: logged and retried at the next interval, never fatal
    harvest.fail_next(500, times=2, path_prefix="/v1/applications")
    await running.start()

    def sent(email_id: int) -> list[str]:
        return [s["to"] for s in hubspot.state.sends.values() if s["emailId"] == email_id]

    async def receipt() -> bool:
        return sent(100001) == ["maya@example.com"]

    await waited(running, receipt, "the polled application's receipt")
    assert harvest.state.faults[0].remaining == 0  # both failures were met, then it went on

    start = now + timedelta(days=2)
    harvest.records.schedule_interview(app, start, start + timedelta(hours=1), at=now)

    async def invited() -> bool:
        return sent(100002) == ["maya@example.com"]

    await waited(running, invited, "the polled interview's email")
    running.signal(signal.SIGTERM)
    assert await running.stopped() == 0
    assert sent(100001) == ["maya@example.com"]  # one receipt: later sweeps were duplicates
