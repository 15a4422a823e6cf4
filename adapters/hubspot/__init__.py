"""HubSpot: webhook normaliser (``webhooks.py``) and polled e-mail events (``email_events.py``)."""

from __future__ import annotations

from adapters.hubspot.email_events import PolledPage as PolledPage
from adapters.hubspot.email_events import parse_email_events as parse_email_events
from adapters.hubspot.email_events import (
    parse_subscription_timeline as parse_subscription_timeline,
)
from adapters.hubspot.webhooks import parse_webhook as parse_webhook

__all__ = ["PolledPage", "parse_email_events", "parse_subscription_timeline", "parse_webhook"]
