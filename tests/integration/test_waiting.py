"""A task whose customer never arrives fails with unknown_customer after the wait timeout; one whose
customer's upsert was retried waits for nothing."""

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
