"""HubSpot CRM client: the ``CrmPort`` over HubSpot's v3 APIs.

Endpoints (shared/contracts section 4): contact search ``POST /crm/v3/objects/contacts/search``
(EQ on email; every field the spec marks required is sent), create ``POST
/crm/v3/objects/contacts`` (409 CONFLICT "Contact already exists. Existing ID: N" becomes
``ContactExists``), update ``PATCH /crm/v3/objects/contacts/{id}``, list membership ``PUT
/crm/v3/lists/{listId}/memberships/add`` after resolving the list by name, transactional send
``POST /marketing/v3/transactional/single-email/send`` with ``sendId`` = our idempotency key.

Unverified facts, kept here: the exact 409 message format [U]; the answer to a repeated
``sendId`` [U] (we treat 409 as "already sent", i.e. success).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.http import request_json
from adapters.ratelimit import WindowLimiter
from engine import AdapterError
from engine.errors import ContactExists

VENDOR = "hubspot"
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
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
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._list_ids: dict[str, str] = {}
        self.limiter = limiter  # the portal's 10-second limit, shared by every caller

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        if self.limiter is not None:
            await self.limiter.acquire()
        return await request_json(
            self.session,
            method,
            self.base_url + path,
            vendor=VENDOR,
            headers=self._headers,
            timeout=self.timeout,
            **kwargs,
        )

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

    async def create_contact(self, properties: dict[str, str]) -> str:
        try:
            _, created = await self._call(
                "POST",
                "/crm/v3/objects/contacts",
                json={"properties": properties, "associations": []},
            )
        except AdapterError as exc:
            match = _EXISTING_ID.search(str(exc))
            if exc.status == 409 and match:
                raise ContactExists(match.group(1), vendor=VENDOR) from exc
            raise
        return str(created["id"])

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
