"""Operations endpoints: dashboard data, health, readiness, metrics; what each answers
(server.web.operations)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields

from server.kernel.errors import ServiceUnavailable
from server.kernel.schemas import CURRENCY, StrictSchema
from server.ops.dashboard import DashboardSchema
from server.ops.health import readiness_problem
from server.web import answer_schemas as answers
from server.web.handler import BaseHandler
from server.web.operations import AUTH, STAFF, Operation

INTERNAL = (
    "On the internal listener (server.internal_port) when that is set; this port then answers 404."
)


class DashboardQuerySchema(StrictSchema):
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)
    currency = fields.String(validate=CURRENCY)


class HealthSchema(Schema):
    status = answers.one_of(["ok"])


class ReadinessSchema(Schema):
    status = answers.one_of(["ready"])


class DashboardHandler(BaseHandler):
    operations = {
        "get": Operation(
            "The operations summary of a window (default: the last 24 hours)",
            "operations",
            DashboardSchema,
            roles=STAFF,
            query=DashboardQuerySchema,
            errors=(400, *AUTH),
        )
    }

    async def get(self) -> None:
        await self.require_role("operator", "admin")
        query = self.load_query(DashboardQuerySchema)
        self.write_json(
            await self.settings["services"].dashboard.summary(
                query.get("date_from"), query.get("date_to"), query.get("currency")
            )
        )


class HealthHandler(BaseHandler):
    """The process is alive and serving."""

    operations = {"get": Operation("Liveness", "operations", HealthSchema)}

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """The store answers in time and the indexes exist."""

    operations = {
        "get": Operation(
            "Readiness: the store answers within 2 s and every index exists",
            "operations",
            ReadinessSchema,
            errors=(404, 503),
            description=INTERNAL,
        )
    }

    async def get(self) -> None:
        problem = await readiness_problem(
            self.settings["services"].store, self.settings["services"].indexes
        )
        if problem:
            raise ServiceUnavailable(f"not ready: {problem}", code="not_ready")
        self.write_json({"status": "ready"})


class MetricsHandler(BaseHandler):
    operations = {
        "get": Operation(
            "Prometheus metrics",
            "operations",
            {"type": "string"},
            media_type="text/plain; version=0.0.4",
            errors=(404,),
            description=INTERNAL,
        )
    }

    async def get(self) -> None:
        services = self.settings["services"]
        body = await services.metrics.render(services.store)
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(body)
