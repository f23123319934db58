"""Backpressure: while taskgate is too far behind, new tasks are refused with 503 and Retry-After
rather than piling up without bound; it recovers by itself as the backlog drains.

Two backlogs are watched: messages waiting in the outboxes (the relays or the broker are behind)
and callbacks waiting to be delivered (the dispatcher or the clients' endpoints are behind). Counts
are bounded (never more than limit + 1 rows are counted) and taken at most once per `ttl` seconds
per process, so a busy webhook pays next to nothing for them. Once over a limit, tasks are refused
until the backlog is below `resume_ratio` of it, so the webhook does not flap at the threshold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from sqlalchemy import Engine, Table, func, literal, select

from gateway.tables import deliveries
from messaging.db import single_read

log = logging.getLogger(__name__)


class Backpressure:
    def __init__(
        self,
        engine: Engine,
        outboxes: Iterable[Table],
        *,
        max_outbox: int,
        max_undelivered: int,
        ttl: float = 0.5,
        resume_ratio: float = 0.8,
    ):
        self.engine = engine
        self.outboxes = list(outboxes)
        self.limits = {"outbox": max_outbox, "undelivered": max_undelivered}
        self.ttl = ttl
        self.resume_ratio = resume_ratio
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._reason: str | None = None
        self._counts = _counts_query(self.outboxes, self.limits)

    @property
    def enabled(self) -> bool:
        return any(self.limits.values())

    def reason_to_refuse(self) -> str | None:
        """Why new tasks should wait now, or None to accept them."""
        if not self.enabled:
            return None
        with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl:
                self._reason = self._check()
                self._checked_at = time.monotonic()
            return self._reason

    def _check(self) -> str | None:
        with single_read(self.engine).connect() as connection:
            counts = connection.execute(self._counts).one()._asdict()
        for name, limit in self.limits.items():
            if not limit:
                continue
            count = counts[name]
            # Once over the limit, refusing goes on until the backlog is below resume_ratio of it.
            if count > limit or (self._reason and count >= limit * self.resume_ratio):
                if self._reason is None:
                    log.warning("refusing new tasks: %s backlog over %d", name, limit)
                return f"taskgate is behind ({name} backlog over {limit}); try again later"
        if self._reason is not None:
            log.info("accepting new tasks again: the backlog drained")
        return None


def _counts_query(outboxes: list[Table], limits: dict[str, int]):
    """Both backlogs in one statement (one round trip), each count bounded by its limit."""
    outbox = sum(
        (_bounded_count(table, table.c.published_at.is_(None), limits["outbox"]) for table in outboxes),
        literal(0),
    )
    undelivered = _bounded_count(deliveries, deliveries.c.status == "pending", limits["undelivered"])
    return select(outbox.label("outbox"), undelivered.label("undelivered"))


def _bounded_count(table: Table, condition, limit: int):
    """count(*) of matching rows, but never more than limit + 1 of them looked at."""
    sample = select(literal(1)).select_from(table).where(condition).limit(limit + 1).subquery()
    return select(func.count()).select_from(sample).scalar_subquery()
