"""openIMIS's own GraphQL API (PROTOCOLS.md section 4): the login, the CSRF handshake,
insurees, policies, premiums and the mutation log.

Every answer is HTTP 200: a query's failure is in `errors`, a mutation's only in the
mutation log. The documents are server.insurance.openimis_documents'.

The session is one cached token: `tokenAuth`'s bearer, renewed a minute before the
expiry its payload states, with the CSRF token and the session cookies `getCsrfToken`
gave for it (an openIMIS in its dev mode checks neither; sending them does no harm).
A call the server refuses for its session (expired, or without the CSRF token) gets a
new session and one retry: the server refused it before acting."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import aiohttp

from server.insurance import openimis_documents as documents
from server.insurance.settings import OpenimisSettings
from server.integrations.provider_transport import ProviderTransport
from server.integrations.transport import (
    Answer,
    CachedToken,
    CallLog,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.clock import Clock

log = logging.getLogger("gateway.openimis")

PROVIDER = "openimis"
PATH = "/api/graphql"

# Mutation log statuses.
RECEIVED, ERROR, SUCCESS = 0, 1, 2

# Messages with which openIMIS refuses a call for its session, not for what it asked:
# an expired or unreadable token, the session's CSRF token missing or replaced.
_SESSION_REFUSALS = (
    "signature has expired",
    "error decoding signature",
    "'csrftoken'",
    "'http_x_csrftoken'",
    "csrf token missing or incorrect",
)


@dataclass(frozen=True)
class MutationOutcome:
    status: int | None  # None: no log (yet) for that mutation
    message: str  # openIMIS's error messages and details, joined; "" on success


class OpenimisClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: OpenimisSettings,
        clock: Clock,
        calls: CallLog | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._transport = ProviderTransport(
            session,
            PROVIDER,
            settings.url,
            settings.timeout_seconds,
            clock,
            login=self._login,
            login_endpoint="tokenAuth",
            token_rejected=lambda answer: False,  # decided here: `_session_refused`
            calls=calls,
        )
        self.tokens = self._transport.tokens

    # --- reads ------------------------------------------------------------

    async def insuree(self, chf_id: str) -> dict[str, Any] | None:
        nodes = _nodes(await self._call("insurees", documents.insuree(chf_id)), "insurees")
        return nodes[0] if nodes else None

    async def policies_of(self, chf_id: str) -> list[dict[str, Any]]:
        """Every policy of the insuree, whatever its status."""
        return _nodes(await self._call("policies", documents.policies_of(chf_id)), "policies")

    async def policy(self, policy_uuid: str) -> dict[str, Any] | None:
        """The policy, with the insurees it covers."""
        nodes = _nodes(await self._call("policies", documents.policy(policy_uuid)), "policies")
        return nodes[0] if nodes else None

    async def receipt_free(self, receipt: str, policy_uuid: str) -> bool:
        """No live premium of the policy's product has this receipt."""
        document = documents.receipt_free(receipt, policy_uuid)
        data = await self._call("validatePremiumCode", document)
        return bool(data.get("validatePremiumCode")) if isinstance(data, dict) else False

    async def premiums_of(self, policy_uuid: str) -> list[dict[str, Any]]:
        return await self.premiums_of_policies([policy_uuid])

    async def premiums_by_policy(self, policy_uuids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The premiums of these policies, by the uuid of the policy each names."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for premium in await self.premiums_of_policies(policy_uuids):
            policy = premium.get("policy")
            uuid = policy.get("uuid") if isinstance(policy, dict) else None
            grouped.setdefault(str(uuid), []).append(premium)
        return grouped

    async def premiums_of_policies(self, policy_uuids: list[str]) -> list[dict[str, Any]]:
        """The premiums of these policies (each node names its policy's uuid), every
        page of them (openIMIS answers a connection 100 nodes at a time)."""
        found: list[dict[str, Any]] = []
        after = ""
        while True:
            document = documents.premiums_of(policy_uuids, after)
            data = await self._call("premiumsByPolicies", document)
            found.extend(_nodes(data, "premiumsByPolicies"))
            page = (data.get("premiumsByPolicies") or {}).get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return found
            after = str(page["endCursor"])

    # --- the premium's mutation -------------------------------------------

    async def create_premium(
        self,
        mutation_id: str,
        policy_uuid: str,
        amount: str,
        receipt: str,
        pay_date: date,
    ) -> None:
        """Send the mutation. Its outcome is only in the mutation log
        (`mutation_outcome`); an answer lost on the way raises ProviderOutcomeUnknown:
        the premium may have been created."""
        document = documents.create_premium(
            mutation_id, policy_uuid, amount, receipt, pay_date, self._settings.pay_type
        )
        await self._call("createPremium", document, acts=True)

    async def mutation_outcome(self, mutation_id: str) -> MutationOutcome:
        document = documents.mutation_log(mutation_id)
        nodes = _nodes(await self._call("mutationLogs", document), "mutationLogs")
        if not nodes:
            return MutationOutcome(None, "")
        node = nodes[0]
        status = node.get("status")
        return MutationOutcome(
            status if isinstance(status, int) else None, _error_text(node.get("error"))
        )

    # --- wire -------------------------------------------------------------

    async def _call(self, operation: str, document: str, *, acts: bool = False) -> Any:
        """One GraphQL call in its call-log entry; returns `data`. A query without a
        usable answer is unavailable (nothing was changed); a mutation's is unknown."""
        async with self._transport.call(operation):
            for attempt in (1, 2):
                token = await self.tokens.get()
                try:
                    answer = await self._transport.send(
                        "POST",
                        PATH,
                        data=json.dumps({"query": document}),
                        headers=_session_headers(token),
                    )
                except ProviderOutcomeUnknown as err:
                    if acts:
                        raise
                    raise ProviderUnavailable(PROVIDER, err.message) from None
                if attempt == 1 and _session_refused(answer):
                    log.info("openimis_session_refused operation=%s", operation)
                    self.tokens.invalidate(token)
                    continue
                return _data(answer, operation, acts=acts)
        raise AssertionError("unreachable")

    async def _login(self) -> CachedToken:
        """The credentials go as variables (server.insurance.openimis_documents)."""
        body = {
            "query": documents.LOGIN,
            "variables": {
                "username": self._settings.username,
                "password": self._settings.password,
            },
        }
        answer = await self._transport.send("POST", PATH, data=json.dumps(body))
        data = _data(answer, "tokenAuth")
        granted = data.get("tokenAuth") if isinstance(data, dict) else None
        if not isinstance(granted, dict) or not granted.get("token"):
            raise ProviderUnavailable(PROVIDER, "tokenAuth answered no token")
        bearer = str(granted["token"])
        csrf, cookie = await self._csrf(bearer)
        expires_at = _expiry(granted.get("payload"))
        log.info("openimis_token_issued csrf=%s", "yes" if csrf else "no")
        value = json.dumps({"bearer": bearer, "csrf": csrf, "cookie": cookie})
        return CachedToken(value, expires_at)

    async def _csrf(self, bearer: str) -> tuple[str, str]:
        """The CSRF token and the session's cookies (`sessionid`, or whatever name the
        server gives its session) for this bearer; ("", "") from a server that has no
        CSRF handshake."""
        answer = await self._transport.send(
            "POST",
            PATH,
            data=json.dumps({"query": documents.CSRF}),
            headers={"Authorization": f"Bearer {bearer}"},
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        granted = data.get("getCsrfToken") if isinstance(data, dict) else None
        if not isinstance(granted, dict) or not granted.get("csrfToken"):
            return "", ""
        cookies = "; ".join(f"{name}={value}" for name, value in answer.cookies.items())
        return str(granted["csrfToken"]), cookies


def _session_headers(token: str) -> dict[str, str]:
    session = json.loads(token)
    headers = {"Authorization": f"Bearer {session['bearer']}"}
    if session["csrf"]:
        headers["X-CSRFToken"] = session["csrf"]
    if session["cookie"]:
        headers["Cookie"] = session["cookie"]
    return headers


def _messages(body: Any) -> list[str]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(error.get("message", "")) for error in errors if isinstance(error, dict)]


def _session_refused(answer: Answer) -> bool:
    return any(
        refusal in message.lower()
        for message in _messages(answer.body)
        for refusal in _SESSION_REFUSALS
    )


def _data(answer: Answer, operation: str, *, acts: bool = False) -> Any:
    """`data` of a usable answer. Errors are a refusal (openIMIS answered, and did not
    act); no usable answer is unavailable, or unknown for a call that acts."""
    body = answer.body
    if answer.status == 400 and _messages(body):
        # A document openIMIS's schema does not take: refused before anything was done.
        raise ProviderRejected(
            PROVIDER, "graphql_invalid", f"{operation}: " + "; ".join(_messages(body))
        )
    if answer.status != 200 or not isinstance(body, dict):
        failure = ProviderOutcomeUnknown if acts else ProviderUnavailable
        raise failure(
            PROVIDER,
            f"{operation}: unusable answer (HTTP {answer.status})",
            http_status=answer.status,
        )
    messages = _messages(body)
    if messages:
        raise ProviderRejected(PROVIDER, "graphql_error", f"{operation}: " + "; ".join(messages))
    return body.get("data") or {}


def _nodes(data: Any, field: str) -> list[dict[str, Any]]:
    connection = data.get(field) if isinstance(data, dict) else None
    edges = connection.get("edges") if isinstance(connection, dict) else None
    if not isinstance(edges, list):
        raise ProviderUnavailable(PROVIDER, f"{field}: answer without edges")
    return [
        edge["node"]
        for edge in edges
        if isinstance(edge, dict) and isinstance(edge.get("node"), dict)
    ]


def _error_text(error: Any) -> str:
    """The mutation log's `error`: a JSON string of [{"message", "detail"}]."""
    if not error:
        return ""
    try:
        items = json.loads(error) if isinstance(error, str) else error
    except json.JSONDecodeError:
        return str(error)
    if not isinstance(items, list):
        return str(error)
    parts = []
    for item in items:
        if isinstance(item, dict):
            detail = item.get("detail")
            parts.append(f"{item.get('message', '')}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts) or str(error)


def _expiry(payload: Any) -> datetime | None:
    """The token's expiry from tokenAuth's payload (`exp`, seconds since the epoch)."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError:
            return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if not isinstance(exp, int | float):
        return None
    return datetime.fromtimestamp(exp, tz=UTC)
