import pytest
from marshmallow import ValidationError

from gateway.schemas import validate_task

VALID = {
    "customer.upsert": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "survey.assign": {"survey_id": "S-1", "due_date": "2026-12-01"},
    "appointment.schedule": {
        "resource_id": "R-1",
        "starts_at": "2026-12-01T09:00:00+01:00",
        "duration_minutes": 30,
    },
    "appointment.cancel": {"appointment_task_id": "T-1000"},
    "maintenance.schedule": {
        "vin": "WVWZZZ1JZXW000001",
        "position": "bay-3",
        "starts_at": "2026-12-01T09:00:00Z",
        "duration_minutes": 120,
        "appointment_task_id": "T-1000",
    },
}


def task(type_, payload=None, **changes):
    body = {"task_id": "T-1", "type": type_, "customer_id": "C-1", "payload": payload or VALID[type_]}
    body.update(changes)
    return body


def errors_of(body):
    with pytest.raises(ValidationError) as raised:
        validate_task(body)
    return raised.value.messages


@pytest.mark.parametrize("type_", sorted(VALID))
def test_each_task_type_accepts_a_valid_payload(type_):
    assert validate_task(task(type_)) == task(type_)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (task("customer.upsert", {"name": "", "email": "ada@example.com"}), "payload.name"),
        (task("customer.upsert", {"name": "x" * 201, "email": "ada@example.com"}), "payload.name"),
        (task("customer.upsert", {"name": "Ada", "email": "not-an-address"}), "payload.email"),
        (task("customer.upsert", {"name": "Ada"}), "payload.email"),
        (task("customer.upsert", {**VALID["customer.upsert"], "extra": 1}), "payload.extra"),
        (task("survey.assign", {"survey_id": "S-1", "due_date": "tomorrow"}), "payload.due_date"),
        (
            task(
                "appointment.schedule", {**VALID["appointment.schedule"], "starts_at": "2026-12-01T09:00:00"}
            ),
            "payload.starts_at",
        ),
        (
            task("appointment.schedule", {**VALID["appointment.schedule"], "duration_minutes": 4}),
            "payload.duration_minutes",
        ),
        (
            task("appointment.schedule", {**VALID["appointment.schedule"], "duration_minutes": 481}),
            "payload.duration_minutes",
        ),
        (
            task("appointment.schedule", {**VALID["appointment.schedule"], "duration_minutes": "30"}),
            "payload.duration_minutes",
        ),
        (task("appointment.cancel", {"appointment_task_id": " bad id"}), "payload.appointment_task_id"),
        (task("maintenance.schedule", {**VALID["maintenance.schedule"], "vin": "SHORT"}), "payload.vin"),
        (task("customer.upsert", task_id="-starts-with-dash"), "task_id"),
        (task("customer.upsert", task_id="x" * 129), "task_id"),
        (task("customer.upsert", type="customer.delete"), "type"),
        (task("customer.upsert", customer_id=""), "customer_id"),
        (task("customer.upsert", payload="not an object"), "payload"),
        ({"type": "customer.upsert"}, "task_id"),
    ],
)
def test_invalid_fields_are_named(body, field):
    assert field in errors_of(body)


def test_a_body_that_is_not_an_object():
    assert "_schema" in errors_of(["a", "list"])


@pytest.mark.parametrize("type_", ["appointment.schedule", "maintenance.schedule"])
def test_times_near_the_end_of_the_calendar_are_refused(type_):
    body = task(type_, {**VALID[type_], "starts_at": "9999-12-31T23:00:00+00:00"})
    assert "payload.starts_at" in errors_of(body)
