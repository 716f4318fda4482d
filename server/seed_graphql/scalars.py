"""The seed's own scalars: `Decimal` (an amount, as a number or a string) and
`JSONString` (JSON carried in a string); and GraphQL's `Float` as the seed answers an
amount with it.

An amount never passes through a float: a number literal is read from its text, and a
number in the variables arrives as a Decimal (the handler reads the body's JSON with
decimals kept)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from graphql import (
    FloatValueNode,
    GraphQLError,
    GraphQLFloat,
    GraphQLScalarType,
    IntValueNode,
    StringValueNode,
    ValueNode,
)

from server.kernel.errors import ValidationFailed
from server.web.json_body import parse_json

# An exponent past this is no amount (a payment has at most 13 integer digits); it is
# refused before the number is written out in full.
MAX_EXPONENT = 32


def amount_text(value: Any) -> str:
    """The amount as the decimal text the REST API takes: a string as it is (the
    gateway's amount rules judge it), a number in plain decimal notation."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise GraphQLError(f"an amount is a decimal number or string, not {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite() or abs(number.adjusted()) > MAX_EXPONENT:
        raise GraphQLError("the amount is out of range")
    return format(number, "f")


def _amount_literal(node: ValueNode, _variables: Any = None) -> str:
    if isinstance(node, StringValueNode):
        return node.value
    if not isinstance(node, IntValueNode | FloatValueNode):
        raise GraphQLError("Decimal: an amount is a decimal number or string", node)
    try:
        number = Decimal(node.value)
    except InvalidOperation:  # never: the lexer lets only numbers through
        raise GraphQLError(f"Decimal: {node.value} is not a number", node) from None
    try:
        return amount_text(number)
    except GraphQLError as err:
        raise GraphQLError(f"Decimal: {err.message}", node) from None


DECIMAL = GraphQLScalarType(
    "Decimal",
    description="An amount: a number (read from its text, never rounded) or a decimal "
    'string such as "500.00".',
    serialize=amount_text,
    parse_value=amount_text,
    parse_literal=_amount_literal,
)


def _exact_float(value: Any) -> Any:
    """An amount (a Decimal) stays that decimal: the answer is written with its exact
    digits (server.seed_graphql.handlers), never through a binary float."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise GraphQLError(f"Float cannot represent a non-finite value: {value}")
        return value
    return GraphQLFloat.serialize(value)


# The seed's schema says Float where it answers a policy's amount: the same name and
# inputs as GraphQL's own, so clients see the seed's schema unchanged.
EXACT_FLOAT = GraphQLScalarType(
    "Float",
    description=GraphQLFloat.description,
    serialize=_exact_float,
    parse_value=GraphQLFloat.parse_value,
    parse_literal=GraphQLFloat.parse_literal,
)


def json_value(text: Any) -> Any:
    """The JSON a string carries, within the API's bounds for a JSON body."""
    if not isinstance(text, str):
        raise GraphQLError("JSONString: JSON text in a string is expected")
    try:
        return parse_json(text.encode())
    except ValidationFailed as err:
        raise GraphQLError(
            "JSONString: " + err.message.replace("request body", "the text")
        ) from None


def _json_literal(node: ValueNode, _variables: Any = None) -> Any:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("JSONString: JSON text in a string is expected", node)
    try:
        return json_value(node.value)
    except GraphQLError as err:
        raise GraphQLError(err.message, node) from None


JSON_STRING = GraphQLScalarType(
    "JSONString",
    description='JSON text in a string, such as "{\\"k\\": \\"v\\"}".',
    parse_value=json_value,
    parse_literal=_json_literal,
)
