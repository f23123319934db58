"""Small builders shared by the integration and e2e tests."""

from __future__ import annotations

import json
import time

from sqlalchemy.orm import Session

from gateway import signatures
from gateway.clients import add_client


def register_client(engine, client_id="acme", callback_url="http://client.test/callbacks") -> dict:
    with Session(engine) as session, session.begin():
        return add_client(session, client_id, callback_url)


def upsert_task(task_id="T-1001", customer_id="C-42", name="Ada Lovelace", email="ada@example.com") -> dict:
    return {
        "task_id": task_id,
        "type": "customer.upsert",
        "customer_id": customer_id,
        "payload": {"name": name, "email": email},
    }


def signed(secret: str, body, *, webhook_id="msg_1", timestamp=None) -> tuple[bytes, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signatures.signed_headers(secret, webhook_id, int(timestamp or time.time()), raw)
    headers["Content-Type"] = "application/json"
    return raw, headers


def wait_for(condition, timeout=20.0, interval=0.02, message="condition"):
    """Poll condition until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
