"""Recording callback attempts: what each makes of its delivery (delivered, failed for good, or
when to try again), each attempt a row, several callback threads' attempts in one transaction
(group commit)."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from sqlalchemy import Engine, bindparam, exc, update

from gateway.callbacks.schedule import next_delay, retry_after_seconds
from gateway.callbacks.sender import Attempt, storable
from gateway.metrics import DELIVERY_ATTEMPTS, TASK_TO_CALLBACK_SECONDS
from gateway.tables import delivery_attempts, results
from messaging.db import insert_many, utcnow
from messaging.group_commit import GroupCommit, Ticket

log = logging.getLogger(__name__)

_RECORD_ATTEMPT = (
    update(results)
    .where(
        results.c.result_id == bindparam("key"),
        results.c.delivery_status == "pending",
        results.c.attempts == bindparam("seen_attempts"),
    )
    .values(
        {
            column: bindparam(f"new_{column}")
            for column in (
                "delivery_status",
                "delivered_at",
                "next_attempt_at",
                "attempts",
                "last_status_code",
                "last_error",
            )
        }
    )
)


class StaleConnection(Exception):
    """The first statement of a transaction met a connection the server had dropped."""


class AttemptRecorder:
    """Records attempts in group commits: submit() hands one over, its ticket says when it is in."""

    def __init__(self, engine: Engine, schedule: tuple[float, ...], rng: random.Random):
        self.engine = engine
        self.schedule = schedule
        self.rng = rng
        self._group = GroupCommit(self._write)

    def submit(self, row, attempt: Attempt) -> Ticket:
        """Hand the attempt of the delivery row to the group commit with what it makes of the
        delivery (delivered, failed for good, or when to try again); the ticket says when it is in."""
        attempts = row.attempts + 1
        attempt.error = storable(attempt.error) if attempt.error else None
        fields = {"task_id": row.task_id, "task_uuid": str(row.task_uuid), "result_id": str(row.result_id)}
        detail = {"status_code": attempt.status_code, "error": attempt.error}
        if attempt.delivered:
            delivered_at = utcnow()
            values = {"delivery_status": "delivered", "delivered_at": delivered_at, "next_attempt_at": None}
            outcome = "delivered"
            TASK_TO_CALLBACK_SECONDS.labels(row.context).observe(
                max(0.0, (delivered_at - row.received_at).total_seconds())
            )
            log.info("callback delivered", extra={**fields, **detail})
        else:
            round_attempts = attempts - row.replayed_after_attempts
            delay = next_delay(self.schedule, round_attempts, self.rng)  # whatever the answer (CONTRACT §5)
            if delay is None:
                values = {"delivery_status": "failed", "next_attempt_at": None}
                outcome = "failed"
                log.warning("callback failed for good", extra={**fields, **detail})
            else:
                delay = max(delay, retry_after_seconds(attempt.retry_after, utcnow()) or 0)
                values = {"next_attempt_at": utcnow() + timedelta(seconds=delay)}
                outcome = "retry"
                log.info("callback attempt failed; retrying in %.1f s", delay, extra={**fields, **detail})
        DELIVERY_ATTEMPTS.labels(outcome).inc()
        values = {
            "delivery_status": "pending",
            "delivered_at": None,
            **values,
            "attempts": attempts,
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
        }
        record = {"key": row.result_id, "seen_attempts": row.attempts}
        record.update({f"new_{column}": value for column, value in values.items()})
        return self._group.submit_nowait((row, attempt, record))

    def wait(self, tickets: list[Ticket]) -> None:
        self._group.wait(tickets)

    def _write(self, recorded: list[tuple]) -> None:
        """Attempts of several callback threads, recorded in one transaction (GroupCommit).

        Pooled connections are not pinged before use, so one the server dropped since its last use
        fails the first statement; the pool then replaces it, and the attempts are written on a
        fresh connection (only then: once a statement went through, a failure is not retried, as
        the outcome of a COMMIT that lost its connection is unknown).
        """
        try:
            self._write_once(recorded)
        except StaleConnection:
            self._write_once(recorded)

    def _write_once(self, recorded: list[tuple]) -> None:
        with self.engine.begin() as connection:
            try:
                insert_many(
                    connection,
                    delivery_attempts,
                    [
                        {
                            "result_id": row.result_id,
                            "attempted_at": attempt.attempted_at,
                            "duration_ms": attempt.duration_ms,
                            "status_code": attempt.status_code,
                            "error": attempt.error,
                            "response_body": attempt.response_body,
                        }
                        for row, attempt, _ in recorded
                    ],
                )
            except exc.DBAPIError as error:
                if error.connection_invalidated:
                    raise StaleConnection from error
                raise
            # Each only if nobody else recorded an attempt meanwhile (e.g. after our lease ran out).
            connection.execute(_RECORD_ATTEMPT, [record for _, _, record in recorded])
