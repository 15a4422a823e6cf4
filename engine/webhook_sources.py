"""The webhook sources ``nurture.yaml`` configures, for the daemon and for its acceptor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.config.daemon import DaemonConfig
from engine.server import WebhookSource

ContactEmail = Callable[[str], Awaitable[str | None]]


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
    from adapters.generic import StandardWebhooksSource

    def secrets(names: list[str]) -> list[str]:
        return [env[n] for n in names if env.get(n)] or ["unset"]

    known: dict[str, WebhookSource] = {}
    vendors = daemon.vendors
    if vendors.generic is not None:
        generic = [env[n] for n in vendors.generic.webhook_secret_envs if env.get(n)]
        if generic:
            known["generic"] = StandardWebhooksSource(generic)
    if vendors.lever is not None and lever is not None:
        known["lever"] = sources.lever(secrets(vendors.lever.webhook_secret_envs), lever)
    if vendors.greenhouse is not None:
        known["greenhouse"] = sources.greenhouse(secrets(vendors.greenhouse.webhook_secret_envs))
    if vendors.ashby is not None:
        known["ashby"] = sources.ashby(secrets(vendors.ashby.webhook_secret_envs))
    hub = vendors.hubspot
    secret = env.get(hub.client_secret_env or "") if hub is not None else None
    if secret and contact_email is not None:
        known["hubspot"] = sources.hubspot([secret], contact_email)
    return known
