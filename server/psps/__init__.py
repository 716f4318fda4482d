"""Payment service providers: Qmoney, M-Pesa and external API providers."""
