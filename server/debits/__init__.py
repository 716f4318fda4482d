"""Debits: the gateway asks a provider to take a premium from the payer's wallet."""
