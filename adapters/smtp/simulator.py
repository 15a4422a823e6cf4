"""A loopback SMTP server that records what it receives, for tests (aiosmtpd, contract section 6).

It runs aiosmtpd's threaded ``Controller`` on ``127.0.0.1`` (a free port chosen by the OS) and
keeps every accepted message as a ``CapturedMessage``: envelope, parsed headers and body, and
whether the session was under TLS and authenticated.

Modes, each mirroring a contract fact:

- ``starttls=True``: ``STARTTLS`` is offered with a throwaway self-signed certificate for
  ``127.0.0.1``/``localhost`` made at start; ``client_tls_context()`` trusts exactly it. AUTH is
  then only offered after TLS, and MAIL needs it ([P] RFC 3207 / 4954 dialogue).
- ``starttls=False``: ``STARTTLS`` is not offered at all (the downgrade a client must refuse,
  [V] CVE-2016-0772); AUTH, if configured, is offered in clear text but not required.
- ``starttls_reply=(454, "4.7.0 TLS not available")``: offered, but answered with that reply.
- ``username``/``password``: AUTH PLAIN and LOGIN; a mismatch answers 535 ([P] RFC 4954).
- ``fail_next(code, message, times, stage)``: the next MAIL, RCPT or DATA answers ``code``,
  e.g. 451 (transient) or 550 (permanent) ([P] RFC 5321 retry rule).

``[V]`` aiosmtpd 1.4.6 is the server library. Certificates come from the ``cryptography``
package when it can be imported, else from the ``openssl`` command (``trustme`` would need
``cryptography`` itself, so it is no further fallback).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import hmac
import importlib
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["MAIL", "RCPT", "DATA"]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class CapturedMessage:
    """One message the server accepted (answered 250 to its DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    body: str
    headers: dict[str, str]
    tls: bool
    authenticated_as: str | None
    raw: bytes = field(repr=False)


@dataclass
class _Fault:
    stage: Stage
    reply: str


class _Handler:
    """aiosmtpd hooks; called on the server thread, read from the test's thread under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[CapturedMessage] = []
        self.mail_from_attempts: list[str] = []
        self.auth_attempts: list[str] = []
        self.faults: list[_Fault] = []

    def _fault(self, stage: Stage) -> str | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault.stage == stage:
                    del self.faults[i]
                    return fault.reply
        return None

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        with self.lock:
            self.mail_from_attempts.append(address)
        reply = self._fault("MAIL")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._fault("RCPT")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._fault("DATA")
        if reply is not None:
            return reply
        raw = envelope.original_content or b""
        # On the wire lines end in CRLF; the email package wants them as "\n".
        msg = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        part = msg.get_body(preferencelist=("plain",))
        body = part.get_content() if isinstance(part, EmailMessage) else ""
        auth = session.auth_data if session.authenticated else None
        captured = CapturedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            subject=str(msg.get("Subject", "")),
            body=str(body),
            headers={k: str(v) for k, v in msg.items()},
            tls=session.ssl is not None,
            authenticated_as=auth if isinstance(auth, str) else None,
            raw=raw,
        )
        with self.lock:
            self.messages.append(captured)
        return "250 OK: queued"


class _SMTP(SMTP):
    """aiosmtpd's server, with an optional canned answer to ``STARTTLS``."""

    def __init__(
        self, handler: _Handler, *, starttls_reply: tuple[int, str] | None, **kwargs: Any
    ) -> None:
        self._starttls_reply = starttls_reply
        super().__init__(handler, **kwargs)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._starttls_reply is not None:
            code, text = self._starttls_reply
            await self.push(f"{code} {text}")
            return
        await super().smtp_STARTTLS(arg)


class _Controller(Controller):
    """A ``Controller`` that builds ``_SMTP`` and learns its port when asked to bind port 0."""

    def __init__(self, handler: _Handler, make_server: Callable[[], SMTP], *, port: int) -> None:
        super().__init__(handler, hostname=HOST, port=port)
        self._make_server = make_server

    def factory(self) -> SMTP:
        return self._make_server()

    def _trigger_server(self) -> None:
        # Called once the listener is bound: the first moment its real port can be read.
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = int(self.server.sockets[0].getsockname()[1])
        super()._trigger_server()  # type: ignore[no-untyped-call]  # untyped in aiosmtpd


class SmtpSimulator:
    """Start with ``start()`` (or ``with``); ``host``/``port`` are known after start."""

    def __init__(
        self,
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        starttls_reply: tuple[int, str] | None = None,
        port: int = 0,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        if starttls_reply is not None and not starttls:
            raise ValueError("starttls_reply needs starttls=True (STARTTLS must be offered)")
        self.starttls = starttls
        self.username = username
        self._password = password
        self._starttls_reply = starttls_reply
        self._handler = _Handler()
        self._server_tls: ssl.SSLContext | None = None
        self._cert_pem: str | None = None
        if starttls:
            cert_pem, key_pem = self_signed_pem()
            self._cert_pem = cert_pem
            self._server_tls = _server_context(cert_pem, key_pem)
        self._controller = _Controller(self._handler, self._make_server, port=port)
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._controller.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._controller.stop()
            self._started = False

    def __enter__(self) -> SmtpSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if not self._started:
            raise RuntimeError("the simulator is not started")
        return int(self._controller.port)

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (hostname checked)."""
        if self._cert_pem is None:
            raise RuntimeError("this simulator does not offer STARTTLS")
        return ssl.create_default_context(cadata=self._cert_pem)

    # -- what happened ---------------------------------------------------------------------

    @property
    def messages(self) -> list[CapturedMessage]:
        with self._handler.lock:
            return list(self._handler.messages)

    def duplicate_message_ids(self) -> dict[str, int]:
        """Message-IDs accepted more than once, with their counts (SMTP itself never dedups,
        so this is how a test proves a retry did not send an email twice)."""
        counts: dict[str, int] = {}
        for message in self.messages:
            ident = message.headers.get("Message-ID", "")
            if ident:
                counts[ident] = counts.get(ident, 0) + 1
        return {ident: n for ident, n in counts.items() if n > 1}

    @property
    def mail_from_attempts(self) -> list[str]:
        """Every ``MAIL FROM`` address seen, accepted or not."""
        with self._handler.lock:
            return list(self._handler.mail_from_attempts)

    @property
    def auth_attempts(self) -> list[str]:
        """The login name of every AUTH attempt, successful or not."""
        with self._handler.lock:
            return list(self._handler.auth_attempts)

    def fail_next(
        self,
        code: int = 451,
        message: str = "4.3.0 Temporary failure, try again later",
        times: int = 1,
        stage: Stage = "DATA",
    ) -> None:
        """Answer the next ``times`` commands of ``stage`` with ``code message``."""
        with self._handler.lock:
            self._handler.faults.extend(_Fault(stage, f"{code} {message}") for _ in range(times))

    def reset(self) -> None:
        with self._handler.lock:
            self._handler.messages.clear()
            self._handler.mail_from_attempts.clear()
            self._handler.auth_attempts.clear()
            self._handler.faults.clear()

    # -- server side -----------------------------------------------------------------------

    def _make_server(self) -> SMTP:
        auth = self.username is not None
        return _SMTP(
            self._handler,
            starttls_reply=self._starttls_reply,
            hostname="smtp-simulator.localhost",
            tls_context=self._server_tls,
            # With TLS: AUTH only after STARTTLS, and required before MAIL. Without TLS the
            # server may offer AUTH in clear text (loopback only) but cannot require it:
            # aiosmtpd warns about exactly that combination.
            auth_require_tls=self.starttls,
            auth_required=auth and self.starttls,
            authenticator=self._authenticate if auth else None,
        )

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.username is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        with self._handler.lock:
            self._handler.auth_attempts.append(login)
        assert self._password is not None
        ok = hmac.compare_digest(login.encode(), self.username.encode()) & hmac.compare_digest(
            auth_data.password, self._password.encode()
        )
        if ok:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8


def _server_context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_text(cert_pem)
        key.write_text(key_pem)
        context.load_cert_chain(cert, key)
    return context


@functools.cache
def self_signed_pem() -> tuple[str, str]:
    """(certificate, private key) in PEM for ``127.0.0.1`` and ``localhost``, valid one day."""
    try:
        return _pem_with_cryptography()
    except ImportError:
        pass
    if shutil.which("openssl"):
        return _pem_with_openssl()
    raise RuntimeError("a TLS test certificate needs the 'cryptography' package or 'openssl'")


def _pem_with_cryptography() -> tuple[str, str]:
    # Imported by name so that type checking does not depend on the optional package.
    x509: Any = importlib.import_module("cryptography.x509")
    hashes: Any = importlib.import_module("cryptography.hazmat.primitives.hashes")
    ec: Any = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    serialization: Any = importlib.import_module("cryptography.hazmat.primitives.serialization")
    oid: Any = importlib.import_module("cryptography.x509.oid")

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, "smtp-simulator")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


def _pem_with_openssl() -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=smtp-simulator",
                "-addext",
                f"subjectAltName=DNS:localhost,IP:{HOST}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return cert.read_text(), key.read_text()
