"""SMTP alert e-mail (contract section 6): one plain-text message per alert, over aiosmtplib.

Contract facts this module relies on, with their standing in the contract:

- [P] Ports: 587 submission with ``STARTTLS`` (RFC 6409 / RFC 3207), 465 implicit TLS, 25 relay.
  Only 587-style ``STARTTLS`` (or, for a loopback relay, clear text) is implemented here.
- [V] ``STARTTLS`` answered 454 (TLS temporarily unavailable) or 501 (syntax error), or not
  offered at all: the client must abort and never continue in clear text (CPython fixed exactly
  this in smtplib, CVE-2016-0772). Here that is a permanent ``AdapterRejected``: a relay that
  does not do TLS is a configuration problem, and silently retrying it would only hide that.
- [P] Dialogue: EHLO, STARTTLS, EHLO again, AUTH (PLAIN/LOGIN; 235 ok, 535 bad credentials),
  MAIL FROM, RCPT TO, DATA (354), ``.``, 250, QUIT (221).
- [P] Retry rule: 4xx replies are transient (``AdapterUnavailable``, retryable), 5xx replies are
  permanent (``AdapterRejected``). Connection failures are ``AdapterUnavailable``, no answer in
  time is ``AdapterTimeout``.
- [V] ``aiosmtplib`` (PyPI 5.1.3) is the asyncio client.

``AdapterRejected.status`` carries the server's reply code; ``0`` means the client refused on
its own with no reply code to report (STARTTLS not offered, certificate not trusted, AUTH not
offered). The password never appears in an error message, a log line or ``repr``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from typing import TYPE_CHECKING, NoReturn

import aiosmtplib

from engine.errors import AdapterError, AdapterRejected, AdapterTimeout, AdapterUnavailable

if TYPE_CHECKING:
    from engine.config.daemon import EmailTarget

log = logging.getLogger(__name__)

VENDOR = "smtp"
NO_REPLY_CODE = 0
"""``AdapterRejected.status`` when the refusal is the client's, not a server reply."""
CLOSE_GRACE = 1.0
"""Seconds to let a closing (TLS) connection shut down cleanly before aborting it."""


class SmtpAlertTarget:
    """An alert target: one SMTP relay and a fixed list of recipients (implements AlertPort).

    ``starttls=True`` (the default) makes TLS mandatory: the session is aborted before AUTH or
    MAIL FROM if the server does not offer or refuses ``STARTTLS``. ``starttls=False`` sends in
    clear text and is only sensible for a relay on the loopback interface.
    ``tls_context`` replaces the default (system trust store, hostname checked) context, e.g. to
    trust a test server's self-signed certificate.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if not recipients:
            raise ValueError(f"alert target {name!r}: at least one recipient is needed")
        if (username is None) != (password is None):
            raise ValueError(f"alert target {name!r}: username and password go together")
        envelope_from = parseaddr(sender)[1]
        if "@" not in envelope_from:
            raise ValueError(f"alert target {name!r}: sender {sender!r} is not an address")
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout = timeout
        self.tls_context = tls_context
        self.local_hostname = local_hostname
        self._envelope_from = envelope_from
        self._envelope_to = [addr for _, addr in getaddresses(self.recipients) if addr]
        if len(self._envelope_to) != len(self.recipients):
            raise ValueError(f"alert target {name!r}: a recipient is not an address")

    def __repr__(self) -> str:
        return (
            f"SmtpAlertTarget(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"starttls={self.starttls}, username={self.username!r}, "
            f"password={'***' if self._password is not None else None})"
        )

    def build_message(self, subject: str, text: str, message_id: str | None = None) -> EmailMessage:
        """The RFC 5322 message for one alert: text/plain, UTF-8.

        ``message_id`` (``<left@right>``) replaces the random one, e.g. to name a candidate
        email by its idempotency key.
        """
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        # A header value may not hold a line break; an alert subject is one line anyway.
        msg["Subject"] = " ".join(subject.split())
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id or make_msgid(domain=self._envelope_from.rpartition("@")[2])
        msg.set_content(text, subtype="plain", charset="utf-8")
        return msg

    def with_recipients(self, recipients: Sequence[str]) -> SmtpAlertTarget:
        """The same relay and credentials, other recipients (e.g. an interviewer)."""
        return SmtpAlertTarget(
            self.name,
            self.host,
            self.port,
            self.sender,
            recipients,
            starttls=self.starttls,
            username=self.username,
            password=self._password,
            timeout=self.timeout,
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
        )

    async def send_alert(self, subject: str, text: str, *, message_id: str | None = None) -> None:
        """Deliver one message; raises ``AdapterError`` subclasses only."""
        message = self.build_message(subject, text, message_id)
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=False,
            start_tls=False,  # done by hand below, so that "not offered" can never fall back
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
        )
        try:
            await smtp.connect()
            if self.starttls:
                await self._starttls(smtp)
            if self.username is not None and self._password is not None:
                await smtp.login(self.username, self._password)
            refused, _ = await smtp.send_message(
                message, sender=self._envelope_from, recipients=self._envelope_to
            )
        except AdapterError:
            raise
        except Exception as exc:  # mapped one by one in _raise_mapped; the rest propagate
            self._raise_mapped(exc)
        finally:
            await _close(smtp)
        if refused:
            # Delivered to the others; retrying would send them a duplicate.
            log.warning(
                "alert target %s: some recipients refused: %s",
                self.name,
                ", ".join(f"{rcpt} ({r.code} {r.message})" for rcpt, r in refused.items()),
            )

    async def _starttls(self, smtp: aiosmtplib.SMTP) -> None:
        await smtp.ehlo()
        if not smtp.supports_extension("starttls"):
            raise AdapterRejected(
                f"{self.host}:{self.port} does not offer STARTTLS; not sending in clear text",
                vendor=VENDOR,
                status=NO_REPLY_CODE,
            )
        try:
            await smtp.starttls()
        except aiosmtplib.SMTPResponseException as exc:  # 454, 501, anything but 220
            raise AdapterRejected(
                f"{self.host}:{self.port} refused STARTTLS: {exc.code} {exc.message}; "
                "not sending in clear text",
                vendor=VENDOR,
                status=exc.code,
                body_excerpt=self._scrub(exc.message),
            ) from None
        await smtp.ehlo()  # RFC 3207 4.2: forget what was learnt before TLS, ask again

    def _raise_mapped(self, exc: Exception) -> NoReturn:
        """Re-raise a library error as the engine's; the password is scrubbed from the text."""
        where = f"{self.host}:{self.port}"
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [r.code for r in exc.recipients]
            replies = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if any(400 <= code < 500 for code in codes):
                raise AdapterUnavailable(
                    self._scrub(f"{where} refused every recipient: {replies}"),
                    vendor=VENDOR,
                    status=min(codes),
                ) from None
            raise AdapterRejected(
                self._scrub(f"{where} refused every recipient: {replies}"),
                vendor=VENDOR,
                status=max(codes),
                body_excerpt=self._scrub(replies)[:200],
            ) from None
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            what = type(exc).__name__.removeprefix("SMTP")
            text = self._scrub(f"{where} answered {exc.code} {exc.message} ({what})")
            if 400 <= exc.code < 500:
                raise AdapterUnavailable(text, vendor=VENDOR, status=exc.code) from None
            if 500 <= exc.code < 600:
                raise AdapterRejected(
                    text,
                    vendor=VENDOR,
                    status=exc.code,
                    body_excerpt=self._scrub(exc.message)[:200],
                ) from None
            # No reply at all (aiosmtplib uses -1) or nonsense: the connection is suspect.
            raise AdapterUnavailable(text, vendor=VENDOR, status=None) from None
        if isinstance(exc, TimeoutError):  # SMTPTimeoutError and its connect/read kinds
            raise AdapterTimeout(
                self._scrub(f"{where}: no answer within {self.timeout:g}s ({exc})"),
                vendor=VENDOR,
            ) from None
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise AdapterRejected(
                self._scrub(f"{where}: TLS certificate not trusted ({exc.verify_message})"),
                vendor=VENDOR,
                status=NO_REPLY_CODE,
            ) from None
        if isinstance(exc, OSError):  # refused, reset, SMTPServerDisconnected, TLS handshake
            raise AdapterUnavailable(
                self._scrub(f"{where}: connection failed ({exc})"), vendor=VENDOR
            ) from None
        if isinstance(exc, aiosmtplib.SMTPException):  # AUTH not offered, SMTPUTF8 needed, ...
            raise AdapterRejected(
                self._scrub(f"{where}: {exc.message}"), vendor=VENDOR, status=NO_REPLY_CODE
            ) from None
        if isinstance(exc, ValueError):  # an address aiosmtplib will not put on the wire
            raise AdapterRejected(
                self._scrub(f"{where}: {exc}"), vendor=VENDOR, status=NO_REPLY_CODE
            ) from None
        raise exc

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text


async def _close(smtp: aiosmtplib.SMTP) -> None:
    """QUIT politely when the session is still up (nothing secret is sent), then close.

    Closing a TLS transport only starts the TLS shutdown; the socket is released a few loop
    iterations later. Wait (briefly) for that, so no socket outlives the call; abort after
    ``CLOSE_GRACE`` seconds.
    """
    transport = smtp.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    try:
        if smtp.is_connected:
            await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()
    if sock is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_GRACE
    while sock.fileno() != -1:
        if loop.time() >= deadline:
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            for _ in range(3):  # abort schedules connection_lost, which closes the socket
                await asyncio.sleep(0)
            return
        await asyncio.sleep(0.005)


def from_config(target: EmailTarget, environ: Mapping[str, str]) -> SmtpAlertTarget:
    """Build the target from its configuration; credentials come from ``environ``.

    A variable named in the configuration but absent (or empty) is a ``ValueError`` that names
    the variable, never a value.
    """
    smtp = target.smtp
    username = _from_env(target.name, "username_env", smtp.username_env, environ)
    password = _from_env(target.name, "password_env", smtp.password_env, environ)
    if (username is None) != (password is None):
        raise ValueError(
            f"alert target {target.name!r}: smtp.username_env and smtp.password_env "
            "must both be set or both be left out"
        )
    return SmtpAlertTarget(
        target.name,
        smtp.host,
        smtp.port,
        smtp.sender,
        target.to,
        starttls=smtp.starttls,
        username=username,
        password=password,
    )


def _from_env(
    target: str, field: str, variable: str | None, environ: Mapping[str, str]
) -> str | None:
    if variable is None:
        return None
    value = environ.get(variable)
    if not value:
        raise ValueError(
            f"alert target {target!r}: environment variable {variable} "
            f"(smtp.{field}) is not set or empty"
        )
    return value
