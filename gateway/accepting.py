"""Accepting the webhook's tasks in group commits: requests that reach the database while another
accept is being written share its next transaction (messaging.group_commit), so under load many
tasks share one BEGIN and one COMMIT; alone, a request is written at once, in its own thread.
On PostgreSQL that saves round trips to the server; on SQLite, turns at its single writer."""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy import Engine

from gateway.clients import Client
from gateway.intake import Acceptance, accept_task
from messaging.db import is_unavailable
from messaging.group_commit import GroupCommit
from messaging.tracing import tracer


@dataclasses.dataclass
class _Request:
    client_id: str
    task_uuid: uuid.UUID
    task: dict
    sender: Client
    trace: dict | None  # the request's span (the writing thread may serve another request)
    acceptance: Acceptance | None = None
    alone: bool = False  # its group failed: it is to be written in a transaction of its own


class Accepting:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._group = GroupCommit(self._write)

    def accept(self, client_id: str, task_uuid: uuid.UUID, task: dict, *, sender: Client) -> Acceptance:
        """accept_task for a request verified against sender, committed before it returns: in one
        transaction with the requests that wait meanwhile, or alone if that one failed (a task-id
        reused with other content, say, raises here only for its own request)."""
        request = _Request(client_id, task_uuid, task, sender, tracer().current())
        self._group.submit(request)
        if request.alone:
            self._write([request])
        return request.acceptance

    def _write(self, requests: list[_Request]) -> None:
        # In one order of customers, so that two groups never wait for each other's places.
        ordered = sorted(requests, key=lambda request: (request.client_id, request.task["customer_id"]))
        try:
            with self.engine.begin() as connection:
                for request in ordered:
                    request.acceptance = accept_task(
                        connection,
                        request.client_id,
                        request.task_uuid,
                        request.task,
                        sender=request.sender,
                        trace=request.trace,
                    )
        except Exception as error:
            # A database that is away fails every request of the group at once (each answers 503);
            # written again alone, each would wait for it in turn.
            if len(requests) == 1 or is_unavailable(error):
                raise
            for request in requests:
                request.alone = True
