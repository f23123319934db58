"""The client's side of the webhook: sign a task the Standard Webhooks way and POST it."""

from __future__ import annotations

import time

import requests
import uuid6

from gateway import signatures


def post_task(
    base_url: str, client_id: str, secret: str, raw: bytes, *, timeout: float = 30
) -> requests.Response:
    """POST raw (a task as JSON) to client_id's webhook, signed with secret under a fresh webhook-id."""
    headers = signatures.signed_headers(secret, f"msg_{uuid6.uuid7().hex}", int(time.time()), raw)
    headers["Content-Type"] = "application/json"
    return requests.post(
        f"{base_url.rstrip('/')}/v1/clients/{client_id}/tasks", data=raw, headers=headers, timeout=timeout
    )
