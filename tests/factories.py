"""Small builders shared by the integration and e2e tests."""

from __future__ import annotations

import json
import time

from sqlalchemy.orm import Session

from gateway import signatures
from gateway.clients import add_client


def register_client(engine, client_id="acme", callback_url="http://client.test/callbacks") -> dict:
    with Session(engine) as session, session.begin():
        return add_client(session, client_id, callback_url, allow_private=True)  # fake and local endpoints


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


def survey_task(task_id="S-1", customer_id="C-42", survey_id="SRV-7", due_date="2026-12-31") -> dict:
    return {
        "task_id": task_id,
        "type": "survey.assign",
        "customer_id": customer_id,
        "payload": {"survey_id": survey_id, "due_date": due_date},
    }


def schedule_task(task_id, starts_at, *, customer_id="C-42", resource_id="R-1", minutes=60) -> dict:
    return {
        "task_id": task_id,
        "type": "appointment.schedule",
        "customer_id": customer_id,
        "payload": {"resource_id": resource_id, "starts_at": starts_at, "duration_minutes": minutes},
    }


def cancel_task(task_id, appointment_task_id, *, customer_id="C-42") -> dict:
    return {
        "task_id": task_id,
        "type": "appointment.cancel",
        "customer_id": customer_id,
        "payload": {"appointment_task_id": appointment_task_id},
    }


def maintenance_task(
    task_id, starts_at, *, position="bay-1", customer_id="C-42", minutes=120, appointment_task_id=None
):
    payload = {
        "vin": "WVWZZZ1JZXW000001",
        "position": position,
        "starts_at": starts_at,
        "duration_minutes": minutes,
    }
    if appointment_task_id:
        payload["appointment_task_id"] = appointment_task_id
    return {
        "task_id": task_id,
        "type": "maintenance.schedule",
        "customer_id": customer_id,
        "payload": payload,
    }


def add_done_tasks(connection, prefix: str, count: int, *, delivered: bool = False) -> None:
    """count tasks of client acme already decided (PostgreSQL, in one statement each), task uuid
    md5('t' || prefix || n); with delivered, each with a result whose callback was delivered."""
    rows = [
        (
            "gateway_tasks (task_uuid, client_id, task_id, type, customer_id, payload, content_sha256,"
            " status, received_at, updated_at)",
            f"md5('t{prefix}' || n)::uuid, 'acme', '{prefix}-' || n, 'customer.upsert', 'C-1', '{{}}',"
            " '', 'succeeded', now(), now()",
        ),
        (
            "gateway_results (result_id, task_uuid, context, outcome, status, result, occurred_at,"
            " client_id, delivery_status, attempts, created_at)",
            f"md5('r{prefix}' || n)::uuid, md5('t{prefix}' || n)::uuid, 'customers', 'x', 'succeeded',"
            " '{}', now(), 'acme', 'delivered', 1, now()",
        ),
    ]
    for table, values in rows if delivered else rows[:1]:
        connection.exec_driver_sql(
            f"INSERT INTO {table} SELECT {values} FROM generate_series(1, {count}) AS n"
        )


def rows_scanned(connection, *tables: str) -> int:
    """Rows PostgreSQL has read from tables by sequential scans in this connection's transaction
    so far (with what it has not yet reported from earlier ones): compare two readings."""
    return connection.exec_driver_sql(
        "SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_xact_user_tables WHERE relname = ANY(%(tables)s)",
        {"tables": list(tables)},
    ).scalar_one()


def visit_task(
    task_id,
    starts_at,
    *,
    customer_id="C-42",
    resource_id="desk-1",
    position="bay-1",
    minutes=60,
    vin="WVWZZZ1JZXW000001",
) -> dict:
    return {
        "task_id": task_id,
        "type": "visit.book",
        "customer_id": customer_id,
        "payload": {
            "vin": vin,
            "resource_id": resource_id,
            "position": position,
            "starts_at": starts_at,
            "duration_minutes": minutes,
        },
    }


def visit_cancel_task(task_id, visit_task_id, *, customer_id="C-42") -> dict:
    return {
        "task_id": task_id,
        "type": "visit.cancel",
        "customer_id": customer_id,
        "payload": {"visit_task_id": visit_task_id},
    }
