"""Guardrails checked before every outbound touch, whatever a rule or sequence says.

* suppression (unsubscribed, Do Not Contact, archived) -> the touch is skipped, with its reason;
* quiet hours and the step's send window, in the candidate's time zone (or the configured
  fallback) -> the touch is deferred to the next allowed moment, never dropped;
* a frequency cap per person across all sequences and rules (e.g. one nurture email per
  48 h) -> deferred until the oldest touch in the window ages out.

Transactional mail (application receipts, interview logistics) is exempt from quiet hours
and the cap, not from suppression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.config.daemon import DaemonConfig
from engine.config.types import parse_duration

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH_DAYS = 15


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _within(moment: time, start: time, end: time) -> bool:
    """Half-open [start, end); a window with start > end wraps midnight."""
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


@dataclass(frozen=True)
class Window:
    days: tuple[str, ...]
    start: time
    end: time

    @classmethod
    def from_payload(cls, raw: dict[str, Any] | None) -> Window | None:
        if not raw:
            return None
        return cls(tuple(raw["days"]), _clock(raw["start"]), _clock(raw["end"]))

    def allows(self, local: datetime) -> bool:
        day = _DAYS[local.weekday()]
        if self.start > self.end and local.time() < self.end:  # the tail of yesterday's window
            day = _DAYS[(local.weekday() - 1) % 7]
        return day in self.days and _within(local.time(), self.start, self.end)


@dataclass(frozen=True)
class Guardrails:
    default_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    quiet_start: time | None = time(20, 0)
    quiet_end: time | None = time(8, 0)
    cap_max: int = 1
    cap_per: timedelta = timedelta(hours=48)

    @classmethod
    def from_daemon(cls, daemon: DaemonConfig | None) -> Guardrails:
        if daemon is None:
            return cls()
        rails = daemon.guardrails
        quiet = rails.quiet_hours
        return cls(
            default_zone=ZoneInfo(rails.default_time_zone),
            quiet_start=_clock(quiet.start) if quiet else None,
            quiet_end=_clock(quiet.end) if quiet else None,
            cap_max=rails.frequency_cap.max,
            cap_per=parse_duration(rails.frequency_cap.per),
        )

    def zone(self, name: str | None) -> ZoneInfo:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                pass  # a bad zone in ATS data must not block mail: use the fallback
        return self.default_zone

    def _allowed(self, local: datetime, window: Window | None) -> bool:
        if (
            self.quiet_start is not None
            and self.quiet_end is not None
            and _within(local.time(), self.quiet_start, self.quiet_end)
        ):
            return False
        return window is None or window.allows(local)

    def next_allowed(
        self, now: datetime, zone_name: str | None, window: Window | None
    ) -> datetime | None:
        """None when ``now`` is allowed; otherwise the next allowed moment (UTC)."""
        zone = self.zone(zone_name)
        local = now.astimezone(zone)
        if self._allowed(local, window):
            return None
        starts = [t for t in (window.start if window else None, self.quiet_end) if t is not None]
        candidates = []
        for offset in range(_SEARCH_DAYS):
            day = (local + timedelta(days=offset)).date()
            for start in starts:
                moment = datetime.combine(day, start, tzinfo=zone)
                if moment > local and self._allowed(moment, window):
                    candidates.append(moment)
        if not candidates:  # a window no day satisfies; validate stops this, be safe anyway
            return now + timedelta(days=1)
        return min(candidates).astimezone(now.tzinfo)
