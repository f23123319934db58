"""Appointment limits from the environment, through the running system."""

import pytest

from tests.factories import schedule_task, upsert_task
from tests.integration.conftest import CALLBACK_URL


@pytest.fixture
def context_environ():
    return {"TASKGATE_APPOINTMENT_WEEKLY_LIMIT": "2", "TASKGATE_APPOINTMENT_MONTHLY_LIMIT": "3"}


def test_weekly_then_monthly_limits_per_resource(client, callbacks):
    callbacks.post(CALLBACK_URL, status=204)
    client.submit(upsert_task())
    client.wait_for_status("T-1001", "succeeded")
    booked = {
        "A-1": "2026-12-01T09:00:00Z",  # week of Nov 30
        "A-2": "2026-12-02T09:00:00Z",  # same week: 2 of 2
        "A-3": "2026-12-03T09:00:00Z",  # same week: weekly limit
        "A-4": "2026-12-08T09:00:00Z",  # next week, December's 3rd: fine
        "A-5": "2026-12-15T09:00:00Z",  # December's 4th: monthly limit
        "A-6": "2027-01-05T09:00:00Z",  # January: fine
    }
    for task_id, starts_at in booked.items():
        client.submit(schedule_task(task_id, starts_at))
        client.wait_for_status(task_id, "rejected" if task_id in ("A-3", "A-5") else "succeeded")
    assert client.outcome("A-3") == ("appointment.rejected", {"reason": "weekly_limit"})
    assert client.outcome("A-5") == ("appointment.rejected", {"reason": "monthly_limit"})
