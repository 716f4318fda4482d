"""Qmoney OTP debits: the operator starts a debit, the payer reads out the OTP."""
