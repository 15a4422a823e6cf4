"""Reads and writes of ``mail_sends``: the record of each candidate email sent over SMTP.

Kept apart from ``queries`` because only the SMTP delivery path (``engine.mail``) uses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store.queries import _insert
from engine.store.tables import mail_sends


async def get(conn: AsyncConnection, key: str) -> Any:
    """The row for this idempotency key, or None."""
    query = select(mail_sends).where(mail_sends.c.idempotency_key == key)
    return (await conn.execute(query)).mappings().first()


async def start(
    conn: AsyncConnection, key: str, message_id: str, recipient: str, now: datetime
) -> None:
    """Record an attempt as ``sending`` (its outcome is unknown until ``finish``)."""
    statement = _insert(conn, mail_sends).values(
        idempotency_key=key,
        message_id=message_id,
        recipient=recipient,
        status="sending",
        attempts=1,
        first_attempt_at=now,
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["idempotency_key"],
            set_={"status": "sending", "attempts": mail_sends.c.attempts + 1},
        )
    )


async def finish(conn: AsyncConnection, key: str, status: str, now: datetime) -> None:
    """``sent`` (the relay accepted it) or ``refused`` (a reply code said no: not delivered)."""
    values: dict[str, Any] = {"status": status}
    if status == "sent":
        values["sent_at"] = now
    await conn.execute(
        update(mail_sends).where(mail_sends.c.idempotency_key == key).values(**values)
    )
