"""The tasks the load generator sends, built and signed before the clock starts.

The mix follows the contract: mostly `survey.assign`, with `customer.upsert` (updates of known
customers) and `appointment.schedule` on slots that never overlap (each appointment gets its own
hour), so nothing is rejected and nothing waits. The customers themselves are registered in a
warm-up phase first: a survey for an unknown customer would park until the customer arrives.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta

# Result callbacks each task type causes in this mix (a cancel would cause two: not in the mix).
RESULTS_PER_TYPE = {"customer.upsert": 1, "survey.assign": 1, "appointment.schedule": 1}
MIX = {"survey.assign": 0.8, "customer.upsert": 0.1, "appointment.schedule": 0.1}
RESOURCES_PER_CLIENT = 20  # an appointment every hour, so 168 / 20 < 40 a week per resource
FIRST_SLOT = datetime(2030, 1, 7, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Client:
    client_id: str
    secret: str


@dataclasses.dataclass(frozen=True)
class Task:
    task_id: str
    type: str
    client_id: str
    body: bytes


def customer_id(number: int) -> str:
    return f"C-{number}"


def upsert(task_id: str, customer: int, version: int = 0) -> dict:
    name = f"Customer {customer}" + (f" v{version}" if version else "")
    return {
        "task_id": task_id,
        "type": "customer.upsert",
        "customer_id": customer_id(customer),
        "payload": {"name": name, "email": f"c{customer}@example.com"},
    }


def survey(task_id: str, customer: int) -> dict:
    return {
        "task_id": task_id,
        "type": "survey.assign",
        "customer_id": customer_id(customer),
        "payload": {"survey_id": "SRV-1", "due_date": "2030-12-31"},
    }


def appointment(task_id: str, customer: int, slot: int, client_id: str) -> dict:
    starts_at = FIRST_SLOT + timedelta(hours=slot)
    return {
        "task_id": task_id,
        "type": "appointment.schedule",
        "customer_id": customer_id(customer),
        "payload": {
            "resource_id": f"R-{client_id}-{slot % RESOURCES_PER_CLIENT}",
            "starts_at": starts_at.isoformat(),
            "duration_minutes": 30,
        },
    }


def warmup_tasks(clients: list[Client], customers: int, run: str) -> list[Task]:
    """One customer.upsert per customer and client."""
    return [
        _task(client, upsert(f"{run}-W-{number}", number))
        for client in clients
        for number in range(customers)
    ]


def measured_tasks(clients: list[Client], customers: int, count: int, run: str, seed: int = 1) -> list[Task]:
    """count tasks of the mix, spread round-robin over the clients."""
    rng = random.Random(seed)
    types, weights = zip(*MIX.items(), strict=True)
    slots = dict.fromkeys((client.client_id for client in clients), 0)
    tasks = []
    for number in range(count):
        client = clients[number % len(clients)]
        task_id, customer = f"{run}-M-{number}", rng.randrange(customers)
        kind = rng.choices(types, weights)[0]
        if kind == "survey.assign":
            task = survey(task_id, customer)
        elif kind == "customer.upsert":
            task = upsert(task_id, customer, version=number)
        else:
            task = appointment(task_id, customer, slots[client.client_id], client.client_id)
            slots[client.client_id] += 1
        tasks.append(_task(client, task))
    return tasks


def _task(client: Client, task: dict) -> Task:
    body = json.dumps(task, separators=(",", ":")).encode()
    return Task(task["task_id"], task["type"], client.client_id, body)


def raw_request(task: Task, secret: str, host: str, timestamp: int) -> bytes:
    """The whole HTTP/1.1 request, signed the Standard Webhooks way."""
    webhook_id = f"msg_{task.task_id}"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + task.body, hashlib.sha256).digest()
    head = (
        f"POST /v1/clients/{task.client_id}/tasks HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(task.body)}\r\n"
        f"webhook-id: {webhook_id}\r\n"
        f"webhook-timestamp: {timestamp}\r\n"
        f"webhook-signature: v1,{base64.b64encode(digest).decode()}\r\n"
        "\r\n"
    )
    return head.encode() + task.body
