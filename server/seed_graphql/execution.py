"""One GraphQL request, from its text to its answer: parsed, validated, bounded
(server.seed_graphql.limits) and executed against the schema. Every problem with the
document is a GraphQL error in the answer (`{"errors": [{"message", ...}]}`), as
graphene answers them; a resolver's unexpected failure is logged and answered as
"internal error", never with its text."""

from __future__ import annotations

import logging
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

from graphql import GraphQLError, execute, parse, validate

from server.seed_graphql.answers import INTERNAL
from server.seed_graphql.caller import Caller
from server.seed_graphql.limits import MAX_TOKENS, limit_errors
from server.seed_graphql.schema import SCHEMA

log = logging.getLogger("gateway.seed_graphql")


async def answer(
    query: str, variables: dict[str, Any] | None, operation_name: str | None, caller: Caller
) -> dict[str, Any]:
    """The answer to a document: `data` and, when something failed, `errors`."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as err:
        return {"errors": [err.formatted]}
    errors = validate(SCHEMA, document) or limit_errors(document)
    if errors:
        return {"errors": [error.formatted for error in errors]}
    result = execute(
        SCHEMA,
        document,
        context_value=caller,
        variable_values=variables,
        operation_name=operation_name,
        middleware=[_no_internals],
    )
    if isawaitable(result):
        result = await result
    return dict(result.formatted)


async def _no_internals(resolve: Callable[..., Any], root: Any, info: Any, **args: Any) -> Any:
    """Every field resolved: an exception that is not a GraphQL error is logged and
    answered without its text (it could name the store or a provider)."""
    try:
        value = resolve(root, info, **args)
        return await value if isawaitable(value) else value
    except GraphQLError:
        raise
    except Exception:
        log.exception("seed_graphql_failed field=%s", info.field_name)
        raise GraphQLError(INTERNAL) from None
