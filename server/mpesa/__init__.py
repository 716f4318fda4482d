"""M-Pesa (Daraja) C2B paybill capture."""
