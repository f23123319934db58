"""What taskgate is doing, at a glance: backlogs, parked tasks, undelivered results, dead letters and
worker heartbeats. Read by /metrics and the operator console.

The composition root says which outboxes and which heartbeat table to read (the contexts' outboxes
are theirs; the gateway reads only their backlog, never their business tables).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from gateway.tables import dead_letters, outbox, results, tasks
from messaging import vocabulary
from messaging.db import utcnow
from messaging.heartbeat import ProcessStatus, list_processes
from messaging.outbox import Backlog, backlog


@dataclasses.dataclass(frozen=True)
class Sources:
    """Tables beyond the gateway's own that the overview reads."""

    outboxes: Mapping[str, Table] = dataclasses.field(default_factory=lambda: {"gateway": outbox})
    processes: Table | None = None


@dataclasses.dataclass(frozen=True)
class Overview:
    read_at: datetime
    outboxes: dict[str, Backlog]
    waiting_by_reason: dict[str, int]  # unknown_customer, customer_outdated, target_undecided
    deliveries_pending: int
    deliveries_failed: int
    dead_letters: int  # kept and not replayed
    processes: list[ProcessStatus]

    @property
    def waiting_tasks(self) -> int:
        return sum(self.waiting_by_reason.values())

    @property
    def outbox_pending(self) -> int:
        return sum(b.pending for b in self.outboxes.values())

    def oldest_pending_seconds(self) -> float:
        return max((b.oldest_age_seconds(self.read_at) for b in self.outboxes.values()), default=0.0)


# Tasks parked before their reason was recorded (migration 0011) waited for their customer.
_WAITING_REASON = func.coalesce(tasks.c.waiting_reason, vocabulary.UNKNOWN_CUSTOMER)


def read_overview(connection: Connection, sources: Sources) -> Overview:
    def count(table: Table, *conditions) -> int:
        return connection.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one()

    delivery_counts = dict(
        connection.execute(
            select(results.c.delivery_status, func.count())
            .where(results.c.delivery_status.in_(("pending", "failed")))
            .group_by(results.c.delivery_status)
        ).all()
    )
    now = utcnow()
    return Overview(
        read_at=now,
        outboxes={name: backlog(connection, table) for name, table in sources.outboxes.items()},
        waiting_by_reason=dict(
            connection.execute(
                select(_WAITING_REASON, func.count())
                .where(tasks.c.status == vocabulary.WAITING)
                .group_by(_WAITING_REASON)
            ).all()
        ),
        deliveries_pending=delivery_counts.get("pending", 0),
        deliveries_failed=delivery_counts.get("failed", 0),
        dead_letters=count(dead_letters, dead_letters.c.replayed_at.is_(None)),
        processes=list_processes(connection, sources.processes, now) if sources.processes is not None else [],
    )
