"""Every task type through the running system, on SQLite + in-process broker and PostgreSQL + RabbitMQ."""

import json
import uuid

import pytest
from sqlalchemy import select

from contexts.maintenance import handlers as maintenance_handlers
from contexts.maintenance.tables import jobs
from contexts.replica import Customer
from messaging import vocabulary
from messaging.db import make_engine
from messaging.envelope import Envelope
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


def test_a_job_accepted_before_the_cancel_of_its_appointment_but_decided_after_it_is_canceled_too(
    database_url,
):
    """The job waited (for its customer, say) while the cancel's cascade ran: decided now, it is
    booked and canceled by that cancel, as if it had been decided first; a job accepted after the
    cancel is booked."""
    engine = make_engine(database_url)
    customer = Customer("acme", "C-42", "Ada", "ada@example.com", version=1, seq=1)

    def job(task_id, seq):
        task = maintenance_task(task_id, f"2026-12-01T{9 + seq}:00:00Z", appointment_task_id="A-1")
        payload = {"customer_id": "C-42", **task["payload"], "order": {"seq": seq, "upserts": 1}}
        return Envelope(task["type"], task_id, uuid.uuid4(), "acme", payload)

    cancel = Envelope(
        vocabulary.APPOINTMENT_CANCELED,
        "X-1",
        uuid.uuid4(),
        "acme",
        {"appointment_task_id": "A-1", "customer_id": "C-42", "order": {"seq": 4, "upserts": 1}},
    )
    with engine.begin() as connection:
        assert maintenance_handlers.when_appointment_canceled(connection, cancel) == []  # nothing booked yet
        before = maintenance_handlers.schedule_maintenance(connection, job("M-1", 3), customer)
        after = maintenance_handlers.schedule_maintenance(connection, job("M-2", 5), customer)
        statuses = dict(connection.execute(select(jobs.c.task_id, jobs.c.status)).all())
    assert [(result.task_id, result.payload["outcome"]) for result in before] == [
        ("M-1", "maintenance.scheduled"),
        ("X-1", "maintenance.canceled"),
    ]
    assert before[1].task_uuid == cancel.task_uuid
    assert before[1].payload["result"]["maintenance_task_id"] == "M-1"
    assert [(result.task_id, result.payload["outcome"]) for result in after] == [
        ("M-2", "maintenance.scheduled")
    ]
    assert statuses == {"M-1": "canceled", "M-2": "active"}
    engine.dispose()


def test_several_parked_tasks_of_one_customer_all_resume(client):
    for task_id in ("S-1", "S-2"):
        client.submit(survey_task(task_id, customer_id="C-8"))
    client.submit(schedule_task("A-8", "2026-12-01T09:00:00Z", customer_id="C-8"))
    for task_id in ("S-1", "S-2", "A-8"):
        client.wait_for_status(task_id, "waiting")
    client.submit(upsert_task("T-8", customer_id="C-8"))
    for task_id in ("S-1", "S-2", "A-8"):
        client.wait_for_status(task_id, "succeeded")
