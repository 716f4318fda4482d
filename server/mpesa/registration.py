"""Registering the gateway with Daraja, from configuration: the C2B callback URLs, and
the shortcode for Pull Transactions."""

from __future__ import annotations

from server.mpesa.callback_urls import callback_urls, pull_callback_url
from server.mpesa.client import DarajaClient, PullRegistration, Registration
from server.mpesa.settings import C2BSettings, DarajaSettings


async def register_callback_urls(
    public_url: str, daraja: DarajaSettings, c2b: C2BSettings, client: DarajaClient
) -> Registration:
    validation_url, confirmation_url = callback_urls(public_url, c2b.callback_secret)
    return await client.register_urls(
        daraja.shortcode,
        daraja.response_type,
        confirmation_url,
        validation_url,
        daraja.register_version,
    )


async def register_pull(
    public_url: str, daraja: DarajaSettings, c2b: C2BSettings, client: DarajaClient
) -> PullRegistration:
    """Register the shortcode for Pull Transactions (1000 now, 1001 already)."""
    return await client.register_pull(
        daraja.shortcode,
        daraja.pull_nominated_number,
        pull_callback_url(public_url, c2b.callback_secret),
    )
