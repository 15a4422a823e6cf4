"""Candidate email rendered by the engine and sent over SMTP (``mail.via: smtp``).

Rendering is sandboxed: a template's subject and body may only name declared variables as
``{name}``; each is replaced by the variable's text and nothing else is interpreted. There
is no attribute or index access and no format spec (``str.format`` would allow
``{x.__class__}``), and a value is never rendered again, so ``{`` inside a candidate's name
stays as typed.

Delivery is at least once, with duplicates made as unlikely as the protocol allows. SMTP has
no idempotency key, so each email carries ``Message-ID: <key@nurture>`` built from its
outbox idempotency key, and ``mail_sends`` records it around the send:

1. before connecting, the attempt is committed as ``sending``;
2. when the relay answers 250 to the message, the row is committed as ``sent``;
3. a retry (after a crash, a lost lease or a failed commit) that finds ``sent`` does not send
   again; one that finds ``refused`` (the relay answered with a reply code, so nothing was
   delivered) sends normally.

The window that remains: a crash, or a lost connection, between the relay accepting the
message and step 2's commit. The retry then finds ``sending``, cannot know whether the relay
kept the message, and sends again with the same Message-ID, noted as
``resent_after_unknown_outcome`` in the action's result (many mailbox providers fold messages
with one Message-ID, but SMTP promises nothing). Dropping the email instead would make a lost
welcome mail silent; a rare duplicate is the lesser harm.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any

from engine.clock import Clock
from engine.config.model import PLACEHOLDER
from engine.errors import AdapterError
from engine.ports import MailPort
from engine.store import mail_sends
from engine.store.queries import Claimed
from engine.store.store import Store

_ATEXT = re.compile(r"[^A-Za-z0-9!#$&'*+\-/=?^_`{|}~]")
"""Characters a Message-ID's left part may not hold as they are (RFC 5322 dot-atom-text
without dots, so no dot rule applies); each is written as %XX, which keeps ids distinct."""
MAX_ID_LEFT = 200
"""Longer keys are hashed, keeping the header inside the 998-octet line limit."""


class TemplateError(ValueError):
    """A template names something that is not a declared variable."""


def render(text: str, variables: Mapping[str, str], declared: Collection[str]) -> str:
    """``{name}`` -> the variable's text ("" when unmapped or null); nothing else is read."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in declared:
            raise TemplateError(f"{{{name}}} is not a declared variable of the template")
        return variables.get(name, "")

    return PLACEHOLDER.sub(value, text)


def message_id(idempotency_key: str) -> str:
    """``<key@nurture>``: the same key always gives the same id, two keys never one."""
    left = _ATEXT.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), idempotency_key)
    if len(left) > MAX_ID_LEFT:
        left = "sha256." + hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"<{left}@nurture>"


class SmtpDelivery:
    """Sends one rendered email through a ``MailPort``, recorded in ``mail_sends``."""

    def __init__(self, store: Store, mail: MailPort, clock: Clock) -> None:
        self.store = store
        self.mail = mail
        self.clock = clock

    async def deliver(self, job: Claimed, to: str, subject: str, text: str) -> dict[str, Any]:
        key = job.idempotency_key
        ident = message_id(key)
        async with self.store.transaction() as conn:
            previous = await mail_sends.get(conn, key)
            if previous is not None and previous["status"] == "sent":
                return {"status": "ALREADY_SENT", "message_id": previous["message_id"]}
            await mail_sends.start(conn, key, ident, to, self.clock.now())
        unknown = previous is not None and previous["status"] == "sending"
        try:
            await self.mail.send_mail(to, subject, text, ident)
        except AdapterError as exc:
            if exc.status is not None:  # the relay replied (or the client refused): not sent
                async with self.store.transaction() as conn:
                    await mail_sends.finish(conn, key, "refused", self.clock.now())
            raise
        async with self.store.transaction() as conn:
            await mail_sends.finish(conn, key, "sent", self.clock.now())
        result: dict[str, Any] = {"status": "SENT", "message_id": ident}
        if unknown:
            result["resent_after_unknown_outcome"] = True
        return result
