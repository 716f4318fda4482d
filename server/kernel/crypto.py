"""Merchant PINs encrypted at rest (Fernet); the key comes from the environment."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class PinCipher:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt(self, pin: str) -> str:
        return self._fernet.encrypt(pin.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("the stored PIN cannot be decrypted with security.pin_key") from None
