"""Generic admin endpoints: list and create on a collection, read and update one item.

Each resource names its service (an attribute of Services with create/list/get/update),
its schemas and its renderer; reads are open to operators, writes to admins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema

from server.kernel.schemas import page_body
from server.web.handler import BaseHandler

READERS = ("admin", "operator")
WRITERS = ("admin",)


class AdminResource(BaseHandler):
    service_name = ""
    query_schema: type[Schema]
    create_schema: type[Schema]
    update_schema: type[Schema]
    render: Callable[[dict[str, Any]], dict[str, Any]]

    @property
    def service(self) -> Any:
        return getattr(self.settings["services"], self.service_name)


class CollectionHandler(AdminResource):
    async def get(self) -> None:
        await self.require_role(*READERS)
        query = self.load_query(self.query_schema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.service.list(query, limit, offset)
        self.write_json(page_body([self.render(item) for item in items], total, limit,
                                  offset))

    async def post(self) -> None:
        await self.require_role(*WRITERS)
        created = await self.service.create(self.load_json(self.create_schema))
        self.write_json(self.render(created), status=201)


class ItemHandler(AdminResource):
    async def get(self, key: str) -> None:
        await self.require_role(*READERS)
        self.write_json(self.render(await self.service.get(key)))

    async def patch(self, key: str) -> None:
        await self.require_role(*WRITERS)
        changes = self.load_json(self.update_schema)
        self.write_json(self.render(await self.service.update(key, changes)))


def admin_routes(path: str, service_name: str, render: Callable, query: type[Schema],
                 create: type[Schema], update: type[Schema]) -> list[tuple[str, type]]:
    """The two routes of one admin resource: `path` and `path/<key>`."""
    attributes = {"service_name": service_name, "render": staticmethod(render),
                  "query_schema": query, "create_schema": create, "update_schema": update}
    name = service_name.title()
    return [(path, type(f"{name}CollectionHandler", (CollectionHandler,), attributes)),
            (path + r"/([^/]+)", type(f"{name}ItemHandler", (ItemHandler,), attributes))]
