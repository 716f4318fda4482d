"""The payer's SMS receipts: an outbox recorded with each payment, sent by a job through
an SMS provider (Africa's Talking) or the local notifier, updated by delivery reports."""
