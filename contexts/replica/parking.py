"""A context's parked tasks: tasks that wait (for their customer's copy, or for another task to be
decided) are kept here and sent again when what they wait for happens, or failed when their wait
runs out. The methods of CustomerReplica (which owns the tables)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

from sqlalchemy import delete, func, select
from uuid6 import uuid7

from messaging import resuming, vocabulary
from messaging.db import Transaction, backend, both_of, utcnow
from messaging.envelope import Envelope
from messaging.tracing import tracer

log = logging.getLogger(__name__)

CustomerKey = tuple[str, str]  # (client_id, customer_id)


class Parking:
    """Parking for a context, mixed into CustomerReplica: it uses self.customers, self.parked, the
    statements CustomerReplica builds and self.context."""

    def _park(
        self,
        session: Transaction,
        task: Envelope,
        reason: str,
        *,
        needs: int = 0,
        waiting_for: str | None = None,
    ) -> Envelope:
        """Keep task until what it waits for happens; returns the status message saying it waits."""
        session.execute(
            self.parked.insert().values(
                message_id=task.message_id,
                client_id=task.client_id,
                customer_id=task.payload["customer_id"],
                envelope=task.to_body(),
                parked_at=utcnow(),
                waiting_for=waiting_for,
                needs=needs,
                reason=reason,
            )
        )
        log.info("parked: %s", reason, extra={**task.log_fields, "waiting_for": waiting_for, "needs": needs})
        tracer().note(task, "taskgate.parked", {"taskgate.waiting_reason": reason})
        return vocabulary.task_status(task, context=self.context, status=vocabulary.WAITING, reason=reason)

    # -- other waits ---------------------------------------------------------------------------

    def park_until(self, session: Transaction, task: Envelope, waiting_for: str, reason: str) -> Envelope:
        """Park task until resume names (its client, waiting_for) (the caller serializes the two); if that
        does not happen within the wait timeout, it ends as on_expiry(reason) says."""
        if reason not in self._expiry_answers:
            raise ValueError(f"no answer on expiry for {reason!r}: call on_expiry first")
        return self._park(session, task, reason, waiting_for=waiting_for)

    def on_expiry(self, reason: str, answer: Callable[[Envelope], Envelope]) -> None:
        """How a task parked with park_until for reason ends if it waits too long (set up when the
        handlers are built, so that every process's sweeper knows it)."""
        self._expiry_answers[reason] = answer

    def on_failed(
        self, task_type: str, decided: Callable[[Transaction, list[Envelope]], list[Envelope]]
    ) -> None:
        """What else is done, in the sweeper's transaction, when tasks of task_type fail because their
        customer's copy did not catch up in time: decided(session, tasks) -> the messages it causes
        (e.g. the cancels that waited for them, resumed: there is nothing left to cancel)."""
        self._failure_hooks[task_type] = decided

    def resume(self, session: Transaction, causes: dict[tuple[str, str], Envelope]) -> list[Envelope]:
        """The tasks parked until what causes names ((client_id, waiting_for) -> the message it
        happened by), oldest first, each resumed as caused by its message (decided here where a
        consumer decides it: what it caused then, messaging.resuming); one statement."""
        if not causes:
            return []
        rows = session.execute(self._resume_statement, {**both_of(causes), "pairs": sorted(causes)}).all()
        rows.sort(key=lambda row: row.parked_at)
        resumed = [
            resumed_task(Envelope.from_body(row.envelope), causes[row.client_id, row.waiting_for])
            for row in rows
        ]
        return resuming.decided_here(resumed)

    def _unpark(
        self, session: Transaction, keys: Iterable[CustomerKey]
    ) -> list[tuple[CustomerKey, Envelope]]:
        """Take the parked tasks of these customers, in their customers' order (then oldest
        first), each with its customer's key: only those this transaction removed, so a task the
        sweeper is failing at the same moment is not resumed too."""
        keys = set(keys)
        rows = session.execute(self._unpark_statement, {**both_of(keys), "pairs": sorted(keys)}).all()
        taken = [(row, Envelope.from_body(row.envelope)) for row in rows]
        taken.sort(key=lambda pair: (vocabulary.customer_order(pair[1])[0], pair[0].parked_at))
        return [((row.client_id, row.customer_id), task) for row, task in taken]

    # -- expiry --------------------------------------------------------------------------------

    def fail_expired(self, session: Transaction, timeout: timedelta, limit: int = 100) -> list[Envelope]:
        """Take tasks parked longer than timeout; returns their results: for a customer's copy, the
        failure `customer_outdated` if an upsert of the customer was accepted before the task, else
        `unknown_customer`; for other waits, what on_expiry says."""
        table = self.parked
        query = (
            select(table.c.message_id, table.c.envelope, table.c.reason)
            .where(table.c.parked_at <= utcnow() - timeout)
            .order_by(table.c.parked_at)
            .limit(limit)
        )
        rows = session.execute(backend(session).skipping_locked(query)).all()
        if rows:
            # RETURNING: a row an event resumed meanwhile is not failed as well.
            taken = session.execute(
                delete(table)
                .where(table.c.message_id.in_([row.message_id for row in rows]))
                .returning(table.c.message_id)
            ).scalars()
            taken = set(taken)
            rows = [row for row in rows if row.message_id in taken]
        tasks = [(Envelope.from_body(row.envelope), row.reason) for row in rows]
        answers = []
        failed: dict[str, list[Envelope]] = {}
        for task, reason in tasks:
            if reason in self._expiry_answers:
                log.warning("waited too long (%s)", reason, extra=task.log_fields)
                answers.append(self._expiry_answers[reason](task))
                continue
            # CONTRACT: a copy still behind an upsert accepted before the task is outdated, whether
            # or not the context has had the customer at all; only one never upserted is unknown.
            _, needs = vocabulary.customer_order(task)
            reason = vocabulary.CUSTOMER_OUTDATED if needs else vocabulary.UNKNOWN_CUSTOMER
            failed.setdefault(task.type, []).append(task)
            log.warning(
                "the customer's copy did not catch up in time (%s); failing the task",
                reason,
                extra=task.log_fields,
            )
            answers.append(vocabulary.failure(task, context=self.context, reason=reason))
        for task_type, tasks_failed in failed.items():
            if task_type in self._failure_hooks:
                answers += self._failure_hooks[task_type](session, tasks_failed)
        return answers

    def seconds_to_next_expiry(self, session: Transaction, timeout: timedelta) -> float | None:
        oldest = session.scalar(select(func.min(self.parked.c.parked_at)))
        if oldest is None:
            return None
        return max(0.0, (oldest + timeout - utcnow()).total_seconds())


def resumed_task(task: Envelope, cause: Envelope) -> Envelope:
    """A parked task sent again, as a new message caused by cause (in its own trace, which cause's
    process span notes), marked as resumed from task: where a consumer decides resumed tasks, it
    is decided as task, at once (messaging.resuming)."""
    log.info("resuming parked task", extra=task.log_fields)
    tracer().note(
        cause,
        "taskgate.resumed",
        {"taskgate.task_id": task.task_id, "taskgate.task_uuid": str(task.task_uuid)},
    )
    return dataclasses.replace(
        task, message_id=uuid7(), causation_id=cause.message_id, resumed_from=task.message_id
    )
