"""What each CRM action type does when the outbox runs it.

CRM actions go through a ``CrmPort``. Lookup-before-create is
race-free in three layers: one person's actions run one at a time (the ordering key is the
email); our identity link remembers the contact id we learn, committed with the action's outcome
before that person's next action runs, so an eventually consistent CRM search is only the
second source; and a create that finds the email taken
(HubSpot 409) turns into an update of the existing contact. Exactly one contact per person.

``crm.send_email`` checks, in order: the suppression list, the send window, quiet hours and
the frequency cap (the last two for nurture mail only), then, for nurture mail, the CRM's own
subscription status when a ``ConsentPort`` is given (one GET per nurture send: an address
NOT_SUBSCRIBED there is skipped and suppressed here, closing the gap until the engagement
poller reads the unsubscribe). It then sends through the CRM's transactional email, or, with a
``MailPort`` (``mail.via: smtp``), renders the template itself and sends over SMTP
(``engine.mail``). The guardrails are the same on both paths.

Other action types are handled elsewhere: ``suppress``, ``sequence.enroll`` and
``sequence.exit`` run inside the deciding transaction (``local_actions``); ``ats.*`` and
``notify.*`` are ``handlers_writeback``; ``http.request`` is ``adapters.generic``'s handler,
which the daemon adds. A type with no handler in a build is dead-lettered with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.clock import Clock
from engine.config.load import ConfigSet
from engine.config.model import Template, link_variable
from engine.guardrails import Guardrails, Window
from engine.identity import IdentityLink, learn, normalise_email
from engine.links import LinkSigner
from engine.mail import SmtpDelivery, TemplateError, render
from engine.outbox import ActionDeferred, ActionFailed, ActionSkipped, Handler
from engine.ports import ConsentPort, CrmPort, MailPort
from engine.store import queries
from engine.store.queries import Claimed
from engine.store.store import Store


def crm_value(value: Any) -> str:
    """HubSpot property values are strings; lists become ';'-separated multi-values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(crm_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _properties(fields: Mapping[str, Any], email: str) -> dict[str, str]:
    props = {k: crm_value(v) for k, v in fields.items() if k != "email" and v is not None}
    props["email"] = email
    return props


class CrmHandlers:
    """crm.upsert_contact, crm.update_contact, crm.add_to_list, crm.send_email.

    ``suppress`` is not here: it runs inside the deciding transaction (``local_actions``).
    """

    def __init__(
        self,
        store: Store,
        crm: CrmPort,
        config: ConfigSet,
        clock: Clock,
        guardrails: Guardrails | None = None,
        links: LinkSigner | None = None,
        *,
        consent: ConsentPort | None = None,
        mail: MailPort | None = None,
    ) -> None:
        self.store = store
        self.crm = crm
        self.config = config
        self.clock = clock
        self.guardrails = guardrails or Guardrails()
        self.links = links
        self.consent = consent  # None: no subscription check before nurture mail
        self.smtp = SmtpDelivery(store, mail, clock) if mail is not None else None

    def handlers(self) -> dict[str, Handler]:
        return {
            "crm.upsert_contact": self.upsert_contact,
            "crm.update_contact": self.update_contact,
            "crm.add_to_list": self.add_to_list,
            "crm.send_email": self.send_email,
        }

    async def _email(self, job: Claimed, field: str = "email") -> str:
        email = normalise_email(job.payload["fields"].get(field))
        if email is None:
            raise ActionFailed(f"field {field!r} is not an email address")
        return email

    async def _known_contact(self, email: str) -> str | None:
        known = await queries.contact_id_now(self.store, email)
        if known is not None:
            return known
        return await self.crm.search_contact_by_email(email)

    async def _remember(self, email: str, contact_id: str, candidate_id: str | None) -> None:
        """Run by the outbox, the link is stored in the transaction that records the action's
        outcome, whatever it is (a transaction of its own cost 5-7% of the daemon's CPU under
        load); that commits before this person's next action can be claimed. Lost to a crash
        in between, it is learned again: the retry's upsert names the existing contact."""
        link = IdentityLink(email, contact_id, candidate_id)
        if not learn(link):  # called outside an outbox run
            async with self.store.transaction() as conn:
                await queries.save_link(conn, email, contact_id, candidate_id, self.clock.now())

    async def _upsert(self, job: Claimed, email: str) -> dict[str, Any]:
        """One step at the CRM, which looks the email up and creates or updates: a search
        then a create could both miss a contact made a moment before (search is eventually
        consistent), and costs two requests where a shared batch costs a fraction of one."""
        props = _properties(job.payload["fields"], email)
        contact_id, created = await self.crm.upsert_contact(email, props)
        await self._remember(email, contact_id, job.candidate_id)
        return {"contact_id": contact_id, "created": created}

    async def upsert_contact(self, job: Claimed) -> dict[str, Any]:
        return await self._upsert(job, await self._email(job))

    async def update_contact(self, job: Claimed) -> dict[str, Any]:
        email = await self._email(job)
        if job.payload["params"].get("create_if_missing"):
            return await self._upsert(job, email)
        contact_id = await self._known_contact(email)
        if contact_id is None:
            raise ActionFailed("no CRM contact has this email (create_if_missing is false)")
        await self.crm.update_contact(contact_id, _properties(job.payload["fields"], email))
        return {"contact_id": contact_id}

    async def add_to_list(self, job: Claimed) -> dict[str, Any]:
        email = await self._email(job)
        contact_id = await self._known_contact(email)
        if contact_id is None:
            raise ActionFailed("no CRM contact has this email; upsert it first")
        await self.crm.add_to_list(job.payload["params"]["list"], contact_id)
        return {"contact_id": contact_id}

    async def send_email(self, job: Claimed) -> dict[str, Any]:
        to = await self._email(job, "to")
        reason = await queries.suppression_reason_now(self.store, to)  # at send time
        if reason is not None:
            raise ActionSkipped(f"suppressed ({reason})")
        template_id = job.payload["params"]["template"]
        template = self.config.templates.get(template_id)
        if template is None:
            raise ActionFailed(f"template {template_id!r} is not in the running config")
        await self._check_timing(job, template.category)
        if template.category == "nurture" and self.consent is not None:
            await self._check_subscription(to)
        variables = {
            k: crm_value(v) for k, v in job.payload["fields"].items() if k != "to" and v is not None
        }
        for link in template.links:  # signed one-click links, e.g. keep_me_posted_url
            if self.links is None:
                raise ActionFailed(
                    f"template {template_id!r} needs signed links, but no link secret is "
                    "configured (server.link_secret_env)"
                )
            sequence, _, step = job.rule_id.partition("/")
            variables[link_variable(link)] = self.links.url(
                job.candidate_id or "",
                to,
                link,
                self.clock.now(),
                sequence=sequence if step else None,
                step=step or None,
            )
        if self.smtp is not None:
            subject, text = self._render(template, variables)
            sent = await self.smtp.deliver(job, to, subject, text)
            return {"template": template_id, "via": "smtp", **sent}
        status = await self.crm.send_transactional(
            template.crm_email_id, to, job.idempotency_key, variables
        )
        return {"template": template_id, "status": status}

    async def _check_subscription(self, to: str) -> None:
        """The CRM's consent record at send time; an opt-out there is suppressed here too."""
        assert self.consent is not None
        reason = await self.consent.opted_out(to)
        if reason is None:
            return
        async with self.store.transaction() as conn:
            await queries.suppress(conn, to, "unsubscribed", self.clock.now())
        raise ActionSkipped(f"{reason}; address suppressed")

    @staticmethod
    def _render(template: Template, variables: dict[str, str]) -> tuple[str, str]:
        if template.body is None:
            raise ActionFailed(
                f"template {template.id!r} has no body; mail.via smtp needs one "
                "(nurture validate --config reports this)"
            )
        declared = {*template.variables, *(link_variable(x) for x in template.links)}
        try:
            return (
                render(template.subject, variables, declared),
                render(template.body, variables, declared),
            )
        except TemplateError as exc:
            raise ActionFailed(f"template {template.id!r}: {exc}") from exc

    async def _check_timing(self, job: Claimed, category: str) -> None:
        """Send windows always; quiet hours and the frequency cap for nurture mail only."""
        now = self.clock.now()
        guard = job.payload.get("guard") or {}
        window = Window.from_payload(guard.get("send_window"))
        rails = self.guardrails
        if category != "nurture":
            rails = replace(rails, quiet_start=None, quiet_end=None)
        until = rails.next_allowed(now, guard.get("time_zone"), window)
        if until is not None:
            raise ActionDeferred(until, "outside the send window or quiet hours")
        if category != "nurture":
            return
        async with self.store.read() as conn:
            recent = await queries.touches_since(conn, job.ordering_key, now - rails.cap_per)
        if len(recent) >= rails.cap_max:
            until = recent[len(recent) - rails.cap_max] + rails.cap_per
            raise ActionDeferred(until, f"frequency cap ({rails.cap_max} per {rails.cap_per})")
