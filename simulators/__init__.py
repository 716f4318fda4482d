"""Local stand-ins for the mobile-money providers, for development and tests."""
