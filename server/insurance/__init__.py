"""Insurees, products and policies: what premiums are paid for."""
