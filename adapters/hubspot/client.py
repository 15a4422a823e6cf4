"""HubSpot CRM client: the ``CrmPort`` over HubSpot's v3 APIs.

Endpoints (shared/contracts section 4): contact search ``POST /crm/v3/objects/contacts/search`` (EQ
on email; every field the spec marks required is sent), update ``PATCH
/crm/v3/objects/contacts/{id}``, list membership ``PUT /crm/v3/lists/{listId}/memberships/add``
after resolving the list by name, transactional send ``POST
/marketing/v3/transactional/single-email/send`` with ``sendId`` = our idempotency key, batch upsert
``POST /crm/v3/objects/contacts/batch/upsert`` by email (``batch_upsert_contacts`` for backfills;
``upsert_contact``, the rules' ``crm.upsert_contact``, coalesces concurrent callers into it) and
the subscription status ``GET /communication-preferences/v3/status/email/{email}`` (``opted_out``,
read before each nurture email).

Unverified facts, kept here: the answer to a repeated
``sendId`` [U] (we treat 409 as "already sent", i.e. success); the batch cap of 100 inputs [P]
(community answers and third-party guides agree, the spec states no ``maxItems``) and the
error HubSpot gives above it [U]; which statuses the subscription endpoint lists for a contact
that never chose any [U].
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.http import request_json
from adapters.ratelimit import WindowLimiter
from engine import AdapterError, AdapterTimeout, AdapterUnavailable
from engine.identity import normalise_email

from .upserts import BATCH_UPSERT_CAP, BatchError, ContactUpserts, UpsertOutcome

VENDOR = "hubspot"
CONTACT_LIST_OBJECT_TYPE = "0-1"


class HubSpotClient:
    """One HubSpot portal, authenticated with a private-app token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        limiter: WindowLimiter | None = None,
        subscription_id: str | None = None,
        tries: int = 1,
        pause: float = 0.2,
        upsert_batches: int = 2,
    ) -> None:
        """``upsert_batches``: batch upsert requests out at once for ``upsert_contact``; an
        upsert beyond them waits to share the next."""
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._list_ids: dict[str, str] = {}
        self.limiter = limiter  # the portal's 10-second limit, shared by every caller
        self.subscription_id = subscription_id  # the subscription nurture mail belongs to
        self.tries, self.pause = tries, pause
        self._upserts = ContactUpserts(self.batch_upsert_contacts, VENDOR, upsert_batches)

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request through the portal's rate limiter (every endpoint shares it).

        With ``tries`` above 1, a 5xx, a timeout or a refused connection is tried again after
        about ``pause`` seconds, within the same action attempt. Every call here is safe to
        repeat: reads, PATCH and PUT, upserts by email, a create whose first try went through
        answers 409 (an update follows), a send is de-duplicated by its ``sendId``. A 429, or
        any answer with Retry-After, is not retried here: the outbox waits it out.
        """
        for attempt in range(1, self.tries + 1):
            if self.limiter is not None:
                await self.limiter.acquire()
            try:
                return await request_json(
                    self.session,
                    method,
                    self.base_url + path,
                    vendor=VENDOR,
                    headers=self._headers,
                    timeout=self.timeout,
                    **kwargs,
                )
            except (AdapterTimeout, AdapterUnavailable) as exc:
                if attempt == self.tries or exc.status in (409, 429) or exc.retry_after:
                    raise  # a vendor that names a wait gets it, from the outbox
                await asyncio.sleep(self.pause * random.uniform(0.5, 1.5))
        raise AssertionError("tries must be at least 1")

    async def search_contact_by_email(self, email: str) -> str | None:
        body = {
            "filterGroups": [
                {"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}
            ],
            "properties": ["email"],
            "limit": 1,
            "after": "0",
            "sorts": [],
        }
        _, found = await self._call("POST", "/crm/v3/objects/contacts/search", json=body)
        results = (found or {}).get("results") or []
        return str(results[0]["id"]) if results else None

    async def contact_email(self, contact_id: str) -> str | None:
        """The address of a contact known by id (HubSpot webhooks name contacts by id only)."""
        _, found = await self._call(
            "GET", f"/crm/v3/objects/contacts/{quote(contact_id)}?properties=email"
        )
        email = ((found or {}).get("properties") or {}).get("email")
        return str(email) if email else None

    async def upsert_contact(self, email: str, properties: dict[str, str]) -> tuple[str, bool]:
        """Create or update the contact with this (normalised) email; its id, and whether it
        was created. Concurrent calls share batch upsert requests (``upserts.py``)."""
        return await self._upserts.upsert(email, properties)

    async def update_contact(self, contact_id: str, properties: dict[str, str]) -> None:
        await self._call(
            "PATCH",
            f"/crm/v3/objects/contacts/{quote(contact_id)}",
            json={"properties": properties},
        )

    async def _list_id(self, name: str) -> str:
        if name.isdigit():
            return name
        if name not in self._list_ids:
            _, found = await self._call(
                "GET",
                f"/crm/v3/lists/object-type-id/{CONTACT_LIST_OBJECT_TYPE}/name/{quote(name)}",
            )
            self._list_ids[name] = str(found["list"]["listId"])
        return self._list_ids[name]

    async def add_to_list(self, list_name: str, contact_id: str) -> None:
        list_id = await self._list_id(list_name)
        await self._call("PUT", f"/crm/v3/lists/{list_id}/memberships/add", json=[contact_id])

    async def send_transactional(
        self, email_id: str, to: str, send_id: str, variables: dict[str, str]
    ) -> dict[str, Any]:
        body = {
            "emailId": int(email_id) if email_id.isdigit() else email_id,
            "message": {"to": to, "sendId": send_id},
            "customProperties": variables,
        }
        try:
            _, status = await self._call(
                "POST", "/marketing/v3/transactional/single-email/send", json=body
            )
        except AdapterError as exc:
            if exc.status == 409:  # this sendId went out before: the email is not sent twice
                return {"status": "DUPLICATE_SEND_ID", "sendId": send_id}
            raise
        return dict(status or {})

    # -- batch upsert (backfills, and coalesced single upserts) -----------------------------
    async def batch_upsert_contacts(
        self, inputs: Mapping[str, Mapping[str, str]]
    ) -> list[UpsertOutcome]:
        """Create or update contacts by email, ``BATCH_UPSERT_CAP`` per request.

        ``inputs`` maps an email to its properties. The answer is one ``UpsertOutcome`` per
        input, in input order: 200 means every input succeeded, 207 that ``errors[]`` names
        the inputs that did not (by ``context.ids``). Two inputs whose addresses differ only
        in case or spaces are refused before anything is sent (HubSpot rejects duplicate ids
        in a batch). A request that fails as a whole raises ``AdapterError``; chunks sent
        before it stay applied, which is harmless because an upsert can be repeated.
        """
        keyed: dict[str, tuple[str, Mapping[str, str]]] = {}
        for raw, properties in inputs.items():
            email = normalise_email(raw) or raw.strip()  # HubSpot judges malformed ones
            if email in keyed:
                raise ValueError(
                    f"batch upsert: {raw!r} and {keyed[email][0]!r} are the same contact"
                )
            keyed[email] = (raw, properties)
        emails = list(keyed)
        outcomes: list[UpsertOutcome] = []
        for start in range(0, len(emails), BATCH_UPSERT_CAP):
            chunk = emails[start : start + BATCH_UPSERT_CAP]
            body = {
                "inputs": [
                    {
                        "id": email,
                        "idProperty": "email",
                        # email among the properties too, so each result names its input
                        "properties": {**keyed[email][1], "email": email},
                    }
                    for email in chunk
                ]
            }
            _, answer = await self._call(
                "POST", "/crm/v3/objects/contacts/batch/upsert", json=body, ok=(200, 207)
            )
            outcomes.extend(_upsert_outcomes(chunk, answer or {}))
        return outcomes

    # -- subscriptions (consent) ----------------------------------------------------------
    async def subscription_statuses(self, email: str) -> list[dict[str, Any]]:
        """``subscriptionStatuses`` of one address: ``{id, name, status, sourceOfStatus}``."""
        _, answer = await self._call(
            "GET", f"/communication-preferences/v3/status/email/{quote(email, safe='@')}"
        )
        statuses = (answer or {}).get("subscriptionStatuses") or []
        return [s for s in statuses if isinstance(s, dict)]

    async def opted_out(self, email: str) -> str | None:
        """Why HubSpot says this address must not get nurture email, or None (``ConsentPort``).

        One GET per call. With ``subscription_id`` set, only that subscription counts (plus an
        opt-out of all email, which HubSpot reports as ``sourceOfStatus`` PORTAL_WIDE_STATUS
        or BRAND_WIDE_STATUS); without it any NOT_SUBSCRIBED status counts, as any unsubscribe
        the engagement poller reads does.
        """
        for status in await self.subscription_statuses(email):
            if status.get("status") != "NOT_SUBSCRIBED":
                continue
            wide = status.get("sourceOfStatus") in ("PORTAL_WIDE_STATUS", "BRAND_WIDE_STATUS")
            ident = str(status.get("id", ""))
            if self.subscription_id is None or wide or ident == self.subscription_id:
                name = status.get("name") or ident
                return (
                    f"NOT_SUBSCRIBED to {name!r} ({status.get('sourceOfStatus', '?')}) in HubSpot"
                )
        return None


def _upsert_outcomes(chunk: Sequence[str], answer: Mapping[str, Any]) -> list[UpsertOutcome]:
    """Match results (by their email property) and errors (by ``context.ids``) to inputs."""
    found: dict[str, UpsertOutcome] = {}
    for result in answer.get("results") or []:
        email = normalise_email((result.get("properties") or {}).get("email"))
        if email is not None:
            found[email] = UpsertOutcome(email, str(result["id"]), bool(result.get("new")))
    for item in answer.get("errors") or []:
        context = {
            str(k): [str(v) for v in values]
            for k, values in (item.get("context") or {}).items()
            if isinstance(values, list)
        }
        error = BatchError(
            str(item.get("status", "error")),
            str(item.get("category", "")),
            str(item.get("message", "")),
            context,
        )
        for ident in context.get("ids", []):
            email = normalise_email(ident) or ident.strip()
            found[email] = UpsertOutcome(email, error=error)
    missing = BatchError("error", "MISSING", "HubSpot's answer has no result or error for it")
    return [found.get(email) or UpsertOutcome(email, error=missing) for email in chunk]
