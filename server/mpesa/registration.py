"""Registering the gateway's callback URLs with Daraja, from configuration."""

from __future__ import annotations

from server.mpesa.callback_urls import callback_urls
from server.mpesa.client import DarajaClient, Registration
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
