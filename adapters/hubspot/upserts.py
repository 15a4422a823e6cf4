"""Contact upserts by email, coalesced into HubSpot's batch upsert.

Each outbox action upserts one contact. Sent one by one, that costs a search and a create (or
an update) per person, and HubSpot's search is eventually consistent, so two creates close
together could both miss. The batch upsert endpoint looks the email up and creates or updates
in one step on HubSpot's side, for up to ``BATCH_UPSERT_CAP`` people per request.

No request waits for company: while fewer than ``concurrent_batches`` requests are out, an
upsert goes at once (alone, when traffic is light). Only when they are all out do upserts
gather, and the next request takes everyone waiting. So a batch forms exactly when there is a
queue, and an idle portal sees the latency of one request, not of a timer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from engine import AdapterError, AdapterUnavailable
from engine.errors import AdapterRejected

BATCH_UPSERT_CAP = 100
"""Inputs per batch upsert request [P]; larger batches are split into requests of this size."""


@dataclass(frozen=True)
class BatchError:
    """One ``errors[]`` entry of a 207 answer (HubSpot's StandardError)."""

    status: str
    category: str
    message: str
    context: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class UpsertOutcome:
    """What happened to one input: the contact (``new`` when HubSpot created it) or an error."""

    email: str
    contact_id: str | None = None
    new: bool | None = None
    error: BatchError | None = None


SendBatch = Callable[[Mapping[str, Mapping[str, str]]], Awaitable[list[UpsertOutcome]]]

# HubSpot's categories for an input it judged and refused: sending it again cannot help
_REFUSED = {"VALIDATION_ERROR", "INVALID_EMAIL", "PROPERTY_DOESNT_EXIST", "READ_ONLY_VALUE"}


@dataclass
class _Waiting:
    email: str
    properties: Mapping[str, str]
    answer: asyncio.Future[tuple[str, bool]]


class ContactUpserts:
    """``upsert(email, properties)`` for many concurrent callers, sent as shared batches."""

    def __init__(self, send: SendBatch, vendor: str, concurrent_batches: int = 2) -> None:
        self._send = send
        self._vendor = vendor
        self._limit = concurrent_batches
        self._waiting: list[_Waiting] = []
        self._out = 0
        self._requests: set[asyncio.Task[None]] = set()

    async def upsert(self, email: str, properties: Mapping[str, str]) -> tuple[str, bool]:
        """The contact's id and whether HubSpot created it; ``email`` is normalised."""
        answer: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(email, properties, answer))
        self._start_if_free()
        return await answer

    def _start_if_free(self) -> None:
        while self._out < self._limit and self._waiting:
            batch = self._take()
            if not batch:
                return
            self._out += 1
            task = asyncio.get_running_loop().create_task(self._request(batch))
            self._requests.add(task)
            task.add_done_callback(functools.partial(self._finished, batch))

    def _take(self) -> list[_Waiting]:
        """Up to the cap, one input per email (HubSpot refuses a batch naming one twice); a
        second upsert of an email waits for the next request, and one whose caller gave up
        (cancelled) is dropped."""
        batch: dict[str, _Waiting] = {}
        later: list[_Waiting] = []
        for item in self._waiting:
            if item.answer.done():
                continue
            if item.email in batch or len(batch) == BATCH_UPSERT_CAP:
                later.append(item)
            else:
                batch[item.email] = item
        self._waiting = later
        return list(batch.values())

    async def _request(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = await self._send({item.email: item.properties for item in batch})
            by_email = {outcome.email: outcome for outcome in outcomes}
            for item in batch:
                if not item.answer.done():
                    _settle(item.answer, by_email.get(item.email), self._vendor)
        except AdapterError as exc:
            if not exc.retryable and len(batch) > 1:
                # refused as a whole (a 400 naming one bad input, say): each goes alone, so
                # only the one HubSpot refuses fails and the others are not dead-lettered
                for item in batch:
                    await self._request([item])
                return
            _fail(batch, exc)
        except Exception as exc:  # each caller gets the reason, whatever it is
            _fail(batch, exc)

    def _finished(self, batch: list[_Waiting], request: asyncio.Task[None]) -> None:
        """Run however the request ended, even cancelled before it began (loop shutdown)."""
        self._requests.discard(request)
        for item in batch:  # no caller of a cancelled request is left waiting for ever
            item.answer.cancel()
        self._out -= 1
        self._start_if_free()


def _fail(batch: list[_Waiting], exc: Exception) -> None:
    for item in batch:
        if not item.answer.done():
            item.answer.set_exception(exc)


def _settle(
    answer: asyncio.Future[tuple[str, bool]], outcome: UpsertOutcome | None, vendor: str
) -> None:
    if outcome is not None and outcome.error is None and outcome.contact_id is not None:
        answer.set_result((outcome.contact_id, bool(outcome.new)))
        return
    error = outcome.error if outcome is not None else None
    reason = "batch upsert: HubSpot " + (
        f"refused this contact: {error.category}: {error.message}"
        if error
        else "answered without a contact id for this input"
    )
    failure: AdapterError
    if error is not None and error.category in _REFUSED:
        failure = AdapterRejected(reason, vendor=vendor, status=400, body_excerpt=error.message)
    else:  # HubSpot answered for the batch but not clearly for this one: worth another try
        failure = AdapterUnavailable(reason, vendor=vendor)
    answer.set_exception(failure)
