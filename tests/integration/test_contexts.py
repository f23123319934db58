"""Every task type through the running system, on SQLite + in-process broker and PostgreSQL + RabbitMQ."""

import json
import uuid

import pytest
from sqlalchemy import insert, select

from contexts.maintenance import handlers as maintenance_handlers
from contexts.maintenance.tables import canceled_appointments, jobs
from contexts.replica import Customer
from messaging import vocabulary
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope
from tests.backends import sqlite_url
from tests.factories import cancel_task, maintenance_task, schedule_task, survey_task, upsert_task, wait_for
from tests.integration.conftest import CALLBACK_URL


@pytest.fixture(autouse=True)
def endpoint(callbacks):
    callbacks.post(CALLBACK_URL, status=204)


@pytest.fixture
def known_customer(client):
    """C-42, replicated in every context."""
    client.submit(upsert_task())
    client.wait_for_status("T-1001", "succeeded")
    # Customer events reach the other contexts through their own queues: prove it with a survey.
    client.submit(survey_task("S-0"))
    client.wait_for_status("S-0", "succeeded")


def test_survey_invitation_carries_the_replicated_email(client, known_customer):
    client.submit(survey_task("S-1"))
    task = client.wait_for_status("S-1", "succeeded")
    outcome, result = client.outcome("S-1")
    assert outcome == "survey.assigned"
    assert result["email"] == "ada@example.com"
    assert result["invitation_id"]
    assert task["results"][0]["context"] == "survey"


def test_a_task_for_an_unknown_customer_waits_and_resumes_when_the_customer_arrives(client):
    client.submit(survey_task("S-1", customer_id="C-7"))
    client.wait_for_status("S-1", "waiting")
    client.submit(upsert_task("T-7", customer_id="C-7", email="grace@example.com"))
    client.wait_for_status("S-1", "succeeded")
    assert client.outcome("S-1")[1]["email"] == "grace@example.com"


def test_an_appointment_is_scheduled_and_a_clash_is_rejected(client, known_customer):
    client.submit(schedule_task("A-1", "2026-12-01T09:00:00+01:00"))
    client.wait_for_status("A-1", "succeeded")
    outcome, result = client.outcome("A-1")
    assert outcome == "appointment.scheduled" and result["appointment_id"]

    # Same resource, overlapping (08:30Z-09:30Z vs 08:00Z-09:00Z), another customer: resource_busy
    client.submit(upsert_task("T-2", customer_id="C-2", email="c2@example.com"))
    client.wait_for_status("T-2", "succeeded")
    client.submit(schedule_task("A-2", "2026-12-01T08:30:00Z", customer_id="C-2"))
    assert client.wait_for_status("A-2", "rejected")
    assert client.outcome("A-2") == ("appointment.rejected", {"reason": "resource_busy"})

    # Another resource, same customer, overlapping: customer_busy
    client.submit(schedule_task("A-3", "2026-12-01T08:15:00Z", resource_id="R-2"))
    client.wait_for_status("A-3", "rejected")
    assert client.outcome("A-3") == ("appointment.rejected", {"reason": "customer_busy"})

    # Back to back is no overlap
    client.submit(schedule_task("A-4", "2026-12-01T09:00:00Z"))
    client.wait_for_status("A-4", "succeeded")


def test_cancel_frees_the_slot_and_cascades_to_the_linked_maintenance_job(client, known_customer, callbacks):
    client.submit(schedule_task("A-1", "2026-12-01T09:00:00Z"))
    client.wait_for_status("A-1", "succeeded")
    client.submit(maintenance_task("M-1", "2026-12-01T10:00:00Z", appointment_task_id="A-1"))
    client.wait_for_status("M-1", "succeeded")
    assert client.outcome("M-1")[0] == "maintenance.scheduled"

    client.submit(cancel_task("X-1", "A-1"))
    task = client.wait_for_results("X-1", 2)
    assert task["status"] == "succeeded"  # follows the appointment context, the primary one
    by_context = {result["context"]: result for result in task["results"]}
    assert by_context["appointment"]["outcome"] == "appointment.canceled"
    assert by_context["maintenance"]["outcome"] == "maintenance.canceled"
    assert by_context["maintenance"]["result"]["job_id"] == client.outcome("M-1")[1]["job_id"]

    # one callback per result, each tagged with the cancel task
    def cancel_callbacks():
        bodies = [json.loads(call.request.body)["data"] for call in callbacks.calls]
        return [body for body in bodies if body["task_id"] == "X-1"]

    delivered = wait_for(lambda: len(cancel_callbacks()) == 2 and cancel_callbacks())
    assert {body["outcome"] for body in delivered} == {"appointment.canceled", "maintenance.canceled"}

    # the slot is free again
    client.submit(schedule_task("A-2", "2026-12-01T09:30:00Z"))
    client.wait_for_status("A-2", "succeeded")


def test_cancelling_an_unknown_or_canceled_appointment_is_not_found(client, known_customer):
    client.submit(cancel_task("X-1", "A-404"))
    client.wait_for_status("X-1", "rejected")
    assert client.outcome("X-1") == ("appointment.rejected", {"reason": "not_found"})
    client.submit(schedule_task("A-1", "2026-12-01T09:00:00Z"))
    client.wait_for_status("A-1", "succeeded")
    client.submit(cancel_task("X-2", "A-1"))
    client.wait_for_status("X-2", "succeeded")
    client.submit(cancel_task("X-3", "A-1"))
    client.wait_for_status("X-3", "rejected")


def test_maintenance_rejects_a_busy_position(client, known_customer):
    client.submit(maintenance_task("M-1", "2026-12-01T10:00:00Z"))
    client.wait_for_status("M-1", "succeeded")
    client.submit(maintenance_task("M-2", "2026-12-01T11:00:00Z"))
    client.wait_for_status("M-2", "rejected")
    assert client.outcome("M-2") == ("maintenance.rejected", {"reason": "position_busy"})
    client.submit(maintenance_task("M-3", "2026-12-01T11:00:00Z", position="bay-2"))
    client.wait_for_status("M-3", "succeeded")


def test_a_job_linked_to_an_appointment_canceled_before_it_is_booked(client, known_customer):
    """CONTRACT §3 has maintenance.schedule end scheduled or position_busy: a cancel accepted
    before the job has nothing of it to cancel."""
    client.submit(schedule_task("A-1", "2026-12-01T09:00:00Z"))
    client.wait_for_status("A-1", "succeeded")
    client.submit(cancel_task("X-1", "A-1"))
    client.wait_for_status("X-1", "succeeded")
    client.submit(maintenance_task("M-1", "2026-12-01T10:00:00Z", appointment_task_id="A-1"))
    client.wait_for_status("M-1", "succeeded")
    assert client.outcome("M-1")[0] == "maintenance.scheduled"


ADA = Customer("acme", "C-42", "Ada", "ada@example.com", version=1, seq=1)
GRACE = Customer("acme", "C-9", "Grace", "grace@example.com", version=1, seq=1)


def linked_job(task_id, seq, customer=ADA):
    """A maintenance.schedule linked to A-1, at its place seq in its customer's order."""
    task = maintenance_task(
        task_id, f"2026-12-01T{8 + seq}:00:00Z", customer_id=customer.customer_id, appointment_task_id="A-1"
    )
    payload = {"customer_id": customer.customer_id, **task["payload"], "order": {"seq": seq, "upserts": 1}}
    return Envelope(task["type"], task_id, uuid.uuid4(), "acme", payload)


def canceled_event(seq=4):
    """appointment.canceled of X-1, C-42's cancel of A-1 at place seq (None: as an earlier release)."""
    payload = {"appointment_id": str(uuid.uuid4()), "appointment_task_id": "A-1", "customer_id": "C-42"}
    if seq is not None:
        payload["order"] = {"seq": seq, "upserts": 1}
    return Envelope(vocabulary.APPOINTMENT_CANCELED, "X-1", uuid.uuid4(), "acme", payload)


def decided(database_url, steps):
    """The maintenance handlers run in this order, one transaction each as a consumer runs them:
    the jobs' statuses and every result as (task_id, outcome)."""
    engine = make_engine(database_url)
    results = []
    for step in steps:
        with engine.begin() as connection:
            results += [(result.task_id, result.payload["outcome"]) for result in step(connection)]
    with engine.connect() as connection:
        statuses = dict(connection.execute(select(jobs.c.task_id, jobs.c.status)).all())
    engine.dispose()
    return statuses, sorted(results)


def schedule(job, customer=ADA):
    return lambda connection: maintenance_handlers.schedule_maintenance(connection, job, customer)


def cancel(event):
    return lambda connection: maintenance_handlers.when_appointment_canceled(connection, event)


@pytest.mark.parametrize(
    ("job", "customer", "outcome"),
    [
        (linked_job("M-1", 3), ADA, "canceled"),  # accepted before the cancel: canceled by it
        (linked_job("M-2", 5), ADA, "active"),  # accepted after: stands
        (linked_job("M-9", 2, GRACE), GRACE, "active"),  # another customer's: the cancel is not its
    ],
    ids=["accepted-before-the-cancel", "accepted-after-the-cancel", "another-customers-job"],
)
@pytest.mark.parametrize("first", ["job", "cancel"])
def test_a_linked_job_ends_the_same_whichever_message_maintenance_decides_first(
    tmp_path, job, customer, outcome, first
):
    """The job's task and the cancel's appointment.canceled event reach maintenance on two queues,
    one hop apart: the job ends by the order in which they were accepted, not in which they come."""
    event = canceled_event(4)
    steps = [schedule(job, customer), cancel(event)]
    statuses, results = decided(sqlite_url(tmp_path), steps if first == "job" else steps[::-1])
    assert statuses == {job.task_id: outcome}
    expected = [(job.task_id, "maintenance.scheduled")]
    if outcome == "canceled":
        expected.append(("X-1", "maintenance.canceled"))
    assert results == sorted(expected)


def test_a_job_decided_after_the_cascade_of_a_later_cancel_names_its_own_message_as_the_cause(database_url):
    engine = make_engine(database_url)
    event, job = canceled_event(4), linked_job("M-1", 3)
    with engine.begin() as connection:
        maintenance_handlers.when_appointment_canceled(connection, event)
        _, canceled = maintenance_handlers.schedule_maintenance(connection, job, ADA)
    engine.dispose()
    assert (canceled.task_id, canceled.task_uuid) == ("X-1", event.task_uuid)
    assert canceled.payload["result"]["maintenance_task_id"] == "M-1"
    assert canceled.headers["x-causation-id"] == str(job.message_id)  # CONTRACT §1: a message sent


def test_a_cancel_of_an_earlier_release_cancels_the_jobs_decided_after_it(database_url):
    """Its event in flight at the upgrade carries no place, and a cancel recorded before migration
    0017 has none: as that release had it, no linked job stands after its appointment's cancel."""
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert(canceled_appointments).values(
                client_id="acme", appointment_task_id="A-0", canceled_by_task_id="X-0", canceled_at=utcnow()
            )
        )
    engine.dispose()
    before_0017 = linked_job("M-0", 3)
    before_0017.payload["appointment_task_id"] = "A-0"
    statuses, results = decided(
        database_url, [cancel(canceled_event(None)), schedule(linked_job("M-1", 3)), schedule(before_0017)]
    )
    assert statuses == {"M-0": "canceled", "M-1": "canceled"}
    assert ("X-1", "maintenance.canceled") in results  # the in-flight event's cancel is known by its task


def test_several_parked_tasks_of_one_customer_all_resume(client):
    for task_id in ("S-1", "S-2"):
        client.submit(survey_task(task_id, customer_id="C-8"))
    client.submit(schedule_task("A-8", "2026-12-01T09:00:00Z", customer_id="C-8"))
    for task_id in ("S-1", "S-2", "A-8"):
        client.wait_for_status(task_id, "waiting")
    client.submit(upsert_task("T-8", customer_id="C-8"))
    for task_id in ("S-1", "S-2", "A-8"):
        client.wait_for_status(task_id, "succeeded")
