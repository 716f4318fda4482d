"""tokenAuth: the gateway's own login (the auth service the REST login uses: the same
throttle and attempt counting); `token` is the access token, `refreshToken` the
refresh token, both as `POST /api/v1/auth/token` answers them."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLResolveInfo

from server.auth.schemas import TokenRequestSchema
from server.kernel.errors import ApiError, Unauthorized
from server.seed_graphql import answers
from server.seed_graphql.inputs import load


async def token_auth(
    _root: Any, info: GraphQLResolveInfo, username: str, password: str
) -> dict[str, Any]:
    caller = info.context
    try:
        request = load(TokenRequestSchema, {"username": username, "password": password}, {})
        pair = await caller.services.auth.login(
            request["username"], request["password"], caller.source
        )
    except Unauthorized as err:
        raise answers.graphql_error(err, answers.INCORRECT_CREDENTIALS) from None
    except ApiError as err:
        raise answers.graphql_error(err) from None
    return {"token": pair.access_token, "refreshToken": pair.refresh_token}
