"""Who sends one GraphQL request, as its resolvers see it (the `context_value`): the
services, the bearer token and what the provider API's audit keeps of the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.kernel.errors import Forbidden, Unauthorized
from server.kernel.identity import Identity
from server.psp_api.audit import AuditedRequest


@dataclass
class Caller:
    services: Any  # the composition root's services (server.startup.services.Services)
    authorization: str  # the Authorization header, "" without one
    source: str  # the client's address
    path: str
    body: bytes
    request_id: str | None = None
    _identity: Identity | None = field(default=None, init=False, repr=False)

    async def identity(self) -> Identity:
        """The bearer's identity, checked once per request: the access token of the
        REST API, from tokenAuth or POST /api/v1/auth/token."""
        if self._identity is None:
            scheme, _, token = self.authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("missing bearer token", code="missing_token")
            self._identity = await self.services.auth.authenticate(token.strip())
        return self._identity

    async def with_role(self, *roles: str) -> Identity:
        identity = await self.identity()
        if identity.role not in roles:
            raise Forbidden(f"this operation needs the role {' or '.join(roles)}")
        return identity

    def audit(
        self,
        operation: str,
        status: int,
        answer: Any,
        *,
        psp_uuid: str | None,
        user: str | None,
        request: Any,
    ) -> None:
        """Record a provider operation in the provider API's audit, in the background,
        as its REST twin's handler does: `status` and `answer` are the REST twin's
        (so a refusal keeps its error code as the reason), the path names the
        operation."""
        entry = AuditedRequest(
            method="POST",
            path=f"{self.path}#{operation}",
            source=self.source,
            status=status,
            body=self.body,
            answer=answer,
            request_id=self.request_id,
            psp_uuid=psp_uuid,
            user=user,
            request=request,
        )
        services = self.services
        services.background.spawn(services.psp_api.record_audit(entry), "psp-api-audit")
