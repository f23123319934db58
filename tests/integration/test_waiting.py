"""Tasks that wait: one whose customer never arrives fails with unknown_customer after the wait
timeout; one whose customer's upsert was retried waits for nothing; one that waited for its
customer is decided before the tasks of its customer sent after it."""

import pytest

from tests.factories import schedule_task, survey_task, upsert_task
from tests.integration.conftest import CALLBACK_URL


@pytest.fixture
def context_environ():
    return {"TASKGATE_WAIT_TIMEOUT_SECONDS": "1"}


def test_a_parked_task_fails_after_the_timeout(client, callbacks):
    callbacks.post(CALLBACK_URL, status=204)
    client.submit(schedule_task("A-1", "2026-12-01T09:00:00Z", customer_id="C-nobody"))
    waiting = client.wait_for_status("A-1", "waiting")
    assert waiting["waiting_reason"] == "unknown_customer"
    task = client.wait_for_status("A-1", "failed")
    assert task["waiting_reason"] is None
    [result] = task["results"]
    assert (result["context"], result["outcome"], result["status"]) == (
        "appointment",
        "appointment.failed",
        "failed",
    )
    assert result["result"] == {"reason": "unknown_customer"}


def test_a_retried_upsert_holds_back_none_of_its_customers_later_tasks(client, callbacks):
    callbacks.post(CALLBACK_URL, status=204)
    client.submit(upsert_task("T-1", customer_id="C-7"))
    assert client.submit(upsert_task("T-1", customer_id="C-7")).status_code == 200  # a retry
    client.submit(survey_task("S-1", customer_id="C-7"))
    task = client.wait_for_results("S-1", 1)
    assert client.outcome("S-1")[0] == "survey.assigned", task


def test_a_task_that_waited_for_its_customer_is_not_overtaken_by_a_later_one(client, callbacks):
    # Each customer is registered, then gets two appointments at the same hour on two resources,
    # back to back: the first often reaches the appointment context before the customer does and
    # waits; the second must not be decided before it (it would take the customer's hour).
    callbacks.post(CALLBACK_URL, status=204)
    customers = [f"C-{number}" for number in range(10)]
    for customer in customers:
        client.submit(upsert_task(f"T-{customer}", customer_id=customer))
        for choice in (1, 2):
            starts = "2027-01-04T09:00:00Z"
            resource = f"R-{customer}-{choice}"
            client.submit(
                schedule_task(f"A-{customer}-{choice}", starts, customer_id=customer, resource_id=resource)
            )
    outcomes = {}
    for customer in customers:
        for choice in (1, 2):
            client.wait_for_results(f"A-{customer}-{choice}", 1)
            outcomes[customer, choice] = client.outcome(f"A-{customer}-{choice}")[0]
    assert set(outcomes.values()) == {"appointment.scheduled", "appointment.rejected"}
    assert [customer for customer in customers if outcomes[customer, 1] != "appointment.scheduled"] == []
