"""Slack incoming webhooks, used for alerts."""

from __future__ import annotations
