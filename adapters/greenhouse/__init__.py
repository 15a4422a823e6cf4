"""Greenhouse Recruiting: webhook normaliser (``webhooks.py``)."""

from __future__ import annotations

from adapters.greenhouse.webhooks import parse_webhook as parse_webhook

__all__ = ["parse_webhook"]
