"""Shared pieces of the vendor normalisers: outcome types, JSON reading with pointers, and
the small conversions every vendor needs (ids, e-mail addresses, timestamps).

A normaliser is a pure function ``parse_webhook(headers, body, *, clock) -> WebhookOutcome``
(one per vendor under ``adapters/<vendor>/webhooks.py``). It never does I/O and never checks
signatures: the server verifies the body first, then calls it, and answers

- ``Accepted``: 200; the events go to the engine, the ``lookups`` to the CRM client first;
- ``Ignored``: 202 and a log line: a known event we do not map, or an unknown one;
- ``PayloadError`` (raised): 400 naming ``pointer``, the JSON Pointer (RFC 6901) of the field
  that does not match the vendor's documented shape; ``""`` is the whole body.

Nothing else may escape a normaliser, whatever the body (a property test holds us to that).

Every event is checked against ``engine.EVENT_DATA[type]`` before it leaves (``build_event``),
so the typed field paths that ``nurture validate`` checks in rules hold at run time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias

from pydantic import ValidationError

import engine
from engine import EVENT_DATA, Event


class Clock(Protocol):
    """Where "now" comes from when a payload has no usable timestamp (engine clocks fit)."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK: Clock = SystemClock()


class PayloadError(ValueError):
    """The body is not JSON or does not have the vendor's shape; ``pointer`` names the field."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer
        self.message = message


@dataclass(frozen=True)
class Ignored:
    """A delivery (or one item of a batch) we understood and chose not to turn into an event."""

    reason: str
    event_id: str | None = None


@dataclass(frozen=True)
class NeedsLookup:
    """An event that can only be built once the CRM tells us the contact's e-mail address.

    HubSpot webhooks name a contact by ``objectId`` only, but the canonical ``Contact`` needs
    ``email``. The server fetches the address and calls ``complete``.
    """

    contact_id: str
    event_id: str
    source: str
    type: str
    time: datetime
    data: Mapping[str, Any]
    subject: str | None = None

    def complete(self, email: str) -> Event:
        """The finished event, with ``contact.email`` set to ``email`` (lower-cased)."""
        address = normalise_email(email)
        if address is None:
            raise ValueError(f"contact {self.contact_id!r}: e-mail address is empty")
        data = dict(self.data)
        data["contact"] = {**dict(data.get("contact") or {}), "email": address}
        return build_event(
            event_type=self.type,
            event_id=self.event_id,
            source=self.source,
            time=self.time,
            subject=self.subject,
            data=data,
        )


@dataclass(frozen=True)
class Accepted:
    """Events to process; for a batch, also what needs a lookup and what was left out."""

    events: tuple[Event, ...] = ()
    lookups: tuple[NeedsLookup, ...] = ()
    ignored: tuple[Ignored, ...] = ()


WebhookOutcome: TypeAlias = Accepted | Ignored
"""What ``parse_webhook`` returns; malformed bodies raise ``PayloadError`` instead."""

WebhookParser: TypeAlias = Callable[[Mapping[str, str], bytes], WebhookOutcome]


def outcome_of(items: Sequence[Event | NeedsLookup | Ignored]) -> WebhookOutcome:
    """Fold per-item results into one outcome: ``Ignored`` when nothing is left to do."""
    events = tuple(i for i in items if isinstance(i, Event))
    lookups = tuple(i for i in items if isinstance(i, NeedsLookup))
    ignored = tuple(i for i in items if isinstance(i, Ignored))
    if events or lookups:
        return Accepted(events=events, lookups=lookups, ignored=ignored)
    if len(ignored) == 1:
        return ignored[0]
    reasons = list(dict.fromkeys(i.reason for i in ignored)) or ["no events in the delivery"]
    return Ignored("; ".join(reasons))


# -- JSON ------------------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """Parse a request body; any failure is a ``PayloadError`` at the root."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise PayloadError("", f"body is not valid JSON: {exc}") from exc


def child_pointer(pointer: str, key: str | int) -> str:
    """``pointer`` extended by one reference token, escaped as RFC 6901 requires."""
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{pointer}/{token}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def expect_object(value: Any, pointer: str) -> JsonObject:
    """``value`` as a ``JsonObject``, or a ``PayloadError`` at ``pointer``."""
    if not isinstance(value, dict):
        raise PayloadError(pointer, f"expected an object, found {_kind(value)}")
    return JsonObject(value, pointer)


def expect_array(value: Any, pointer: str) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(pointer, f"expected an array, found {_kind(value)}")
    return value


class JsonObject:
    """A JSON object that knows its JSON Pointer, so every shape error can name the field.

    ``opt_*`` readers treat a missing key and ``null`` alike; a present value of the wrong
    type is always an error.
    """

    __slots__ = ("pointer", "value")

    def __init__(self, value: dict[str, Any], pointer: str) -> None:
        self.value = value
        self.pointer = pointer

    def at(self, key: str) -> str:
        return child_pointer(self.pointer, key)

    def get(self, key: str) -> Any:
        return self.value.get(key)

    def obj(self, key: str) -> JsonObject:
        value = self.value.get(key)
        if value is None:
            raise PayloadError(self.at(key), "required object is missing")
        return expect_object(value, self.at(key))

    def opt_obj(self, key: str) -> JsonObject | None:
        value = self.value.get(key)
        return None if value is None else expect_object(value, self.at(key))

    def objects(self, key: str) -> list[JsonObject]:
        """An optional array of objects (missing or null: empty)."""
        value = self.value.get(key)
        if value is None:
            return []
        pointer = self.at(key)
        return [
            expect_object(item, child_pointer(pointer, index))
            for index, item in enumerate(expect_array(value, pointer))
        ]

    def id(self, key: str) -> str:
        value = self.opt_id(key)
        if value is None:
            raise PayloadError(self.at(key), "required id is missing")
        return value

    def opt_id(self, key: str) -> str | None:
        """An id given as a string or an integer, always returned as a string."""
        value = self.value.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise PayloadError(
                self.at(key), f"expected a string or integer id, found {_kind(value)}"
            )
        text = str(value).strip()
        if not text:
            raise PayloadError(self.at(key), "id is empty")
        return text

    def text(self, key: str) -> str:
        value = self.opt_text(key)
        if value is None or not value.strip():
            raise PayloadError(self.at(key), "required string is missing or empty")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.value.get(key)
        if value is None or isinstance(value, str):
            return value
        raise PayloadError(self.at(key), f"expected a string, found {_kind(value)}")

    def opt_bool(self, key: str) -> bool | None:
        value = self.value.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise PayloadError(self.at(key), f"expected a boolean, found {_kind(value)}")

    def strings(self, key: str) -> list[str]:
        """An optional array of strings (missing or null: empty)."""
        value = self.value.get(key)
        if value is None:
            return []
        pointer = self.at(key)
        items = expect_array(value, pointer)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise PayloadError(
                    child_pointer(pointer, index), f"expected a string, found {_kind(item)}"
                )
        return list(items)

    def opt_time(self, key: str) -> datetime | None:
        """An ISO-8601 timestamp (a date alone means midnight); naive values are taken as UTC."""
        value = self.opt_text(key)
        if value is None or not value.strip():
            return None
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise PayloadError(self.at(key), f"not an ISO-8601 timestamp: {value[:40]!r}") from exc
        return aware(parsed)

    def opt_epoch_ms(self, key: str) -> datetime | None:
        """Milliseconds since the Unix epoch (HubSpot's ``occurredAt``, ``created``)."""
        value = self.value.get(key)
        if value is None:
            return None
        return epoch_ms(value, self.at(key))


# -- conversions -----------------------------------------------------------------------------


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone; a naive value is taken to be UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def epoch_ms(value: Any, pointer: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(pointer, f"expected epoch milliseconds, found {_kind(value)}")
    if not math.isfinite(value):
        raise PayloadError(pointer, "epoch milliseconds must be finite")
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise PayloadError(pointer, f"epoch milliseconds out of range: {value}") from exc


def first_time(*candidates: datetime | None, clock: Clock) -> datetime:
    """The first timestamp given, else ``clock.now()``: an event's best-known moment."""
    for moment in candidates:
        if moment is not None:
            return aware(moment)
    return aware(clock.now())


def normalise_email(value: str | None) -> str | None:
    """The engine's normalisation, so a vendor address and the identity link always agree."""
    return engine.normalise_email(value)


def email_list(addresses: Iterable[tuple[str | None, str | None]]) -> list[str]:
    """Every non-blank address of ``(value, type)`` pairs, normalised, first occurrence kept."""
    return list(dict.fromkeys(a for v, _ in addresses if (a := normalise_email(v)) is not None))


def primary_email(
    addresses: Iterable[tuple[str | None, str | None]], *, preferred_type: str = "personal"
) -> str | None:
    """The first address of ``preferred_type`` (case-insensitive), else the first address."""
    pairs = [(a, (t or "").strip().lower()) for v, t in addresses if (a := normalise_email(v))]
    for address, kind in pairs:
        if kind == preferred_type.lower():
            return address
    return pairs[0][0] if pairs else None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by case-insensitive name; blank values count as missing."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted and value.strip():
            return value.strip()
    return None


def build_event(
    *,
    event_type: str,
    event_id: str,
    source: str,
    time: datetime,
    subject: str | None,
    data: Mapping[str, Any],
) -> Event:
    """A canonical ``Event`` whose ``data`` passed ``EVENT_DATA[event_type]``.

    A mapping that the canonical model refuses is reported as a ``PayloadError`` at the root
    (the vendor sent a value we cannot represent), never as a crash.
    """
    model = EVENT_DATA[event_type]
    try:
        validated = model.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PayloadError(
            "", f"cannot build a valid {event_type} event: {where}: {first['msg']}"
        ) from exc
    return Event(
        id=event_id,
        source=source,
        type=event_type,
        time=aware(time),
        subject=subject,
        data=validated.model_dump(mode="json"),
    )
