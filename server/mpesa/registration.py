"""Registering the gateway's callback URLs with Daraja, from configuration."""

from __future__ import annotations

from server.mpesa.callback_urls import callback_urls
from server.mpesa.client import DarajaClient, Registration
from server.startup.config import Settings


async def register_callback_urls(settings: Settings, client: DarajaClient) -> Registration:
    validation_url, confirmation_url = callback_urls(settings.server.public_url,
                                                     settings.c2b.callback_secret)
    return await client.register_urls(settings.daraja.shortcode, settings.daraja.response_type,
                                       confirmation_url, validation_url,
                                       settings.daraja.register_version)
