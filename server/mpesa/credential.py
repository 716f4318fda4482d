"""The SecurityCredential of Daraja's initiator APIs (Transaction Status, Account
Balance): the initiator's password encrypted with M-Pesa's public certificate, RSA
PKCS#1 v1.5, base64."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class CredentialError(Exception):
    """The certificate cannot be read, or holds no RSA key."""


def load_certificate(path: str) -> rsa.RSAPublicKey:
    """The public key of a PEM or DER certificate (Safaricom ships both forms)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CredentialError(f"cannot read the certificate {path}: {err.strerror}") from None
    try:
        certificate = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError as err:
        raise CredentialError(f"{path} is not an X.509 certificate ({err})") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CredentialError(f"{path} holds no RSA public key")
    return key


def security_credential(password: str, key: rsa.RSAPublicKey) -> str:
    return base64.b64encode(key.encrypt(password.encode(), padding.PKCS1v15())).decode("ascii")
