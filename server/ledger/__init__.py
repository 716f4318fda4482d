"""Transactions of every channel, premiums, and the settlement that activates policies."""
