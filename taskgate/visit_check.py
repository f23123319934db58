"""Checks, over a quiet deployment's database and the callbacks its client received, that every
visit booked both sides or neither:

- every visit.book and visit.cancel task has exactly one result, from context visits;
- every visit has ended (booked, rejected or canceled), and stands as its results say: a booked
  visit with one active appointment and one active job, any other with neither;
- no hold is left, and none outlived its expiry by more than one sweep (the slack);
- no desk slot (resource or customer) and no workshop position is held or booked twice;
- every visit.cancel accepted after its visit.book ended with both sides released;
- every visit result reached the client (given the callbacks).

It reads every context's tables, as an operator's tool may (the contexts themselves never do).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Connection, select

from contexts.appointment.tables import TAKEN as DESK_TAKEN
from contexts.appointment.tables import appointments
from contexts.appointment.tables import visit_holds as desk_holds
from contexts.maintenance.tables import TAKEN as BAY_TAKEN
from contexts.maintenance.tables import jobs
from contexts.maintenance.tables import visit_holds as bay_holds
from contexts.visits.tables import visits
from gateway.tables import results, tasks
from taskgate.check_report import CheckReport

VISIT_TASKS = ("visit.book", "visit.cancel")


def check_visits(
    connection: Connection, callbacks: Iterable[dict] | None = None, slack: timedelta = timedelta(seconds=5)
) -> CheckReport:
    """Check the database (and, if given, the `data` of each callback received) once nothing is in
    flight; slack: how long after its expiry a hold may have been released (one sweep)."""
    report = CheckReport("visit check")
    visit_tasks = {
        (row.client_id, row.task_id): row
        for row in connection.execute(select(tasks).where(tasks.c.type.in_(VISIT_TASKS)))
    }
    outcomes = _outcomes(connection, visit_tasks, report)
    visit_rows = {(row.client_id, row.task_id): row for row in connection.execute(select(visits))}
    _check_visits(connection, visit_tasks, visit_rows, outcomes, report)
    _check_cancels(visit_tasks, visit_rows, outcomes, report)
    _check_holds(connection, slack, report)
    _check_no_double_booking(connection, report)
    if callbacks is not None:
        _check_callbacks(connection, visit_tasks, list(callbacks), report)
    return report


def _outcomes(connection: Connection, visit_tasks: dict, report: CheckReport) -> dict:
    """(client_id, task_id) -> the outcome of the task's one result (problems for any other count)."""
    by_uuid = defaultdict(list)
    uuids = [task.task_uuid for task in visit_tasks.values()]
    for start in range(0, len(uuids), 500):
        for row in connection.execute(
            select(results).where(results.c.task_uuid.in_(uuids[start : start + 500]))
        ):
            by_uuid[row.task_uuid].append(row)
    outcomes = {}
    for key, task in visit_tasks.items():
        found = by_uuid[task.task_uuid]
        report.checked[f"{task.type} tasks"] += 1
        if len(found) != 1 or found[0].context != "visits":
            report.problem(
                f"{task.type} {key}: {len(found)} results {[r.context for r in found]}, not one from visits"
            )
            continue
        outcomes[key] = (found[0].outcome, found[0].result)
    return outcomes


def _check_visits(connection: Connection, visit_tasks, visit_rows, outcomes, report: CheckReport) -> None:
    desk = _by_visit(connection, appointments, DESK_TAKEN)
    bay = _by_visit(connection, jobs, BAY_TAKEN)
    for key, row in visit_rows.items():
        report.checked["visits"] += 1
        taken = (len(desk.get(row.visit_id, [])), len(bay.get(row.visit_id, [])))
        if row.state == "booked":
            if taken != (1, 1):
                report.problem(
                    f"visit {key} is booked with {taken[0]} desk slots and {taken[1]} positions taken"
                )
        elif row.state in ("rejected", "canceled", "failed"):
            if taken != (0, 0):
                report.problem(
                    f"visit {key} is {row.state} but still takes {taken[0]} desk slots, {taken[1]} positions"
                )
        else:
            report.problem(f"visit {key} has not ended: {row.state}")
        outcome = outcomes.get(key, (None,))[0]
        expected = {
            "booked": "visit.booked",
            "canceled": "visit.booked",
            "rejected": "visit.rejected",
            "failed": "visits.failed",
        }.get(row.state)
        if outcome is not None and outcome != expected:
            report.problem(f"visit {key} is {row.state} but its task's result is {outcome}")
    for key, task in visit_tasks.items():
        if (
            task.type == "visit.book"
            and key not in visit_rows
            and outcomes.get(key, (None,))[0] != "visits.failed"
        ):
            report.problem(f"visit.book {key} has no visit")


def _by_visit(connection: Connection, table, taken_statuses) -> dict:
    found = defaultdict(list)
    for row in connection.execute(
        select(table.c.visit_id).where(table.c.visit_id.is_not(None), table.c.status.in_(taken_statuses))
    ):
        found[row.visit_id].append(row)
    return found


def _check_cancels(visit_tasks, visit_rows, outcomes, report: CheckReport) -> None:
    for key, task in visit_tasks.items():
        if task.type != "visit.cancel" or key not in outcomes:
            continue
        target = (task.client_id, task.payload["visit_task_id"])
        book = visit_tasks.get(target)
        if book is None or book.customer_seq > task.customer_seq or book.customer_id != task.customer_id:
            continue  # names no visit.book accepted before it for this customer
        report.checked["cancels after their visit"] += 1
        visit, (outcome, result) = visit_rows.get(target), outcomes[key]
        if visit is None or visit.state not in ("canceled", "rejected", "failed"):
            report.problem(f"visit.cancel {key}: its visit {target} is {visit.state if visit else 'missing'}")
        elif visit.state == "canceled" and outcome != "visit.canceled":
            report.problem(f"visit.cancel {key}: its visit was canceled but it answered {outcome}")
        elif visit.state in ("rejected", "failed") and (outcome, result) != (
            "visit.rejected",
            {"reason": "not_found"},
        ):
            report.problem(
                f"visit.cancel {key}: its visit was {visit.state} but it answered {outcome} {result}"
            )


def _check_holds(connection: Connection, slack: timedelta, report: CheckReport) -> None:
    for holds in (desk_holds, bay_holds):
        for row in connection.execute(select(holds)):
            report.checked["holds"] += 1
            if row.state == "held":
                report.problem(f"{holds.name}: visit {row.visit_id} is still held")
            elif row.state == "expired" and row.updated_at > row.expires_at + slack:
                late = (row.updated_at - row.expires_at).total_seconds()
                report.problem(
                    f"{holds.name}: visit {row.visit_id} was released {late:.1f} s after its expiry"
                )


def _check_no_double_booking(connection: Connection, report: CheckReport) -> None:
    checks = (
        (appointments, DESK_TAKEN, "resource_id"),
        (appointments, DESK_TAKEN, "customer_id"),
        (jobs, BAY_TAKEN, "position"),
    )
    for table, taken, column in checks:
        slots = defaultdict(list)
        for row in connection.execute(
            select(table.c.client_id, table.c[column], table.c.starts_at, table.c.ends_at).where(
                table.c.status.in_(taken)
            )
        ):
            slots[row.client_id, row[1]].append((row.starts_at, row.ends_at))
        for key, taken_slots in slots.items():
            report.checked[f"{table.name} by {column}"] += 1
            taken_slots.sort()
            for (_, ends), (starts, _) in itertools.pairwise(taken_slots):
                if starts < ends:
                    report.problem(f"{table.name}: {column} {key} is taken twice at {starts.isoformat()}")


def _check_callbacks(connection: Connection, visit_tasks, callbacks: list[dict], report: CheckReport) -> None:
    received = defaultdict(int)
    for data in callbacks:
        received[data["result_id"]] += 1
    uuids = {task.task_uuid for task in visit_tasks.values()}
    for row in connection.execute(select(results.c.result_id, results.c.task_uuid)):
        if row.task_uuid not in uuids:
            continue
        report.checked["visit results delivered"] += 1
        if not received.get(str(row.result_id)):
            report.problem(f"result {row.result_id} never reached the client")
