"""The exports over HTTP: `GET /api/v1/exports/<name>.csv`, one route per export, each
documented with its own filters and columns, the CSV sent as it is read."""

from __future__ import annotations

from typing import cast

from server.ops.export_definitions import EXPORTS
from server.ops.exports import WINDOW, Export, Exports
from server.web.csv_answer import send_csv
from server.web.handler import BaseHandler
from server.web.operations import AUTH, STAFF, Operation


class ExportHandler(BaseHandler):
    """One export's rows as a CSV attachment; its subclass names the export."""

    export: Export

    async def get(self) -> None:
        await self.require_role(*STAFF)
        filters = self.load_query(self.export.filters)
        exports: Exports = self.settings["services"].exports
        prepared = exports.prepare(self.export, filters)
        await send_csv(self, prepared.file_name, exports.batches(prepared))


def _operation(export: Export) -> Operation:
    return Operation(
        f"Export: {export.summary} (CSV)",
        "reports",
        {"type": "string"},
        roles=STAFF,
        query=export.filters,
        errors=(400, *AUTH),
        media_type="text/csv",
        description=f"Columns: {', '.join(export.columns)}. Amounts are decimal strings in "
        "the row's currency, times ISO 8601 in UTC; a cell that a spreadsheet would run as "
        "a formula starts with an apostrophe. `from` and `to`: each "
        f"{WINDOW}. Rows in the order of `{export.time_field}`, sent as they are read, "
        f'as the attachment "{export.name}-<from>-<to>.csv".',
    )


def export_handler(export: Export) -> type[ExportHandler]:
    """The handler of one export's route, named after it (PaymentsExportHandler)."""
    name = "".join(part.title() for part in export.name.split("_")) + "ExportHandler"
    attributes = {"export": export, "operations": {"get": _operation(export)}}
    return cast(type[ExportHandler], type(name, (ExportHandler,), attributes))


ROUTES = [
    (rf"/api/v1/exports/{name}.csv", export_handler(export)) for name, export in EXPORTS.items()
]
