"""A task whose customer never arrives fails with unknown_customer after the wait timeout."""

import pytest

from tests.factories import schedule_task
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
