"""``nurture.yaml``: how the daemon runs (store, vendors, alerting, guardrails).

Secrets are never values in this file: every secret is the *name* of an environment variable
(keys ending in ``_env``), so the file can live in git and be reviewed like the rules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config.types import ClockTime, Duration, EnvVarName, Identifier, Model

Url = str


class Store(Model):
    url: str = Field(
        "sqlite:///nurture.db",
        pattern=r"^(sqlite|postgresql)(\+[a-z0-9]+)?://",
        description="sqlite:///path/to/file.db (default, one node) or postgresql://host/db",
    )
    password_env: EnvVarName | None = None


class Acceptor(Model):
    """A second process that takes the webhooks of the sources it can verify alone
    (Greenhouse, Ashby, generic) and acknowledges once they are in a spool file, while the
    daemon evaluates them from there: the acknowledgement no longer waits on the daemon's loop."""

    listen: str = Field(pattern=r"^[^\s:]+:[0-9]{1,5}$", description="where vendors post")
    spool: str = Field(
        "nurture-spool.db", min_length=1, description="the spool file, relative to nurture.yaml"
    )
    backlog: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="spooled events not yet evaluated before acknowledgements wait (back-pressure)",
    )


class Server(Model):
    listen: str = Field("127.0.0.1:8080", pattern=r"^[^\s:]+:[0-9]{1,5}$")
    public_url: str = Field(
        "http://127.0.0.1:8080",
        pattern=r"^https?://",
        description="the URL vendors call (HubSpot signs it) and the base of one-click links",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, le=50_000_000)
    admin_token_env: EnvVarName = "NURTURE_ADMIN_TOKEN"
    link_secret_env: EnvVarName = "NURTURE_LINK_SECRET"
    acceptor: Acceptor | None = Field(
        None, description="unset: the daemon takes every webhook itself, on its one loop"
    )


class Greenhouse(Model):
    base_url: Url = Field("https://harvest.greenhouse.io", pattern=r"^https?://")
    auth: Literal["basic", "oauth"] = Field(
        "oauth", description="oauth: Harvest v3 client credentials; basic: v1 API token"
    )
    api_key_env: EnvVarName | None = None
    client_id_env: EnvVarName | None = None
    client_secret_env: EnvVarName | None = None
    token_url: Url = Field("https://auth.greenhouse.io/token", pattern=r"^https?://")
    on_behalf_of: str = Field(min_length=1, description="Greenhouse user id for the audit log")
    webhook_secret_envs: list[EnvVarName] = Field(
        min_length=1, description="several while rotating; any one may sign"
    )
    poll_every: Duration | None = Field(
        None, description="read Harvest this often (unset: no polling, webhooks only)"
    )
    poll: list[Literal["applications", "interviews"]] = Field(
        default_factory=lambda: ["applications", "interviews"],  # type: ignore[arg-type]
        min_length=1,
        description="what poll_every reads; [interviews] when webhooks deliver applications",
    )


class Lever(Model):
    base_url: Url = Field("https://api.lever.co/v1", pattern=r"^https?://")
    api_key_env: EnvVarName
    perform_as: str = Field(min_length=1)
    webhook_secret_envs: list[EnvVarName] = Field(min_length=1)
    poll_every: Duration | None = None


class Ashby(Model):
    base_url: Url = Field("https://api.ashbyhq.com", pattern=r"^https?://")
    api_key_env: EnvVarName
    webhook_secret_envs: list[EnvVarName] = Field(min_length=1)
    poll_every: Duration | None = None


class HubSpot(Model):
    base_url: Url = Field("https://api.hubapi.com", pattern=r"^https?://")
    token_env: EnvVarName
    tier: Literal["starter", "professional", "enterprise"] = Field(
        "starter", description="sets the client-side rate limit (100 or 190 requests / 10 s)"
    )
    requests_per_10s: int | None = Field(
        None,
        ge=1,
        description="the client-side rate limit; default by tier; raise it for a portal with "
        "HubSpot's API limit increase",
    )
    timeout: Duration = Field("10s", description="one API call longer than this is retried")
    client_secret_env: EnvVarName | None = Field(None, description="verifies v3-signed webhooks")
    subscription_id: str | None = Field(
        None,
        description="the subscription nurture mail belongs to; the send-time check then "
        "reads only it (and an opt-out of all email)",
    )
    poll_every: Duration = "1m"
    check_subscription_before_send: bool = Field(
        True,
        description="one status GET before each nurture email; NOT_SUBSCRIBED skips the send "
        "and suppresses the address",
    )


class GenericWebhooks(Model):
    """Canonical events POSTed to /webhooks/generic, signed per the Standard Webhooks spec."""

    webhook_secret_envs: list[EnvVarName] = Field(
        min_length=1, description="whsec_... secrets; several while rotating"
    )


class Vendors(Model):
    generic: GenericWebhooks | None = None
    greenhouse: Greenhouse | None = None
    lever: Lever | None = None
    ashby: Ashby | None = None
    hubspot: HubSpot | None = None


class SlackTarget(Model):
    name: Identifier
    kind: Literal["slack"]
    webhook_url_env: EnvVarName


class Smtp(Model):
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = Field(True, description="false only for a loopback relay")
    username_env: EnvVarName | None = None
    password_env: EnvVarName | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


class EmailTarget(Model):
    name: Identifier
    kind: Literal["email"]
    to: list[str] = Field(min_length=1)
    smtp: Smtp


class Mail(Model):
    """How candidate email (crm.send_email) leaves: the CRM's transactional send, or SMTP."""

    via: Literal["crm", "smtp"] = Field(
        "crm", description="crm: HubSpot single-send of crm_email_id; smtp: the template body"
    )
    smtp: Smtp | None = Field(None, description="the relay; required with via: smtp")


class Alerting(Model):
    targets: list[SlackTarget | EmailTarget] = Field(min_length=1)
    error_rate_threshold: float = Field(0.02, gt=0, le=1, description="per trigger per window")
    error_rate_window: Duration = "1d"
    group_window: Duration = Field("10m", description="alerts of one kind in this window merge")


class QuietHours(Model):
    start: ClockTime = "20:00"
    end: ClockTime = "08:00"


class FrequencyCap(Model):
    max: int = Field(1, ge=1)
    per: Duration = "48h"
    exempt: list[Literal["transactional"]] = Field(default_factory=lambda: ["transactional"])  # type: ignore[arg-type]


class Suppression(Model):
    archived_after: Duration = Field(
        "730d", description="no contact for this long puts a candidate in the archived segment"
    )
    tags: list[str] = Field(
        default_factory=lambda: ["Do Not Contact"], description="ATS tags that suppress"
    )


class Guardrails(Model):
    default_time_zone: str = "UTC"
    quiet_hours: QuietHours | None = QuietHours()
    frequency_cap: FrequencyCap = FrequencyCap()
    suppression: Suppression = Suppression()


class DaemonConfig(Model):
    """The whole of ``nurture.yaml``."""

    version: Literal[1]
    ats: Literal["greenhouse", "lever", "ashby"]
    crm: Literal["hubspot"] = "hubspot"
    config_paths: list[str] = Field(default_factory=lambda: ["rules", "sequences"], min_length=1)
    store: Store = Store()
    server: Server = Server()
    vendors: Vendors
    alerting: Alerting
    guardrails: Guardrails = Guardrails()
    mail: Mail = Mail()
