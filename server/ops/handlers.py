"""Operations endpoints: dashboard data, health, readiness, metrics."""

from __future__ import annotations

from datetime import UTC

from marshmallow import fields

from server.kernel.errors import ServiceUnavailable
from server.kernel.schemas import CURRENCY, StrictSchema
from server.ops.health import readiness_problem
from server.web.handler import BaseHandler


class DashboardQuerySchema(StrictSchema):
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)
    currency = fields.String(validate=CURRENCY)


class DashboardHandler(BaseHandler):
    async def get(self) -> None:
        await self.require_role("operator", "admin")
        query = self.load_query(DashboardQuerySchema)
        self.write_json(await self.settings["services"].dashboard.summary(
            query.get("date_from"), query.get("date_to"), query.get("currency")))


class HealthHandler(BaseHandler):
    """The process is alive and serving."""

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """The store answers in time and the indexes exist."""

    async def get(self) -> None:
        problem = await readiness_problem(self.settings["services"].store,
                                          self.settings["services"].indexes)
        if problem:
            raise ServiceUnavailable(f"not ready: {problem}", code="not_ready")
        self.write_json({"status": "ready"})


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        services = self.settings["services"]
        body = await services.metrics.render(services.store)
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(body)


