"""ATS write-backs (tags, notes) and internal notifications, through their ports.

Texts use ``{name}`` placeholders filled from the action's fields (``nurture validate`` checks
every placeholder has a field). A missing candidate id is a permanent failure: a write-back
that does not know its record must be looked at, not retried.
"""

from __future__ import annotations

import re
from typing import Any

from engine.config.model import PLACEHOLDER
from engine.outbox import ActionFailed, Handler
from engine.ports import AtsPort, NotifierPort
from engine.store.queries import Claimed


def fill(text: str, fields: dict[str, Any]) -> str:
    """Insert fields into ``{name}`` placeholders; a null field becomes an empty string."""

    def value(match: re.Match[str]) -> str:
        found = fields.get(match.group(1))
        return "" if found is None else str(found)

    return PLACEHOLDER.sub(value, text)


def _candidate(job: Claimed) -> str:
    candidate_id = job.payload["fields"].get("candidate_id")
    if candidate_id in (None, ""):
        raise ActionFailed("field 'candidate_id' is null: the ATS record is unknown")
    return str(candidate_id)


def _recipients(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items if isinstance(item, str) and "@" in item]


class WritebackHandlers:
    def __init__(self, ats: AtsPort, notifier: NotifierPort) -> None:
        self.ats = ats
        self.notifier = notifier

    def handlers(self) -> dict[str, Handler]:
        return {
            "ats.add_tag": self.add_tag,
            "ats.remove_tag": self.remove_tag,
            "ats.add_note": self.add_note,
            "notify.email": self.notify_email,
            "notify.slack": self.notify_slack,
        }

    async def add_tag(self, job: Claimed) -> dict[str, Any]:
        await self.ats.add_tag(_candidate(job), job.payload["params"]["tag"])
        return {"tag": job.payload["params"]["tag"]}

    async def remove_tag(self, job: Claimed) -> dict[str, Any]:
        await self.ats.remove_tag(_candidate(job), job.payload["params"]["tag"])
        return {"tag": job.payload["params"]["tag"]}

    async def add_note(self, job: Claimed) -> dict[str, Any]:
        params, fields = job.payload["params"], job.payload["fields"]
        await self.ats.add_note(
            _candidate(job), fill(params["body"], fields), params.get("visibility", "admin_only")
        )
        return {"note": True}

    async def notify_email(self, job: Claimed) -> dict[str, Any]:
        params, fields = job.payload["params"], job.payload["fields"]
        to = _recipients(fields.get("to"))
        if not to:
            raise ActionFailed("field 'to' holds no email address")
        await self.notifier.email(to, fill(params["subject"], fields), fill(params["text"], fields))
        return {"to": to}

    async def notify_slack(self, job: Claimed) -> dict[str, Any]:
        params, fields = job.payload["params"], job.payload["fields"]
        await self.notifier.slack(params.get("target"), fill(params["text"], fields))
        return {"target": params.get("target")}
