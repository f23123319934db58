"""Standard Webhooks signatures: v1,<base64 HMAC-SHA256 of "id.timestamp.body">."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
MAX_WEBHOOK_ID = 255


class SignatureError(Exception):
    """The request is not signed by the client (message is safe to show to the caller)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def is_secret(value: str) -> bool:
    """Whether value is a signing secret: base64 (whsec_ in front, as taskgate makes them)."""
    try:
        return bool(base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True))
    except ValueError:
        return False


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The v1 signature of body, as sent in webhook-signature (timestamp as in its header)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets_: str | list[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """webhook-* headers signed with each secret (several during a secret rotation)."""
    keys = [secrets_] if isinstance(secrets_, str) else secrets_
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(secret, webhook_id, timestamp, body) for secret in keys),
    }


def verify(secrets_: list[str], headers, body: bytes, *, now: float, tolerance: int = 300) -> str:
    """Check the webhook-* headers against body; returns the webhook-id or raises SignatureError."""
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(webhook_id) > MAX_WEBHOOK_ID:
        raise SignatureError(f"webhook-id is longer than {MAX_WEBHOOK_ID} characters")
    # Digits only: int() would also take a sign, blanks, underscores and other scripts' digits.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureError("webhook-timestamp is not unix seconds")
    sent_at = int(timestamp)
    if abs(int(now) - sent_at) > tolerance:  # in whole seconds, as the header counts them
        raise SignatureError("webhook-timestamp is outside the tolerance window")
    offered = [part.encode() for part in signatures.split(" ") if part.startswith("v1,")]
    for secret in secrets_:
        expected = sign(secret, webhook_id, timestamp, body).encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return webhook_id
    raise SignatureError("no valid signature")
