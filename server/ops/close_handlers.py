"""The period close over HTTP: `GET /api/v1/reports/close?period=` as JSON, CSV or a
printable page."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from server.kernel.batches import in_batches
from server.kernel.schemas import StrictSchema
from server.ops import close_formats
from server.ops.close_report import (
    DEFINITIONS,
    FIGURES,
    CloseReport,
    CloseReportSchema,
    close_period,
)
from server.ops.page_headers import protective_headers
from server.web.csv_answer import send_csv
from server.web.handler import BaseHandler
from server.web.operations import AUTH, STAFF, Operation

JSON, CSV, HTML = "json", "csv", "html"
CSV_FLUSH_EVERY = 500


class PeriodField(fields.String):
    """`YYYY-MM` or `YYYY-MM-DD`, loaded as the ClosePeriod it names."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return close_period(text)
        except ValueError as err:
            raise ValidationError(str(err)) from None


class CloseQuerySchema(StrictSchema):
    period = PeriodField(
        required=True,
        metadata={
            "description": "a month (YYYY-MM) or a day (YYYY-MM-DD) of Nairobi business days",
            "example": "2026-12",
        },
    )
    format = fields.String(
        load_default=JSON,
        validate=validate.OneOf([JSON, CSV, HTML]),
        metadata={"description": "json (default), csv (an attachment) or html (a printable page)"},
    )


class CloseReportHandler(BaseHandler):
    operations = {
        "get": Operation(
            "The period close: received, applied, unmatched at the end, recovered, in doubt",
            "reports",
            CloseReportSchema,
            roles=STAFF,
            query=CloseQuerySchema,
            errors=(400, *AUTH),
            other_media={"text/csv": {"type": "string"}, "text/html": {"type": "string"}},
            description="Per channel, provider and currency, and per channel and currency, "
            "over a month or a day of Nairobi business days (the days of the reconciliation "
            "view): "
            + "; ".join(f"`{name}`: {DEFINITIONS[name]}" for name in FIGURES)
            + ". `format=csv` answers the rows as a CSV attachment (close-<period>.csv); "
            "`format=html` a page to print. A period that has not ended answers the figures "
            "so far (`complete` false).",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF)
        query = self.load_query(CloseQuerySchema)
        close: CloseReport = self.settings["services"].close
        report = await close.report(query["period"])
        if query["format"] == CSV:
            lines = in_batches(close_formats.csv_lines(report), CSV_FLUSH_EVERY)
            await send_csv(self, close_formats.file_name(report), lines)
        elif query["format"] == HTML:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.set_header("Content-Security-Policy", close_formats.CONTENT_SECURITY_POLICY)
            protective_headers(self)
            self.finish(close_formats.page(report))
        else:
            self.write_json(report)


ROUTES = [(r"/api/v1/reports/close", CloseReportHandler)]
