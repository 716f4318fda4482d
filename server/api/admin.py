"""Generic admin endpoints: list and create on a collection, read and update one item.

Each resource names its service (an attribute of Services with create/list/get/update),
its schemas, its renderer and the schema of what that renders; reads are open to
operators, writes to admins. ROUTES holds the gateway's four resources."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

from server.insurance.schemas import (
    InsureeCreateSchema,
    InsureeQuerySchema,
    InsureeSchema,
    InsureeUpdateSchema,
    PolicyCreateSchema,
    PolicyQuerySchema,
    PolicySchema,
    PolicyUpdateSchema,
    ProductCreateSchema,
    ProductSchema,
    ProductUpdateSchema,
    render_insuree,
    render_policy,
    render_product,
)
from server.kernel.schemas import PageQuerySchema, page_body
from server.psps.schemas import (
    PspCreateSchema,
    PspQuerySchema,
    PspSchema,
    PspUpdateSchema,
    render_psp,
)
from server.web.answer_schemas import page_of
from server.web.handler import BaseHandler
from server.web.operations import ADMIN, AUTH, BODY, STAFF, Operation

READERS = ("admin", "operator")
WRITERS = ("admin",)


class AdminResource(BaseHandler):
    service_name = ""
    query_schema: type[Schema]
    create_schema: type[Schema]
    update_schema: type[Schema]
    # Not `render`: that is RequestHandler's template rendering.
    render_item: Callable[[dict[str, Any]], dict[str, Any]]

    @property
    def service(self) -> Any:
        return getattr(self.settings["services"], self.service_name)


class CollectionHandler(AdminResource):
    async def get(self) -> None:
        await self.require_role(*READERS)
        query = self.load_query(self.query_schema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.service.list(query, limit, offset)
        self.write_json(page_body([self.render_item(item) for item in items], total, limit, offset))

    async def post(self) -> None:
        await self.require_role(*WRITERS)
        created = await self.service.create(self.load_json(self.create_schema))
        self.write_json(self.render_item(created), status=201)


class ItemHandler(AdminResource):
    async def get(self, key: str) -> None:
        await self.require_role(*READERS)
        self.write_json(self.render_item(await self.service.get(key)))

    async def patch(self, key: str) -> None:
        await self.require_role(*WRITERS)
        changes = self.load_json(self.update_schema)
        self.write_json(self.render_item(await self.service.update(key, changes)))


@dataclass(frozen=True)
class Resource:
    """One admin resource. `name` is its service, its plural and its tag in the OpenAPI
    document; `key` names and describes the item path's parameter."""

    path: str
    name: str
    singular: str
    key: dict[str, str]
    render: Callable[[dict[str, Any]], dict[str, Any]]
    answer: type[Schema]  # what `render` answers
    query: type[Schema]
    create: type[Schema]
    update: type[Schema]
    create_example: dict[str, Any]
    update_example: dict[str, Any]
    create_errors: tuple[int, ...] = ()
    update_errors: tuple[int, ...] = ()


def admin_routes(resource: Resource) -> list[tuple[str, type]]:
    """The two routes of one admin resource, `path` and `path/<key>`, with what each
    method answers."""
    item = resource.answer
    attributes = {
        "service_name": resource.name,
        "render_item": staticmethod(resource.render),
        "query_schema": resource.query,
        "create_schema": resource.create,
        "update_schema": resource.update,
    }
    collection_operations = {
        "get": Operation(
            f"List {resource.name}",
            resource.name,
            page_of(item),
            roles=STAFF,
            query=resource.query,
            errors=(400, *AUTH),
        ),
        "post": Operation(
            f"Create a {resource.singular}",
            resource.name,
            item,
            roles=ADMIN,
            body=resource.create,
            example=resource.create_example,
            success={201: "Created"},
            errors=(*BODY, *AUTH, *resource.create_errors),
        ),
    }
    item_operations = {
        "get": Operation(
            f"One {resource.singular}", resource.name, item, roles=STAFF, errors=(*AUTH, 404)
        ),
        "patch": Operation(
            f"Change a {resource.singular}",
            resource.name,
            item,
            roles=ADMIN,
            body=resource.update,
            example=resource.update_example,
            errors=(*BODY, *AUTH, 404, *resource.update_errors),
            description="Give at least one field.",
        ),
    }
    name = resource.name.title()
    return [
        (
            resource.path,
            type(
                f"{name}CollectionHandler",
                (CollectionHandler,),
                {**attributes, "operations": collection_operations},
            ),
        ),
        (
            resource.path + r"/([^/]+)",
            type(
                f"{name}ItemHandler",
                (ItemHandler,),
                {**attributes, "operations": item_operations, "path_parameters": resource.key},
            ),
        ),
    ]


ROUTES = [
    *admin_routes(
        Resource(
            r"/api/v1/insurees",
            "insurees",
            "insuree",
            {"chf_id": "Insuree number"},
            render_insuree,
            InsureeSchema,
            InsureeQuerySchema,
            InsureeCreateSchema,
            InsureeUpdateSchema,
            create_example={
                "chf_id": "060606060",
                "first_name": "Fatou",
                "last_name": "Ceesay",
                "phone": "+2207712345",
                "wallet": "",
            },
            update_example={"phone": "+2207754321", "wallet": "5811724c"},
            create_errors=(409,),
        )
    ),
    *admin_routes(
        Resource(
            r"/api/v1/products",
            "products",
            "product",
            {"code": "Product code"},
            render_product,
            ProductSchema,
            PageQuerySchema,
            ProductCreateSchema,
            ProductUpdateSchema,
            create_example={
                "code": "BASIC-GMD",
                "name": "Basic cover",
                "price": "500.00",
                "currency": "GMD",
            },
            update_example={"price": "550.00"},
            create_errors=(409,),
        )
    ),
    *admin_routes(
        Resource(
            r"/api/v1/policies",
            "policies",
            "policy",
            {"uuid": "Uuid of the item"},
            render_policy,
            PolicySchema,
            PolicyQuerySchema,
            PolicyCreateSchema,
            PolicyUpdateSchema,
            create_example={
                "chf_id": "060606060",
                "product_code": "BASIC-GMD",
                "start_date": "2026-11-23",
                "expiry_date": "2027-11-22",
            },
            update_example={"status": 4},
            create_errors=(404, 409),
            update_errors=(409,),
        )
    ),
    *admin_routes(
        Resource(
            r"/api/v1/psps",
            "psps",
            "psp",
            {"uuid": "Uuid of the item"},
            render_psp,
            PspSchema,
            PspQuerySchema,
            PspCreateSchema,
            PspUpdateSchema,
            create_example={
                "name": "Afrimoney",
                "kind": "external",
                "account": "AFR-0001",
                "currency": "GMD",
                "is_external_api": True,
                "username": "afrimoney",
            },
            update_example={"active": False},
            create_errors=(409,),
            update_errors=(409,),
        )
    ),
]
