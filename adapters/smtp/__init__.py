"""SMTP alert e-mail (contract section 6): an AlertPort over aiosmtplib, and a loopback server."""

from __future__ import annotations

from adapters.smtp.client import SmtpAlertTarget, from_config

__all__ = ["SmtpAlertTarget", "from_config"]
