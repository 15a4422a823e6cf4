"""SMTP alert target against the aiosmtpd loopback simulator (contract section 6)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from email.utils import parseaddr, parsedate_to_datetime

import pytest

from adapters.smtp import SmtpAlertTarget, from_config
from adapters.smtp.mail import mailer_from_config
from adapters.smtp.simulator import SmtpSimulator, self_signed_pem
from engine.config.daemon import EmailTarget, Smtp
from engine.errors import AdapterError, AdapterRejected, AdapterTimeout, AdapterUnavailable
from engine.ports import AlertPort

SENDER = "ATS-CRM Sync <alerts@acme-hiring.example>"
TO = ["ops-oncall@acme-hiring.example"]
USER = "alerts@acme-hiring.example"
PASSWORD = "s3cret-Pa55word-do-not-leak"
SUBJECT = "[sync][staging] Rule gh-reject-to-nurture failing (HubSpot 429)"
TEXT = (
    "Rule gh-reject-to-nurture failed 3 times for event gh:93300111. "
    "Last error: HTTP 429 RATE_LIMIT (TEN_SECONDLY_ROLLING).\nCandidate: Zoë Ünal — ✓"
)


@pytest.fixture
def tls_server() -> Iterator[SmtpSimulator]:
    with SmtpSimulator(starttls=True, username=USER, password=PASSWORD) as server:
        yield server


@pytest.fixture
def plain_server() -> Iterator[SmtpSimulator]:
    with SmtpSimulator(starttls=False) as server:
        yield server


def target(server: SmtpSimulator, **kwargs: object) -> SmtpAlertTarget:
    options: dict[str, object] = {"recipients": TO, "timeout": 5.0}
    if server.starttls:
        options.update(username=USER, password=PASSWORD, tls_context=server.client_tls_context())
    options.update(kwargs)
    return SmtpAlertTarget(
        "ops-mail",
        server.host,
        server.port,
        SENDER,
        **options,  # type: ignore[arg-type]
    )


def test_is_an_alert_port(tls_server: SmtpSimulator) -> None:
    port: AlertPort = target(tls_server)
    assert port.name == "ops-mail"


async def test_delivered_over_starttls_with_auth(tls_server: SmtpSimulator) -> None:
    await target(tls_server).send_alert(SUBJECT, TEXT)

    [msg] = tls_server.messages
    assert msg.tls  # the server saw the session under TLS
    assert msg.authenticated_as == USER
    assert msg.mail_from == "alerts@acme-hiring.example"
    assert msg.rcpt_tos == tuple(TO)
    assert msg.subject == SUBJECT
    assert msg.body.rstrip("\n") == TEXT
    assert parseaddr(msg.headers["From"]) == ("ATS-CRM Sync", "alerts@acme-hiring.example")
    assert msg.headers["To"] == TO[0]
    assert parsedate_to_datetime(msg.headers["Date"]).tzinfo is not None
    assert msg.headers["Message-ID"].endswith("@acme-hiring.example>")
    assert msg.headers["Content-Type"].startswith("text/plain")
    assert "utf-8" in msg.headers["Content-Type"]
    assert PASSWORD.encode() not in msg.raw


async def test_subject_line_breaks_are_folded_away(tls_server: SmtpSimulator) -> None:
    await target(tls_server).send_alert("two\r\nlines", "body")
    assert tls_server.messages[0].subject == "two lines"


async def test_server_without_starttls_is_permanent_and_nothing_is_sent() -> None:
    with SmtpSimulator(starttls=False, username=USER, password=PASSWORD) as server:
        client = SmtpAlertTarget(
            "ops-mail", server.host, server.port, SENDER, TO, username=USER, password=PASSWORD
        )
        with pytest.raises(AdapterRejected, match="does not offer STARTTLS") as err:
            await client.send_alert(SUBJECT, TEXT)
        assert not err.value.retryable
        # No credentials and no envelope went over the clear-text session.
        assert server.auth_attempts == []
        assert server.mail_from_attempts == []
        assert server.messages == []


@pytest.mark.parametrize(
    ("code", "text"), [(454, "4.7.0 TLS not available"), (501, "5.5.4 Syntax error")]
)
async def test_starttls_refused_is_permanent_and_nothing_is_sent(code: int, text: str) -> None:
    with SmtpSimulator(
        starttls=True, username=USER, password=PASSWORD, starttls_reply=(code, text)
    ) as server:
        with pytest.raises(AdapterRejected, match="refused STARTTLS") as err:
            await target(server).send_alert(SUBJECT, TEXT)
        assert err.value.status == code
        assert not err.value.retryable
        assert server.auth_attempts == []
        assert server.mail_from_attempts == []
        assert server.messages == []


async def test_untrusted_certificate_is_permanent(tls_server: SmtpSimulator) -> None:
    other_ca = ssl.create_default_context()  # system roots: the throwaway cert is not among them
    with pytest.raises(AdapterRejected, match="certificate not trusted") as err:
        await target(tls_server, tls_context=other_ca).send_alert(SUBJECT, TEXT)
    assert not err.value.retryable
    assert tls_server.auth_attempts == []
    assert tls_server.messages == []


async def test_451_on_data_is_retryable_then_succeeds(tls_server: SmtpSimulator) -> None:
    tls_server.fail_next(451, "4.3.0 Mail server temporarily rejected message")
    client = target(tls_server)
    with pytest.raises(AdapterUnavailable) as err:
        await client.send_alert(SUBJECT, TEXT)
    assert err.value.retryable
    assert err.value.status == 451
    assert "451 4.3.0 Mail server temporarily rejected message" in str(err.value)
    assert tls_server.messages == []

    await client.send_alert(SUBJECT, TEXT)
    assert len(tls_server.messages) == 1


async def test_550_on_data_is_permanent(tls_server: SmtpSimulator) -> None:
    tls_server.fail_next(550, "5.7.1 Message rejected as spam")
    with pytest.raises(AdapterRejected) as err:
        await target(tls_server).send_alert(SUBJECT, TEXT)
    assert not err.value.retryable
    assert err.value.status == 550
    assert "5.7.1 Message rejected as spam" in str(err.value)
    assert tls_server.messages == []


@pytest.mark.parametrize(("code", "error"), [(450, AdapterUnavailable), (550, AdapterRejected)])
async def test_every_recipient_refused(
    tls_server: SmtpSimulator, code: int, error: type[AdapterError]
) -> None:
    tls_server.fail_next(code, "mailbox unavailable", stage="RCPT")
    with pytest.raises(error) as err:
        await target(tls_server).send_alert(SUBJECT, TEXT)
    assert err.value.status == code
    assert TO[0] in str(err.value)


async def test_some_recipients_refused_is_delivered_and_logged(
    tls_server: SmtpSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    tls_server.fail_next(550, "5.1.1 no such user", stage="RCPT")
    client = target(tls_server, recipients=["gone@acme-hiring.example", *TO])
    with caplog.at_level(logging.WARNING, logger="adapters.smtp.client"):
        await client.send_alert(SUBJECT, TEXT)
    [msg] = tls_server.messages
    assert msg.rcpt_tos == tuple(TO)
    assert "gone@acme-hiring.example (550 5.1.1 no such user)" in caplog.text


async def test_bad_password_is_permanent_and_not_in_the_error(tls_server: SmtpSimulator) -> None:
    wrong = "wr0ng-Pa55word-do-not-leak"
    with pytest.raises(AdapterRejected) as err:
        await target(tls_server, password=wrong).send_alert(SUBJECT, TEXT)
    assert err.value.status == 535
    assert not err.value.retryable
    for text in (str(err.value), repr(err.value), err.value.body_excerpt, repr(err.value.args)):
        assert wrong not in text
        assert PASSWORD not in text
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__
    assert tls_server.auth_attempts  # it did try, under TLS
    assert tls_server.mail_from_attempts == []
    assert tls_server.messages == []


def test_repr_hides_the_password() -> None:
    client = SmtpAlertTarget(
        "ops-mail", "smtp.example.com", 587, SENDER, TO, username=USER, password=PASSWORD
    )
    assert PASSWORD not in repr(client)
    assert "***" in repr(client)


async def test_starttls_false_works_against_a_plain_loopback_server(
    plain_server: SmtpSimulator,
) -> None:
    await target(plain_server, starttls=False).send_alert(SUBJECT, TEXT)
    [msg] = plain_server.messages
    assert not msg.tls
    assert msg.authenticated_as is None
    assert msg.subject == SUBJECT
    assert msg.body.rstrip("\n") == TEXT


async def test_connection_refused_is_retryable() -> None:
    with SmtpSimulator(starttls=False) as server:
        port = server.port
    # The simulator is stopped: nothing listens on that port any more.
    client = SmtpAlertTarget("ops-mail", "127.0.0.1", port, SENDER, TO, starttls=False)
    with pytest.raises(AdapterUnavailable) as err:
        await client.send_alert(SUBJECT, TEXT)
    assert err.value.retryable


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word (no 220 greeting)."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_no_greeting_in_time_is_a_timeout(silent_server: int) -> None:
    client = SmtpAlertTarget(
        "ops-mail", "127.0.0.1", silent_server, SENDER, TO, starttls=False, timeout=0.2
    )
    with pytest.raises(AdapterTimeout) as err:
        await client.send_alert(SUBJECT, TEXT)
    assert err.value.retryable


def email_target(**smtp: object) -> EmailTarget:
    return EmailTarget.model_validate(
        {
            "name": "ops-mail",
            "kind": "email",
            "to": TO,
            "smtp": {"host": "smtp.example.com", "sender": USER, **smtp},
        }
    )


def test_from_config_reads_credentials_from_the_environment() -> None:
    config = email_target(username_env="SMTP_USERNAME", password_env="SMTP_PASSWORD")
    client = from_config(config, {"SMTP_USERNAME": USER, "SMTP_PASSWORD": PASSWORD})
    assert (client.name, client.host, client.port) == ("ops-mail", "smtp.example.com", 587)
    assert client.starttls
    assert client.sender == USER
    assert client.recipients == TO
    assert client.username == USER
    assert client._password == PASSWORD


def test_from_config_without_credentials() -> None:
    client = from_config(email_target(port=25, starttls=False), {})
    assert client.username is None
    assert not client.starttls
    assert client.port == 25


def test_from_config_missing_variable_names_it_not_the_value() -> None:
    config = email_target(username_env="SMTP_USERNAME", password_env="SMTP_PASSWORD")
    with pytest.raises(ValueError, match="SMTP_PASSWORD") as err:
        from_config(config, {"SMTP_USERNAME": USER})
    assert USER not in str(err.value)


async def test_from_config_target_delivers(tls_server: SmtpSimulator) -> None:
    config = email_target(
        host=tls_server.host,
        port=tls_server.port,
        username_env="SMTP_USERNAME",
        password_env="SMTP_PASSWORD",
    )
    client = from_config(config, {"SMTP_USERNAME": USER, "SMTP_PASSWORD": PASSWORD})
    client.tls_context = tls_server.client_tls_context()
    await client.send_alert(SUBJECT, TEXT)
    assert tls_server.messages[0].tls


def test_self_signed_certificate_is_cached_and_loadable() -> None:
    cert, key = self_signed_pem()
    assert cert.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in key
    assert self_signed_pem() == (cert, key)


# -- candidate mail (mail.via: smtp) --------------------------------------------------------


def mail_relay(server: SmtpSimulator, **smtp: object) -> Smtp:
    options: dict[str, object] = {"host": server.host, "port": server.port, "sender": USER}
    options.update(smtp)
    return Smtp(**options)  # type: ignore[arg-type]


async def test_mailer_sends_to_one_address_with_the_given_message_id(
    tls_server: SmtpSimulator,
) -> None:
    relay = mail_relay(tls_server, username_env="U", password_env="P")
    mailer = mailer_from_config(
        relay, {"U": USER, "P": PASSWORD}, tls_context=tls_server.client_tls_context()
    )
    await mailer.send_mail("maya@example.com", "Hi", "Body", "<42%3Aday-0%3A0@nurture>")
    await mailer.send_mail("maya@example.com", "Hi", "Body", "<42%3Aday-0%3A0@nurture>")

    first, _ = tls_server.messages
    assert first.tls and first.rcpt_tos == ("maya@example.com",)
    assert first.headers["To"] == "maya@example.com"
    assert first.headers["Message-ID"] == "<42%3Aday-0%3A0@nurture>"
    assert tls_server.duplicate_message_ids() == {"<42%3Aday-0%3A0@nurture>": 2}
    assert PASSWORD not in repr(mailer)


def test_mailer_from_config_names_a_missing_variable() -> None:
    relay = Smtp(host="smtp.example.com", username_env="U", password_env="P", sender=USER)
    with pytest.raises(ValueError, match=r"mail\.smtp\.password_env: environment variable P"):
        mailer_from_config(relay, {"U": USER})
