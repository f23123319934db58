"""Recording callback attempts: each attempt a row, the delivery moved on, several callback
threads' attempts in one transaction (group commit)."""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, exc, update

from gateway.callbacks.sender import Attempt
from gateway.tables import delivery_attempts, results
from messaging.db import insert_many
from messaging.group_commit import GroupCommit, Ticket

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

    def __init__(self, engine: Engine):
        self.engine = engine
        self._group = GroupCommit(self._write)

    def submit(self, row, attempt: Attempt, attempts: int, values: dict) -> Ticket:
        return self._group.submit_nowait((row, attempt, attempts, values))

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
                        for row, attempt, _, _ in recorded
                    ],
                )
            except exc.DBAPIError as error:
                if error.connection_invalidated:
                    raise StaleConnection from error
                raise
            # Each only if nobody else recorded an attempt meanwhile (e.g. after our lease ran out).
            connection.execute(
                _RECORD_ATTEMPT,
                [
                    {
                        "key": row.result_id,
                        "seen_attempts": row.attempts,
                        **{
                            f"new_{column}": value
                            for column, value in {
                                "delivery_status": "pending",
                                "delivered_at": None,
                                **values,
                                "attempts": attempts,
                                "last_status_code": attempt.status_code,
                                "last_error": attempt.error,
                            }.items()
                        },
                    }
                    for row, attempt, attempts, values in recorded
                ],
            )
