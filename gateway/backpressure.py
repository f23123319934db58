"""Backpressure: while taskgate is too far behind, new tasks get 503 and Retry-After rather than
piling up; it recovers by itself, below `resume_ratio` of the limit (so it does not flap).

Watched: unpublished outbox messages, tasks of the last UNFINISHED_WINDOW not yet decided (a
dead-lettered task does not count for ever), undelivered callbacks, and each client's share of
those (a client over its share gets 429, the others go on). Counts are bounded (limit + 1 rows)
and taken at most once per `ttl` seconds per process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Engine, Table, and_, bindparam, func, literal, select

from gateway.tables import ACCEPTED, results, tasks
from messaging.db import UtcDateTime, read_only, utcnow

log = logging.getLogger(__name__)

# A task still undecided after this long is not behind but stuck (e.g. dead-lettered): it is for
# an operator to look into, and no longer holds up new tasks.
UNFINISHED_WINDOW = timedelta(minutes=15)


class Backpressure:
    def __init__(
        self,
        engine: Engine,
        outboxes: Iterable[Table],
        *,
        max_outbox: int,
        max_undelivered: int,
        max_unfinished: int = 0,  # off unless asked for; Settings asks for 10,000
        max_undelivered_per_client: int = 0,  # likewise
        ttl: float = 0.5,
        resume_ratio: float = 0.8,
    ):
        self.engine = engine
        self.outboxes = list(outboxes)
        self.limits = {"outbox": max_outbox, "unfinished": max_unfinished, "undelivered": max_undelivered}
        self.ttl = ttl
        self.resume_ratio = resume_ratio
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._checking = False  # a request is counting the backlogs
        self._reason: str | None = None
        self._tripped: set[str] = set()  # the limits their backlogs went over, until each drains
        self._counts = _counts_query(self.outboxes, self.limits)
        self.per_client = max_undelivered_per_client
        self._client_count = select(
            _bounded_count(
                results,
                and_(results.c.delivery_status == "pending", results.c.client_id == bindparam("client_id")),
                max_undelivered_per_client,
            )
        )
        self._clients: dict[str, tuple[float, str | None]] = {}  # client -> (checked at, reason)

    @property
    def enabled(self) -> bool:
        return any(self.limits.values())

    def reason_to_refuse(self) -> str | None:
        """Why new tasks should wait now, or None to accept them. One request at a time counts
        again, once the last count is ttl old; the others go by the last answer meanwhile, also
        while the database is slow to answer or to fail (a request that meets the failure gets it)."""
        if not self.enabled:
            return None
        with self._lock:
            if self._checking or time.monotonic() - self._checked_at < self.ttl:
                return self._reason
            self._checking = True
        reason = self._reason  # kept should the count fail
        try:
            reason = self._check()
        finally:
            with self._lock:
                self._checking, self._checked_at, self._reason = False, time.monotonic(), reason
        return reason

    def client_reason_to_refuse(self, client_id: str) -> str | None:
        """Why this client's new tasks should wait now (its share of undelivered callbacks is full)."""
        if not self.per_client:
            return None
        with self._lock:
            checked_at, reason = self._clients.get(client_id, (float("-inf"), None))
            if time.monotonic() - checked_at < self.ttl:
                return reason
            # One request counts again; the others meanwhile go by the last answer.
            self._clients[client_id] = (time.monotonic(), reason)
        with read_only(self.engine).connect() as connection:
            count = connection.scalar(self._client_count, {"client_id": client_id})
        limit = self.per_client
        if count > limit or (reason and count >= limit * self.resume_ratio):
            if reason is None:
                log.warning("refusing client %s's new tasks: %d callbacks undelivered", client_id, count)
            reason = f"this client's undelivered callbacks are over {limit}; try again later"
        else:
            reason = None
        with self._lock:
            self._clients[client_id] = (time.monotonic(), reason)
        return reason

    def _check(self) -> str | None:
        with read_only(self.engine).connect() as connection:
            counts = connection.execute(self._counts, {"since": utcnow() - UNFINISHED_WINDOW}).one()._asdict()
        tripped, reason = set(), None
        for name, limit in self.limits.items():
            if not limit:
                continue
            count = counts[name]
            # Once over its limit, refusing goes on until that backlog is below resume_ratio of it.
            if count > limit or (name in self._tripped and count >= limit * self.resume_ratio):
                if name not in self._tripped:
                    log.warning("refusing new tasks: %s backlog over %d", name, limit)
                tripped.add(name)
                reason = reason or f"taskgate is behind ({name} backlog over {limit}); try again later"
        if self._tripped and not tripped:
            log.info("accepting new tasks again: the backlog drained")
        self._tripped = tripped
        return reason


def _counts_query(outboxes: list[Table], limits: dict[str, int]):
    """The backlogs in one statement (one round trip), each count bounded by its limit."""
    outbox = sum(
        (_bounded_count(table, table.c.published_at.is_(None), limits["outbox"]) for table in outboxes),
        literal(0),
    )
    unfinished = _bounded_count(
        tasks,
        and_(tasks.c.status == ACCEPTED, tasks.c.received_at >= bindparam("since", type_=UtcDateTime)),
        limits["unfinished"],
    )
    undelivered = _bounded_count(results, results.c.delivery_status == "pending", limits["undelivered"])
    # The few undecided tasks and pending deliveries are found by the status index once the tables
    # have grown, as every statement is planned for the tables as they are (make_engine).
    return select(outbox.label("outbox"), unfinished.label("unfinished"), undelivered.label("undelivered"))


def _bounded_count(table: Table, condition, limit: int):
    """count(*) of matching rows, but never more than limit + 1 of them looked at."""
    sample = select(literal(1)).select_from(table).where(condition).limit(limit + 1).subquery()
    return select(func.count()).select_from(sample).scalar_subquery()
