"""Lever: webhooks read back through the Data API, the ``AtsPort`` client, a poller, a simulator.

Canonical identity: ``candidate.id`` = Lever contact id, ``application.id`` = opportunity id
(see ``adapters.lever.client``).
"""

from __future__ import annotations

from adapters.lever.client import LeverClient as LeverClient
from adapters.lever.poller import OpportunityPoller as OpportunityPoller
from adapters.lever.webhooks import LeverOptions as LeverOptions
from adapters.lever.webhooks import parse_webhook as parse_webhook
from adapters.lever.webhooks import verify_and_parse as verify_and_parse

__all__ = ["LeverClient", "LeverOptions", "OpportunityPoller", "parse_webhook", "verify_and_parse"]
