"""The database refuses double bookings even when the rules above it are bypassed."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from uuid6 import uuid7

from contexts.appointment.tables import appointments
from contexts.maintenance.tables import jobs
from messaging.db import make_engine, utcnow

NINE = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def appointment(task_id, start, *, customer="C-1", resource="R-1", status="active"):
    return {
        "appointment_id": uuid7(),
        "client_id": "acme",
        "task_id": task_id,
        "customer_id": customer,
        "resource_id": resource,
        "starts_at": start,
        "ends_at": start + timedelta(hours=1),
        "status": status,
        "created_at": utcnow(),
    }


def job(task_id, start, *, position="bay-1"):
    return {
        "job_id": uuid7(),
        "client_id": "acme",
        "task_id": task_id,
        "customer_id": "C-1",
        "vin": "WVWZZZ1JZXW000001",
        "position": position,
        "starts_at": start,
        "ends_at": start + timedelta(hours=1),
        "status": "active",
        "created_at": utcnow(),
    }


def insert(engine, table, *rows):
    with Session(engine) as session, session.begin():
        for row in rows:
            session.execute(table.insert().values(**row))


@pytest.mark.parametrize(
    "second",
    [
        appointment("A-2", NINE + timedelta(minutes=30), customer="C-2"),  # same resource
        appointment("A-2", NINE + timedelta(minutes=30), resource="R-2"),  # same customer
    ],
    ids=["resource", "customer"],
)
def test_overlapping_active_appointments_are_refused(engine, second):
    insert(engine, appointments, appointment("A-1", NINE))
    with pytest.raises(IntegrityError):
        insert(engine, appointments, second)


def test_back_to_back_and_canceled_appointments_are_allowed(engine):
    insert(
        engine,
        appointments,
        appointment("A-1", NINE),
        appointment("A-2", NINE + timedelta(hours=1)),
        appointment("A-3", NINE, customer="C-2", status="canceled"),
    )


def test_overlapping_active_jobs_on_a_position_are_refused(engine):
    insert(engine, jobs, job("M-1", NINE), job("M-2", NINE, position="bay-2"))
    with pytest.raises(IntegrityError):
        insert(engine, jobs, job("M-3", NINE + timedelta(minutes=59)))
