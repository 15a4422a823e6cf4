"""Ashby: webhook normaliser (``webhooks.py``), the ``AtsPort`` client, a poller, a simulator.

Canonical identity: ``candidate.id`` = Ashby candidate id, ``application.id`` = Ashby
application id (see ``adapters.ashby.client`` for every contract assumption).
"""

from __future__ import annotations

from adapters.ashby.client import AshbyClient as AshbyClient
from adapters.ashby.poller import ApplicationPoller as ApplicationPoller
from adapters.ashby.webhooks import parse_webhook as parse_webhook

__all__ = ["ApplicationPoller", "AshbyClient", "parse_webhook"]
