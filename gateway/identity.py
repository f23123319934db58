"""Name-based task identity that anyone can recompute from the client's own ids."""

from __future__ import annotations

import uuid


def task_uuid(namespace: uuid.UUID, client_id: str, task_id: str) -> uuid.UUID:
    return uuid.uuid5(namespace, f"{client_id}:{task_id}")
