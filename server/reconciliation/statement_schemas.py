"""Statements on the API: the query of an import and of the list, and what they answer
(each answer's schema beside the function that renders it)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from server.kernel.identifiers import SHORTCODE
from server.kernel.schemas import IdentifierField, PageQuerySchema, StrictSchema
from server.reconciliation.statement_import import SUMMARY_KEYS, ImportResult
from server.reconciliation.statement_store import StatementDocument
from server.reconciliation.statements import KINDS, MPESA, PSP
from server.web import answer_schemas as answers

KIND = validate.OneOf(KINDS)


class StatementImportQuerySchema(StrictSchema):
    kind = fields.String(
        required=True,
        validate=KIND,
        metadata={"description": "mpesa: an org-portal statement; psp: a provider's file"},
    )
    psp = fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "kind psp: the uuid of the provider the file comes from"},
    )
    shortcode = IdentifierField(
        SHORTCODE,
        metadata={
            "description": "kind mpesa: the paybill the statement is of (default daraja.shortcode)"
        },
    )

    @validates_schema
    def provider_of_kind(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("kind") == PSP and "psp" not in data:
            raise ValidationError("a provider's file needs psp", "psp")
        if data.get("kind") == MPESA and "psp" in data:
            raise ValidationError("only a provider's file (kind psp) names a psp", "psp")
        if data.get("kind") == PSP and "shortcode" in data:
            raise ValidationError("only an M-Pesa statement names a shortcode", "shortcode")


class StatementQuerySchema(PageQuerySchema):
    kind = fields.String(validate=KIND)
    provider = fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "the shortcode, or the provider's uuid"},
    )


class StatementSchema(Schema):
    id = answers.text()
    kind = answers.one_of(KINDS)
    provider = answers.text(metadata={"description": "the shortcode, or the provider's uuid"})
    file_name = answers.text(nullable=True)
    rows = answers.count()
    period_from = answers.stamp(metadata={"description": "the first row's time"})
    period_to = answers.stamp(metadata={"description": "the last row's time"})
    imported_at = answers.stamp()
    imported_by = answers.text()


class StatementSummarySchema(Schema):
    matched = answers.count()
    recovered = answers.count()
    differing = answers.count()
    missing_here = answers.count()
    missing_at_provider = answers.count()
    other = answers.count()
    seen_before = answers.count()


class StatementImportSchema(Schema):
    statement = answers.nested(StatementSchema)
    summary = answers.nested(StatementSummarySchema)
    already_imported = fields.Boolean(required=True)


class StatementListItemSchema(StatementSchema):
    summary = answers.nested(StatementSummarySchema)


StatementListItemPageSchema = answers.page_of(StatementListItemSchema)


def render_statement(document: StatementDocument) -> dict[str, Any]:
    imported_at = document["imported_at"]
    assert imported_at is not None  # only completed imports are shown
    return {
        "id": document["_id"],
        "kind": document["kind"],
        "provider": document["provider"],
        "file_name": document["file_name"],
        "rows": document["rows"],
        "period_from": document["period_from"].astimezone(UTC).isoformat(),
        "period_to": document["period_to"].astimezone(UTC).isoformat(),
        "imported_at": imported_at.astimezone(UTC).isoformat(),
        "imported_by": document["imported_by"],
    }


def render_summary(summary: dict[str, int] | None) -> dict[str, int]:
    return {key: (summary or {}).get(key, 0) for key in SUMMARY_KEYS}


def render_import(result: ImportResult) -> dict[str, Any]:
    return {
        "statement": render_statement(result.statement),
        "summary": render_summary(result.summary),
        "already_imported": result.already_imported,
    }


def render_listed(document: StatementDocument) -> dict[str, Any]:
    return {**render_statement(document), "summary": render_summary(document["summary"])}
