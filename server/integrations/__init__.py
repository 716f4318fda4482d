"""Outbound integrations: the provider transport, token cache, call log, notifier."""
