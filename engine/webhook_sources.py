"""The webhook sources ``nurture.yaml`` configures, for the daemon and for its acceptor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.webhook_handler import WebhookSource

if TYPE_CHECKING:
    from engine.config.daemon import DaemonConfig

ContactEmail = Callable[[str], Awaitable[str | None]]


def signed_source_secrets(daemon: DaemonConfig, env: Mapping[str, str]) -> dict[str, list[str]]:
    """The sources whose deliveries are complete once their signature checks (generic,
    Greenhouse, Ashby), each with its secrets: what the acceptor process can serve alone.
    A vendor whose secret is unset gets a placeholder, so its deliveries are refused 401
    rather than 404; the generic source is served only with a secret."""

    def secrets(names: list[str]) -> list[str]:
        return [env[n] for n in names if env.get(n)] or ["unset"]

    found: dict[str, list[str]] = {}
    vendors = daemon.vendors
    if vendors.generic is not None:
        generic = [env[n] for n in vendors.generic.webhook_secret_envs if env.get(n)]
        if generic:
            found["generic"] = generic
    if vendors.greenhouse is not None:
        found["greenhouse"] = secrets(vendors.greenhouse.webhook_secret_envs)
    if vendors.ashby is not None:
        found["ashby"] = secrets(vendors.ashby.webhook_secret_envs)
    return found


def signed_sources(secrets: Mapping[str, Sequence[str]]) -> dict[str, WebhookSource]:
    """The sources ``signed_source_secrets`` names, built."""
    from adapters import sources
    from adapters.generic_webhooks import StandardWebhooksSource

    builders: dict[str, Callable[[list[str]], WebhookSource]] = {
        "generic": StandardWebhooksSource,
        "greenhouse": sources.greenhouse,
        "ashby": sources.ashby,
    }
    return {name: builders[name](list(values)) for name, values in secrets.items()}


def webhook_sources(
    daemon: DaemonConfig,
    env: Mapping[str, str],
    *,
    lever: Any = None,
    contact_email: ContactEmail | None = None,
) -> dict[str, WebhookSource]:
    """Every configured source whose secret is set. Lever and HubSpot deliveries are read back
    from their vendor (``lever``: an API client, ``contact_email``: HubSpot's contact lookup),
    so they are built only when those are given."""
    from adapters import sources

    known = signed_sources(signed_source_secrets(daemon, env))
    vendors = daemon.vendors
    if vendors.lever is not None and lever is not None:
        lever_secrets = [env[n] for n in vendors.lever.webhook_secret_envs if env.get(n)]
        known["lever"] = sources.lever(lever_secrets or ["unset"], lever)
    hub = vendors.hubspot
    secret = env.get(hub.client_secret_env or "") if hub is not None else None
    if secret and contact_email is not None:
        known["hubspot"] = sources.hubspot([secret], contact_email)
    return known
