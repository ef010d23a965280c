"""Signature checks for ESP webhooks; the only module that imports `cryptography`.

SendGrid signs its Event Webhook with ECDSA (P-256, SHA-256) over the timestamp header
followed by the raw body; the verification key is shown in SendGrid's settings as base64 DER
(SubjectPublicKeyInfo). Mailgun signs `timestamp + token` with HMAC-SHA256 under the signing
key (stdlib hmac, here so every webhook check lives in one place).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from nudge.core.errors import ConfigError


class EcdsaKey:
    def __init__(self, text: str, where: str) -> None:
        text = text.strip()
        try:
            if text.startswith("-----BEGIN"):
                key = load_pem_public_key(text.encode())
            else:
                key = load_der_public_key(base64.b64decode(text, validate=True))
        except (ValueError, binascii.Error, TypeError):
            raise ConfigError(where, "not an ECDSA public key (base64 DER or PEM)") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(where, "not an elliptic-curve public key")
        self._key = key

    def valid(self, signature_b64: str, signed: bytes) -> bool:
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            self._key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def mailgun_valid(signing_key: str, timestamp: str, token: str, signature: str) -> bool:
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(),
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
