"""Many worker processes competing for one calendar on PostgreSQL + RabbitMQ: no double booking,
no limit passed, every task answered, whatever the interleaving."""

from __future__ import annotations

import collections
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contexts.appointment.tables import appointments
from contexts.appointment.tables import replica as appointment_replica
from contexts.maintenance.tables import jobs
from contexts.maintenance.tables import replica as maintenance_replica
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.tables import results, tasks
from messaging.db import make_engine
from tests import backends
from tests.e2e.helpers import BIN, Process, environment
from tests.factories import maintenance_task, register_client, schedule_task, upsert_task, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]

WORKERS_PER_CONTEXT = 4
CUSTOMERS = 10
WEEKLY_LIMIT = 12

# Contention: 20 one-hour slots on resource R-1, 10 on Tue 2026-12-01 and 10 on Tue 2026-12-08
# (under the weekly limit), each asked for by all 10 customers: 200 tasks, one winner per slot.
CONTESTED = {
    f"A-{s}-{c}": (s, datetime(2026, 12, 1 + 7 * (s // 10), 8 + s % 10, tzinfo=UTC), f"C-{c}")
    for s in range(20)
    for c in range(CUSTOMERS)
}
# Limits: resource R-2 gets 25 distinct half-hour slots in each of the 4 weeks from Mon 2026-12-14,
# sent as one burst in week order: all workers decide on one resource and week at the same time,
# and almost every booking wins until the weekly limit is reached by several workers at once.
LIMITED = {
    f"L-{w}-{k}": (
        w,
        datetime(2026, 12, 14, tzinfo=UTC) + timedelta(weeks=w, minutes=30 * k),
        f"C-{k % CUSTOMERS}",
    )
    for w in range(4)
    for k in range(25)
}
# Positions: 2 positions x 10 one-hour slots, each asked for by 10 cars: 200 tasks.
POSITIONS = {
    f"M-{p}-{s}-{c}": (f"bay-{p}", datetime(2026, 12, 1, 8 + s, tzinfo=UTC), f"C-{c}")
    for p in range(2)
    for s in range(10)
    for c in range(CUSTOMERS)
}


@pytest.fixture
def system(tmp_path, postgres_database):
    """gateway + customers + 4 appointment + 4 maintenance worker processes."""
    broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    postgres_database.empty()
    backends.empty_broker(broker_url)
    env = environment(
        TASKGATE_DATABASE_URL=postgres_database.url,
        TASKGATE_BROKER_URL=broker_url,
        TASKGATE_APPOINTMENT_WEEKLY_LIMIT=str(WEEKLY_LIMIT),
        TASKGATE_LOG_LEVEL="WARNING",
    )
    contexts = ["gateway", "customers"] + ["appointment", "maintenance"] * WORKERS_PER_CONTEXT
    processes = [
        Process([str(BIN / "taskgate"), "worker", "--context", name], env, tmp_path / f"{name}-{number}.log")
        for number, name in enumerate(contexts)
    ]
    engine = make_engine(postgres_database.url)
    register_client(engine)
    yield engine
    codes = [process.stop() for process in processes]
    engine.dispose()
    assert codes == [0] * len(processes), "\n".join(process.output()[-3000:] for process in processes)


def submit(engine, task_list):
    """Accept tasks as the webhook does, in one burst; the workers' relay sweeps their messages."""
    with Session(engine) as session, session.begin():
        for task in task_list:
            accept_task(session, "acme", task_uuid(DEFAULT_NAMESPACE, "acme", task["task_id"]), task)


def answers(engine, task_ids) -> dict[str, tuple[str, dict]]:
    """task_id -> (outcome, result), once every one of task_ids has its result."""

    def found():
        with Session(engine) as session:
            rows = session.execute(
                select(tasks.c.task_id, results.c.outcome, results.c.result)
                .join(results, results.c.task_uuid == tasks.c.task_uuid)
                .where(tasks.c.task_id.in_(list(task_ids)))
            ).all()
        return len(rows) == len(task_ids) and {row.task_id: (row.outcome, row.result) for row in rows}

    return wait_for(found, timeout=180, interval=0.5, message=f"{len(task_ids)} answers")


def count(engine, table, *where) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(table).where(*where))


def test_competing_bookings_on_many_workers(system):
    engine = system
    submit(
        engine,
        [upsert_task(f"C-{c}", customer_id=f"C-{c}", email=f"c{c}@example.com") for c in range(CUSTOMERS)],
    )
    wait_for(
        lambda: (
            count(engine, appointment_replica.customers) == CUSTOMERS
            and count(engine, maintenance_replica.customers) == CUSTOMERS
        ),
        timeout=60,
        message="customers replicated to appointment and maintenance",
    )

    submit(
        engine,
        [
            schedule_task(t, at.isoformat(), customer_id=c, resource_id="R-2", minutes=30)
            for t, (_, at, c) in LIMITED.items()
        ],
    )
    burst = [schedule_task(t, at.isoformat(), customer_id=c) for t, (_, at, c) in CONTESTED.items()] + [
        maintenance_task(t, at.isoformat(), position=p, customer_id=c, minutes=60)
        for t, (p, at, c) in POSITIONS.items()
    ]
    # Interleaved, so that workers decide on different slots of one resource at the same moment.
    random.Random(7).shuffle(burst)
    submit(engine, burst)

    contested = answers(engine, CONTESTED)
    winners = collections.Counter(
        CONTESTED[t][0] for t, (outcome, _) in contested.items() if outcome.endswith("scheduled")
    )
    assert winners == dict.fromkeys(range(20), 1)
    losers = [result for outcome, result in contested.values() if outcome == "appointment.rejected"]
    assert len(losers) == 180 and all(result == {"reason": "resource_busy"} for result in losers)

    limited = answers(engine, LIMITED)
    booked = collections.Counter(
        LIMITED[t][0] for t, (outcome, _) in limited.items() if outcome.endswith("scheduled")
    )
    assert booked == dict.fromkeys(range(4), WEEKLY_LIMIT)
    refused = [result for outcome, result in limited.values() if outcome == "appointment.rejected"]
    assert len(refused) == len(LIMITED) - 4 * WEEKLY_LIMIT
    assert all(result == {"reason": "weekly_limit"} for result in refused)
    assert count(engine, appointments, appointments.c.status == "active") == 20 + 4 * WEEKLY_LIMIT

    worked = answers(engine, POSITIONS)
    taken = collections.Counter(
        POSITIONS[t][:2] for t, (outcome, _) in worked.items() if outcome.endswith("scheduled")
    )
    assert set(taken.values()) == {1} and len(taken) == 20
    rejected = [result for outcome, result in worked.values() if outcome == "maintenance.rejected"]
    assert len(rejected) == 180 and all(result == {"reason": "position_busy"} for result in rejected)
    assert count(engine, jobs, jobs.c.status == "active") == 20

    print(
        f"\nconcurrency: {len(contested)} contested appointments ({sum(winners.values())} won), "
        f"{len(limited)} against weekly limits ({sum(booked.values())} booked), {len(worked)} maintenance "
        f"jobs ({sum(taken.values())} booked); {WORKERS_PER_CONTEXT} workers per context; 0 lost, 0 doubled"
    )
