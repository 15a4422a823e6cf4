"""Candidate email over SMTP (``mail.via: smtp``): the ``MailPort`` over the alert client.

The relay, TLS rules and the reply-code classification are the alert client's (contract
section 6): ``STARTTLS`` is mandatory unless ``starttls: false`` (loopback relays only), 4xx
replies are ``AdapterUnavailable`` (retried), 5xx ``AdapterRejected`` (dead letter). Each
message goes to one recipient and carries the ``Message-ID`` the engine chose, so a resend of
the same email has the same id.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from adapters.smtp.client import SmtpAlertTarget
from engine.config.daemon import Smtp

NAME = "mail"


class SmtpMailer:
    """One relay; ``send_mail`` delivers one plain-text message to one address."""

    def __init__(self, relay: SmtpAlertTarget) -> None:
        self.relay = relay

    def __repr__(self) -> str:
        return f"SmtpMailer({self.relay!r})"

    async def send_mail(self, to: str, subject: str, text: str, message_id: str) -> None:
        await self.relay.with_recipients([to]).send_alert(subject, text, message_id=message_id)


def mailer_from_config(
    smtp: Smtp,
    environ: Mapping[str, str],
    *,
    tls_context: ssl.SSLContext | None = None,
) -> SmtpMailer:
    """The mailer for ``mail.smtp``; credentials come from the variables it names."""
    username = _secret("username_env", smtp.username_env, environ)
    password = _secret("password_env", smtp.password_env, environ)
    if (username is None) != (password is None):
        raise ValueError(
            "mail.smtp: username_env and password_env must both be set or both be left out"
        )
    relay = SmtpAlertTarget(
        NAME,
        smtp.host,
        smtp.port,
        smtp.sender,
        [smtp.sender],  # replaced per message by the candidate's address
        starttls=smtp.starttls,
        username=username,
        password=password,
        tls_context=tls_context,
    )
    return SmtpMailer(relay)


def _secret(field: str, variable: str | None, environ: Mapping[str, str]) -> str | None:
    if variable is None:
        return None
    value = environ.get(variable)
    if not value:
        raise ValueError(f"mail.smtp.{field}: environment variable {variable} is not set or empty")
    return value
