"""The `reconciliation` settings section: how large a statement file may be."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import SettingError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ReconciliationSettings:
    # The body limit of POST /api/v1/reconciliation/statements, the one route whose
    # bodies may be larger than server.max_body_bytes (a month of a paybill's statement).
    max_statement_bytes: int = 20 * MIB

    def check(self) -> None:
        if self.max_statement_bytes < 1024:
            raise SettingError("max_statement_bytes: must be at least 1024")
