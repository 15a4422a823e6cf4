"""Ashby: webhook normaliser (``webhooks.py``)."""

from __future__ import annotations

from adapters.ashby.webhooks import parse_webhook as parse_webhook

__all__ = ["parse_webhook"]
