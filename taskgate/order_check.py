"""Checks, over a quiet deployment's database and the callbacks its client received, that for each
customer nothing the client sent earlier was overtaken by what it sent later:

- every customer (in the customers context and in each context's copy) stands as the last
  customer.upsert accepted for it says;
- every survey invitation went to the email of the last upsert accepted before its task (or of a
  later one, if the client sent one after it: a copy is never older than the task needs);
- every appointment.cancel accepted after its schedule left no booking standing, and answered
  `canceled` if the schedule booked, `not_found` if it was refused;
- every result reached the client, with the content stored.

It reads every context's tables, as an operator's tool may (the contexts themselves never do).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Connection, select

from contexts.appointment.tables import ACTIVE, appointments
from contexts.appointment.tables import replica as appointment_replica
from contexts.customers.tables import customers
from contexts.maintenance.tables import replica as maintenance_replica
from contexts.survey.tables import replica as survey_replica
from gateway.tables import results, tasks
from taskgate.check_report import CheckReport

COPIES = (survey_replica, appointment_replica, maintenance_replica)


def check_order(connection: Connection, callbacks: Iterable[dict] | None = None) -> CheckReport:
    """Check the database (and, if given, the `data` of each callback received) once nothing
    is in flight any more."""
    report = CheckReport("order check")
    by_customer: dict[tuple[str, str], list] = defaultdict(list)
    for task in connection.execute(select(tasks).order_by(tasks.c.customer_seq)):
        by_customer[task.client_id, task.customer_id].append(task)
    decided = _results(connection)
    _check_customers(connection, by_customer, report)
    _check_surveys(by_customer, decided, report)
    _check_cancels(connection, by_customer, decided, report)
    if callbacks is not None:
        _check_callbacks(connection, list(callbacks), report)
    return report


def _results(connection: Connection) -> dict:
    found = defaultdict(list)
    for row in connection.execute(
        select(results.c.task_uuid, results.c.context, results.c.outcome, results.c.result)
    ):
        found[row.task_uuid].append(row)
    return found


def _upserts(tasks_of_customer: list) -> list:
    return [task for task in tasks_of_customer if task.type == "customer.upsert"]


def _check_customers(connection: Connection, by_customer: dict, report: CheckReport) -> None:
    stored = {(row.client_id, row.customer_id): row for row in connection.execute(select(customers))}
    copies = [
        {(row.client_id, row.customer_id): row for row in connection.execute(select(copy.customers))}
        for copy in COPIES
    ]
    for key, tasks_of_customer in by_customer.items():
        upserts = _upserts(tasks_of_customer)
        if not upserts:
            continue
        last = upserts[-1].payload
        report.checked["customers"] += 1
        row = stored.get(key)
        if row is None or (row.name, row.email) != (last["name"], last["email"]):
            report.problem(f"customer {key}: stored {row and row.email!r}, last sent {last['email']!r}")
        for copy, rows in zip(COPIES, copies, strict=True):
            held = rows.get(key)
            if held is None:
                continue
            report.checked["copies"] += 1
            if (held.name, held.email) != (last["name"], last["email"]):
                report.problem(f"{copy.context}'s copy of {key}: {held.email!r}, last sent {last['email']!r}")


def _check_surveys(by_customer: dict, decided: dict, report: CheckReport) -> None:
    for key, tasks_of_customer in by_customer.items():
        upserts = _upserts(tasks_of_customer)
        for task in tasks_of_customer:
            if task.type != "survey.assign":
                continue
            report.checked["surveys"] += 1
            before = [upsert for upsert in upserts if upsert.customer_seq < task.customer_seq]
            allowed = {upsert.payload["email"] for upsert in upserts[len(before) - 1 :]} if before else set()
            outcomes = [row for row in decided.get(task.task_uuid, []) if row.context == "survey"]
            if [row.outcome for row in outcomes] != ["survey.assigned"]:
                report.problem(f"survey {task.task_id}: outcomes {[row.outcome for row in outcomes]}")
                continue
            email = outcomes[0].result["email"]
            if before and email == before[-1].payload["email"]:
                report.checked["surveys on the email sent just before"] += 1
            elif email not in allowed:
                report.problem(
                    f"survey {task.task_id} of {key}: invited {email!r}, sent before {sorted(allowed)}"
                )


def _check_cancels(connection: Connection, by_customer: dict, decided: dict, report: CheckReport) -> None:
    booked = {
        (row.client_id, row.task_id): row.status
        for row in connection.execute(
            select(appointments.c.client_id, appointments.c.task_id, appointments.c.status)
        )
    }
    for (client_id, _), tasks_of_customer in by_customer.items():
        schedules = {task.task_id: task for task in tasks_of_customer if task.type == "appointment.schedule"}
        for task in tasks_of_customer:
            if task.type != "appointment.cancel":
                continue
            target = schedules.get(task.payload["appointment_task_id"])
            if target is None or target.customer_seq > task.customer_seq:
                continue  # not one of this customer's schedules accepted before it
            report.checked["cancels after their schedule"] += 1
            answer = [row for row in decided.get(task.task_uuid, []) if row.context == "appointment"]
            schedule = [row for row in decided.get(target.task_uuid, []) if row.context == "appointment"]
            status = booked.get((client_id, target.task_id))
            if status == ACTIVE:
                report.problem(f"cancel {task.task_id}: the booking of {target.task_id} still stands")
            expected = (
                "appointment.canceled"
                if [row.outcome for row in schedule] == ["appointment.scheduled"]
                else "appointment.rejected"
            )
            if [row.outcome for row in answer] != [expected]:
                report.problem(
                    f"cancel {task.task_id}: answered {[row.outcome for row in answer]}, expected {expected}"
                )
            elif expected == "appointment.canceled":
                report.checked["appointments canceled"] += 1


def _check_callbacks(connection: Connection, callbacks: list[dict], report: CheckReport) -> None:
    stored = {
        str(row.result_id): row
        for row in connection.execute(select(results.c.result_id, results.c.outcome, results.c.result))
    }
    seen: dict[str, dict] = {}
    for data in callbacks:
        report.checked["callbacks"] += 1
        result_id = data["result_id"]
        if result_id in seen and seen[result_id] != data:
            report.problem(f"result {result_id} called back with different content")
        seen[result_id] = data
        row = stored.get(result_id)
        if row is None or (row.outcome, row.result) != (data["outcome"], data["result"]):
            report.problem(f"result {result_id}: called back as {data['outcome']}, not as stored")
    missing = set(stored) - set(seen)
    report.checked["results called back"] = len(set(stored) & set(seen))
    if missing:
        report.problem(f"{len(missing)} results never called back, e.g. {sorted(missing)[:3]}")
