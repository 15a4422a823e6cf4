"""The daemon the hostile-input and security scenarios attack: ``nurture run`` as a subprocess.

Every inbound source is configured (greenhouse, lever, ashby, hubspot, generic), each with a
secret the scenarios know, so they can send both forged and correctly signed deliveries. The
vendors the daemon calls (HubSpot, Lever's API for read-backs, Slack) are simulators served
from this process on loopback. ``Target.valid`` builds a signed delivery per source that the
shipped-style rules turn into CRM work; ``Target.unprocessed`` says which of them have not
(yet) had their effect, read from the HubSpot simulator and the daemon's own SQLite file.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import hmac
import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from adapters.hubspot.simulator import HubSpotSimulator
from adapters.lever.simulator import LeverSimulator
from adapters.lever.simulator import sign as lever_sign
from adapters.slack.simulator import SlackSimulator
from tests.engine.conftest import _serve
from tests.engine.test_daemon import Running, free_port

SOURCES = ("greenhouse", "lever", "ashby", "hubspot", "generic")
_GENERIC_KEY = b"proof-generic-standard-webhooks-key"

# Distinctive values, so a leak into a log line cannot be a coincidence.
SECRETS: dict[str, str] = {
    "GREENHOUSE_WEBHOOK_SECRET": "gh-proof-whsecret-6b1f0c7e",
    "GREENHOUSE_WEBHOOK_SECRET_PREVIOUS": "gh-proof-rotated-9d24aa51",
    "LEVER_WEBHOOK_SECRET": "lever-proof-sigtoken-4e8d2b90",
    "ASHBY_WEBHOOK_SECRET": "ashby-proof-whsecret-0a7c3f12",
    "HUBSPOT_CLIENT_SECRET": "hs-proof-client-secret-58e1d6b3",
    "GENERIC_WEBHOOK_SECRET": "whsec_" + base64.b64encode(_GENERIC_KEY).decode(),
    "HUBSPOT_TOKEN": "hs-proof-token-c3a90f27",
    "LEVER_API_KEY": "lever-proof-apikey-71b5e0d4",
    "ASHBY_API_KEY": "ashby-proof-apikey-2f6c9a18",
    "GREENHOUSE_API_KEY": "gh-proof-apikey-93d07b6e",
    "NURTURE_ADMIN_TOKEN": "admin-proof-token-e4b7215c",
    "NURTURE_LINK_SECRET": "link-proof-secret-0f3e8a6d5c",
    "SMTP_USERNAME": "alerts-proof-user",
    "SMTP_PASSWORD": "smtp-proof-password-b81d4c07",
}
# The base64 form of the generic key is what a sender configures; the raw key must not leak
# either, but it is 35 printable bytes and may appear in no log line.
SECRET_VALUES = (*SECRETS.values(), _GENERIC_KEY.decode())

RULES = """\
version: 1
rules:
  - id: application-to-crm
    description: new application -> CRM contact + receipt
    trigger: ats.application.created
    condition: "candidate.email != `null`"
    actions:
      - action: crm.upsert_contact
        fields: {email: candidate.email, firstname: candidate.first_name}
      - action: crm.send_email
        params: {template: receipt}
        fields: {to: candidate.email, first_name: candidate.first_name}
  - id: applicant-to-slack
    description: texts are filled by {name} only; attribute and index syntax stays literal
    trigger: ats.application.created
    condition: "candidate.last_name == 'Sandbox'"
    actions:
      - action: notify.slack
        params:
          target: ops
          text: "new: {first_name} | {first_name.__class__} | {0} | {first_name!r}"
        fields: {first_name: candidate.first_name}
  - id: unsubscribe
    description: CRM unsubscribe -> suppression
    trigger: crm.contact.unsubscribed
    actions:
      - action: suppress
        params: {reason: unsubscribed}
        fields: {email: contact.email}
templates:
  - id: receipt
    subject: "Thanks {first_name}"
    crm_email_id: "100001"
    category: transactional
    variables: [first_name]
"""

LEVER_STAGE = "applicant-new"
LEVER_POSTING = "proof-posting-1"


ACCEPTOR_SOURCES = ("greenhouse", "ashby", "generic")
"""What an acceptor process takes when one is configured (the others need a read-back)."""


def _config(folder: Path, port: int, hubspot: str, lever: str, acceptor: int | None = None) -> str:
    spool = f', acceptor: {{listen: "127.0.0.1:{acceptor}", backlog: 256}}' if acceptor else ""
    return f"""\
version: 1
ats: greenhouse
config_paths: [rules]
store: {{url: "sqlite:///{folder / "nurture.db"}"}}
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}",
          max_body_bytes: 65536{spool}}}
vendors:
  greenhouse:
    auth: basic
    api_key_env: GREENHOUSE_API_KEY
    on_behalf_of: "40211"
    webhook_secret_envs: [GREENHOUSE_WEBHOOK_SECRET, GREENHOUSE_WEBHOOK_SECRET_PREVIOUS]
  lever:
    base_url: "{lever}"
    api_key_env: LEVER_API_KEY
    perform_as: proof-user
    webhook_secret_envs: [LEVER_WEBHOOK_SECRET]
  ashby: {{api_key_env: ASHBY_API_KEY, webhook_secret_envs: [ASHBY_WEBHOOK_SECRET]}}
  hubspot:
    base_url: "{hubspot}"
    token_env: HUBSPOT_TOKEN
    client_secret_env: HUBSPOT_CLIENT_SECRET
    tier: enterprise
    poll_every: 1h
  generic: {{webhook_secret_envs: [GENERIC_WEBHOOK_SECRET]}}
alerting:
  targets:
    - {{name: ops, kind: slack, webhook_url_env: SLACK_URL}}
    - name: mail
      kind: email
      to: [oncall@example.com]
      smtp: {{host: 127.0.0.1, port: {free_port()}, starttls: false,
              username_env: SMTP_USERNAME, password_env: SMTP_PASSWORD,
              sender: nurture@example.com}}
"""


@dataclass
class Delivery:
    """One signed webhook and the effect it must have once processed."""

    source: str
    body: bytes
    headers: CIMultiDict[str]
    email: str  # the candidate address the effect is keyed by
    kind: str = "contact"  # contact: a CRM contact and a receipt; suppressed: a suppression


@dataclass
class Target:
    folder: Path
    running: Running
    hubspot: HubSpotSimulator
    lever: LeverSimulator
    slack: SlackSimulator
    acceptor_url: str | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _n: int = 0

    @property
    def url(self) -> str:
        return self.running.url

    def url_for(self, path: str) -> str:
        """Where a request for ``path`` goes: the acceptor's webhooks to it, the rest to the
        daemon (a made-up source too: both answer it alike)."""
        if self.acceptor_url and path.startswith(tuple(f"/webhooks/{s}" for s in ACCEPTOR_SOURCES)):
            return self.acceptor_url
        return self.url

    @property
    def ports(self) -> list[int]:
        """Every port that takes webhooks."""
        extra = [int(self.acceptor_url.rsplit(":", 1)[1])] if self.acceptor_url else []
        return [self.running.port, *extra]

    @property
    def log(self) -> Path:
        return self.running.log

    # -- signing ---------------------------------------------------------------------------
    def sign(
        self,
        source: str,
        body: bytes,
        *,
        secret: str | None = None,
        at: float | None = None,
        delivery: str | None = None,
    ) -> CIMultiDict[str]:
        """The headers a genuine sender would add (Lever signs inside the body instead)."""
        now = time.time() if at is None else at
        delivery = delivery or uuid.uuid4().hex
        headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
        if source == "greenhouse":
            key = secret or SECRETS["GREENHOUSE_WEBHOOK_SECRET"]
            digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
            headers.update({"Signature": f"sha256 {digest}", "Greenhouse-Event-ID": delivery})
        elif source == "ashby":
            key = secret or SECRETS["ASHBY_WEBHOOK_SECRET"]
            digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
            headers["Ashby-Signature"] = f"sha256={digest}"
        elif source == "hubspot":
            key = secret or SECRETS["HUBSPOT_CLIENT_SECRET"]
            stamp = str(int(now * 1000))
            message = b"POST" + f"{self.url}/webhooks/hubspot".encode() + body + stamp.encode()
            signature = base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest())
            headers.update(
                {"X-HubSpot-Signature-v3": signature.decode(), "X-HubSpot-Request-Timestamp": stamp}
            )
        elif source == "generic":
            raw = secret.encode() if secret else _GENERIC_KEY
            stamp = str(int(now))
            message = f"{delivery}.{stamp}.".encode() + body
            signature = base64.b64encode(hmac.new(raw, message, hashlib.sha256).digest())
            headers.update(
                {
                    "webhook-id": delivery,
                    "webhook-timestamp": stamp,
                    "webhook-signature": f"v1,{signature.decode()}",
                }
            )
        return headers

    def lever_body(
        self, document: Mapping[str, Any], *, secret: str | None = None, at: float | None = None
    ) -> bytes:
        """``document`` with ``triggeredAt`` and ``signature`` set as Lever would sign it."""
        signed = dict(document)
        signed["triggeredAt"] = int((time.time() if at is None else at) * 1000)
        token = signed.get("token")
        if isinstance(token, str):
            key = secret or SECRETS["LEVER_WEBHOOK_SECRET"]
            signed["signature"] = lever_sign(token, signed["triggeredAt"], key)
        return json.dumps(signed).encode()

    # -- valid traffic ---------------------------------------------------------------------
    def email(self, source: str, n: int) -> str:
        return f"{source}-{self.tag}-{n}@proof.example.com"

    def valid(self, source: str) -> Delivery:
        """A fresh, correctly signed delivery from ``source`` that must be processed."""
        self._n += 1
        n, email = self._n, self.email(source, self._n)
        document = example(source, n, email)
        if source == "lever":
            opportunity = f"opp-{self.tag}-{n}"
            self.lever.add_opportunity(
                opportunity,
                contact=f"contact-{self.tag}-{n}",
                name=f"Lev {n}",
                emails=[email],
                stage=LEVER_STAGE,
                created_at=int(time.time() * 1000),
                posting=LEVER_POSTING,
            )
            document["data"]["opportunityId"] = opportunity
            document["data"]["contactId"] = f"contact-{self.tag}-{n}"
            body = self.lever_body(document)
            return Delivery(source, body, CIMultiDict({"Content-Type": "application/json"}), email)
        if source == "hubspot":
            contact_id = str(880_000 + n)
            self.hubspot.state.contacts[contact_id] = {"email": email, "hs_object_id": contact_id}
            self.hubspot.state.by_email[email] = contact_id
            document[0]["objectId"] = int(contact_id)
            body = json.dumps(document).encode()
            return Delivery(source, body, self.sign(source, body), email, kind="suppressed")
        body = json.dumps(document).encode()
        return Delivery(source, body, self.sign(source, body), email)

    def unprocessed(self, deliveries: list[Delivery]) -> list[Delivery]:
        """The deliveries whose effect is not (yet) visible."""
        sent_to = {str(s.get("to", "")).lower() for s in self.hubspot.state.sends.values()}
        with contextlib.closing(sqlite3.connect(self.folder / "nurture.db")) as db:
            suppressed = {row[0] for row in db.execute("SELECT email FROM suppressions")}
        missing = []
        for d in deliveries:
            if d.kind == "suppressed":
                done = d.email in suppressed
            else:
                done = d.email in self.hubspot.state.by_email and d.email in sent_to
            if not done:
                missing.append(d)
        return missing

    # -- HTTP ------------------------------------------------------------------------------
    async def post(
        self,
        session: aiohttp.ClientSession,
        path: str,
        body: bytes,
        headers: CIMultiDict[str] | Mapping[str, str],
    ) -> tuple[int, str, bytes]:
        """Status, content type and body of one POST (no client-side retry)."""
        async with session.post(
            self.url_for(path) + path,
            data=body,
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as answer:
            return answer.status, answer.content_type, await answer.read()


def example(source: str, n: int, email: str) -> Any:
    """A minimal genuine payload for ``source`` naming ``email`` (Lever: ids filled later)."""
    if source == "greenhouse":
        return {
            "action": "new_candidate_application",
            "payload": {
                "application": {
                    "id": 500_000 + n,
                    "status": "active",
                    "prospect": False,
                    "applied_at": "2026-03-02T09:00:00Z",
                    "current_stage": {"id": 1, "name": "Review"},
                    "jobs": [{"id": 5, "name": "Data Engineer", "status": "open"}],
                    "candidate": {
                        "id": 400_000 + n,
                        "first_name": f"G{n}",
                        "last_name": "Proof",
                        "email_addresses": [{"value": email, "type": "personal"}],
                        "tags": [],
                        "can_email": True,
                    },
                }
            },
        }
    if source == "ashby":
        return {
            "action": "applicationSubmit",
            "data": {
                "application": {
                    "id": f"ash-app-{uuid.uuid4()}",
                    "status": "Active",
                    "createdAt": "2026-03-02T09:15:12.000Z",
                    "candidate": {
                        "id": f"ash-cand-{uuid.uuid4()}",
                        "name": f"Ash {n}",
                        "primaryEmailAddress": {"value": email, "type": "Personal"},
                    },
                    "currentInterviewStage": {"id": "s1", "title": "Application Review"},
                    "job": {"id": "j1", "title": "Product Designer"},
                }
            },
        }
    if source == "lever":
        return {
            "event": "applicationCreated",
            "token": uuid.uuid4().hex,
            "triggeredAt": 0,
            "signature": "",
            "data": {"opportunityId": "", "contactId": "", "applicationId": None},
        }
    if source == "hubspot":
        return [
            {
                "eventId": 1_000_000 + n,
                "subscriptionId": 2911005,
                "portalId": 44001234,
                "appId": 3301122,
                "occurredAt": int(time.time() * 1000),
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
                "objectId": 0,
                "propertyName": "hs_email_optout",
                "propertyValue": "true",
                "changeSource": "EMAIL",
            }
        ]
    if source == "generic":
        return {
            "type": "ats.application.created",
            "time": "2026-03-02T09:00:00Z",
            "source": "proof",
            "data": {
                "candidate": {"id": f"gen-{n}", "first_name": f"Gen{n}", "email": email},
                "application": {"id": f"gen-app-{n}", "status": "active"},
            },
        }
    raise ValueError(f"unknown source {source!r}")


def examples() -> dict[str, Any]:
    """One payload per source, for mutation by the fuzzers."""
    return {s: copy.deepcopy(example(s, 0, "seed@proof.example.com")) for s in SOURCES}


@contextlib.asynccontextmanager
async def target(
    extra_env: Mapping[str, str] | None = None, *, acceptor: bool = False
) -> AsyncIterator[Target]:
    """Simulators here, the daemon as a subprocess (with an acceptor process when
    ``acceptor``); everything is torn down on exit."""
    import os

    hubspot = HubSpotSimulator(SECRETS["HUBSPOT_TOKEN"])
    lever = LeverSimulator(SECRETS["LEVER_API_KEY"], rate_limit=100_000)
    lever.add_stage(LEVER_STAGE, "New applicant")
    lever.add_posting(LEVER_POSTING, "Platform Engineer", team="Engineering")
    slack = SlackSimulator()
    runners: list[Any] = []
    running: Running | None = None
    with tempfile.TemporaryDirectory(prefix="nurture-proof-") as tmp:
        folder = Path(tmp)
        try:
            hub_runner, hub_url = await _serve(hubspot.app())
            runners.append(hub_runner)
            lever_runner, lever_url = await _serve(lever.app())
            runners.append(lever_runner)
            slack_runner, slack_url = await _serve(slack.app())
            runners.append(slack_runner)
            port = free_port()
            acceptor_port = free_port() if acceptor else None
            (folder / "rules").mkdir()
            (folder / "rules" / "rules.yaml").write_text(RULES)
            (folder / "nurture.yaml").write_text(
                _config(folder, port, hub_url, lever_url + "/v1", acceptor_port)
            )
            env = {
                **os.environ,
                **SECRETS,
                "SLACK_URL": slack_url + "/services/proof",
                **(extra_env or {}),
            }
            running = Running(folder, port, env)
            await running.start()
            acceptor_url = f"http://127.0.0.1:{acceptor_port}" if acceptor_port else None
            yield Target(folder, running, hubspot, lever, slack, acceptor_url)
        finally:
            child = running.process if running is not None else None
            if child is not None and child.returncode is None:
                child.kill()
                await child.wait()
            for runner in runners:
                await runner.cleanup()
