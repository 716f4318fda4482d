"""Rules for payment service providers; the merchant PIN is encrypted at rest."""

from __future__ import annotations

import uuid
from typing import Any

from server.auth.repository import UserRepository
from server.insurance.service import Page
from server.kernel.clock import Clock
from server.kernel.crypto import PinCipher
from server.kernel.documents import DuplicateDocument
from server.kernel.errors import Conflict, NotFound, ValidationFailed
from server.psps.repository import PspRepository


class PspService:
    def __init__(
        self, psps: PspRepository, users: UserRepository, cipher: PinCipher, clock: Clock
    ) -> None:
        self.psps = psps
        self.users = users
        self.cipher = cipher
        self.clock = clock

    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        await self._check_user(data.get("username"))
        if data["kind"] == "qmoney" and not data.get("pin"):
            raise ValidationFailed(
                "a Qmoney PSP needs the merchant PIN",
                {"fields": {"pin": ["required for kind qmoney"]}},
            )
        now = self.clock.now()
        pin = data.pop("pin", None)
        document = {
            "_id": str(uuid.uuid4()),
            **data,
            "pin_encrypted": self.cipher.encrypt(pin) if pin else None,
            "created_at": now,
            "updated_at": now,
        }
        try:
            return await self.psps.insert(document)
        except DuplicateDocument:
            raise Conflict(
                "a PSP with that name or user already exists", code="psp_exists"
            ) from None

    async def get(self, psp_uuid: str) -> dict[str, Any]:
        psp = await self.psps.find_one({"_id": psp_uuid})
        if psp is None:
            raise NotFound(f"no PSP {psp_uuid}", code="unknown_psp")
        return psp

    async def list(self, filters: dict[str, Any], limit: int, offset: int) -> Page:
        return await self.psps.page(filters, [("name", 1)], limit, offset)

    async def update(self, psp_uuid: str, changes: dict[str, Any]) -> dict[str, Any]:
        await self._check_user(changes.get("username"))
        if "pin" in changes:
            changes["pin_encrypted"] = self.cipher.encrypt(changes.pop("pin"))
        try:
            updated = await self.psps.update(
                {"_id": psp_uuid}, {**changes, "updated_at": self.clock.now()}
            )
        except DuplicateDocument:
            raise Conflict("another PSP is linked to that user", code="psp_exists") from None
        if updated is None:
            raise NotFound(f"no PSP {psp_uuid}", code="unknown_psp")
        return updated

    def merchant_pin(self, psp: dict[str, Any]) -> str:
        """The clear PIN, only for the provider call that needs it."""
        if not psp.get("pin_encrypted"):
            raise ValidationFailed(f"PSP {psp['name']} has no merchant PIN", code="psp_no_pin")
        return self.cipher.decrypt(psp["pin_encrypted"])

    async def _check_user(self, username: str | None) -> None:
        if username is None:
            return
        user = await self.users.find(username)
        if user is None or user["role"] != "psp":
            raise ValidationFailed(
                f"user {username!r} does not exist or lacks the psp role",
                {"fields": {"username": ["must be a user with role psp"]}},
            )
