"""Visits proven end to end: 500 visits compete for few desk slots and workshop positions, some
canceled right behind their booking, delivered reordered and duplicated; on PostgreSQL + RabbitMQ
with two worker processes for each of visits, appointment and maintenance, some killed (-9) mid-run;
and a side stopped before it answers, so that holds expire. When all is quiet, the visit checker
(taskgate.visit_check) finds every visit booked on both sides or on neither."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.tables import results, tasks
from messaging.db import make_engine
from taskgate.registry import NAMES
from taskgate.runtime import Runtime, declare_topology
from taskgate.visit_check import check_visits
from tests import backends
from tests.conftest import make_settings
from tests.e2e.helpers import BIN, Process, environment, run
from tests.e2e.order_scenario import accept_in_order, deliver_shuffled
from tests.e2e.visit_scenario import CANCELED_RIGHT_AWAY, VISITS, Duplicator, customers, visit_sequence
from tests.factories import register_client, visit_task, wait_for
from tests.faults.system import outcomes, wait_until_settled
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

WORKERS = {"gateway": 1, "customers": 1, "visits": 2, "appointment": 2, "maintenance": 2}


def verify(engine, receiver: Receiver) -> dict:
    callbacks = [json.loads(request["body"])["data"] for request in receiver.requests]
    with engine.connect() as connection:
        report = check_visits(connection, callbacks)
    print(f"\n{report.summary()}")
    assert report.ok, "\n".join(report.problems[:20])
    assert report.checked["visit.book tasks"] == VISITS
    assert report.checked["visits"] == VISITS
    return report.checked


def booked_and_rejected(engine) -> dict[str, int]:
    found = {}
    for task_id, results_of in outcomes(engine).items():
        if task_id.startswith("V-"):
            [(_, outcome)] = results_of
            found[outcome] = found.get(outcome, 0) + 1
    return found


def settle(engine, broker_url, rng, sequence) -> None:
    deliver_shuffled(accept_in_order(engine, sequence), broker_url, rng)
    wait_until_settled(engine, [task["task_id"] for task in sequence], timeout=300)


def test_visits_embedded(tmp_path):
    database_url, broker_url = backends.sqlite_url(tmp_path), "memory://"
    backends.empty_broker(broker_url)
    settings = make_settings(database_url, broker_url, callback_retry_schedule=(0, 0.2, 0.5, 1))
    engine = make_engine(database_url)
    rng = random.Random(30)
    with Receiver() as receiver:
        register_client(engine, callback_url=receiver.url)
        declare_topology(broker_url)
        runtime = Runtime(settings, engine)
        runtime.start(NAMES)
        try:
            settle(engine, broker_url, rng, customers())
            settle(engine, broker_url, rng, visit_sequence(rng))
        finally:
            runtime.stop()
        checked = verify(engine, receiver)
        assert checked["cancels after their visit"] == CANCELED_RIGHT_AWAY
        found = booked_and_rejected(engine)
        assert found["visit.booked"] > 20 and found["visit.rejected"] > 100, found  # both, many
        # The same check as an operator runs it.
        log = tmp_path / "callbacks.jsonl"
        log.write_bytes(b"\n".join(request["body"] for request in receiver.requests))
        env = environment(TASKGATE_DATABASE_URL=database_url)
        printed = run([str(BIN / "taskgate"), "check-visits", "--callbacks", str(log)], env)
        assert printed.startswith("visit check: visit.book tasks 500") and printed.endswith(": OK\n")
    engine.dispose()


def results_stored(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(results))


class Deployment:
    """Worker processes by context on PostgreSQL + RabbitMQ."""

    def __init__(self, tmp_path, env):
        self.tmp_path, self.env = tmp_path, env
        self.processes: list[Process] = []

    def start(self, context: str) -> Process:
        log = self.tmp_path / f"{context}-{len(self.processes)}.log"
        process = Process([str(BIN / "taskgate"), "worker", "--context", context], self.env, log)
        self.processes.append(process)
        return process

    def kill_one(self, context: str, rng: random.Random) -> None:
        """kill -9 one worker of context, and start another in its place."""
        victim = rng.choice([p for p in self.processes if p.log_path.name.startswith(f"{context}-")])
        victim.process.kill()
        victim.process.wait(10)
        victim.stop()
        self.processes.remove(victim)
        self.start(context)

    def stop(self) -> list[int]:
        return [process.stop() for process in self.processes]


@pytest.fixture
def split(tmp_path, postgres_database):
    broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    postgres_database.empty()
    backends.empty_broker(broker_url)

    def deploy(**settings):
        env = environment(
            TASKGATE_DATABASE_URL=postgres_database.url,
            TASKGATE_BROKER_URL=broker_url,
            TASKGATE_CALLBACK_RETRY_SCHEDULE="0,0.2,0.5,1,2",
            TASKGATE_LOG_LEVEL="WARNING",
            **settings,
        )
        return Deployment(tmp_path, env)

    engine = make_engine(postgres_database.url)
    declare_topology(broker_url)
    yield engine, broker_url, deploy
    engine.dispose()


@pytest.mark.concurrency
def test_visits_on_many_workers_with_duplicates_and_kills(split):
    engine, broker_url, deploy = split
    deployment = deploy()
    rng = random.Random(31)
    with Receiver() as receiver, Duplicator(broker_url, random.Random(32)) as duplicator:
        register_client(engine, callback_url=receiver.url)
        try:
            for context, count in WORKERS.items():
                for _ in range(count):
                    deployment.start(context)
            settle(engine, broker_url, rng, customers())
            sequence = visit_sequence(rng)
            deliver_shuffled(accept_in_order(engine, sequence), broker_url, rng)
            wait_for(
                lambda: results_stored(engine) >= 100 + len(sequence) // 4, timeout=180, message="a quarter"
            )
            deployment.kill_one("visits", rng)
            deployment.kill_one(rng.choice(["appointment", "maintenance"]), rng)
            wait_for(
                lambda: results_stored(engine) >= 100 + len(sequence) // 2, timeout=180, message="a half"
            )
            deployment.kill_one("visits", rng)
            wait_until_settled(engine, [task["task_id"] for task in sequence], timeout=300)
        finally:
            codes = deployment.stop()
        checked = verify(engine, receiver)
        assert checked["cancels after their visit"] == CANCELED_RIGHT_AWAY
        assert duplicator.duplicated > 100
    found = booked_and_rejected(engine)
    assert found.get("visit.booked", 0) > 20 and found.get("visit.rejected", 0) > 100, found
    assert codes == [0] * len(codes), "\n".join(p.output()[-2000:] for p in deployment.processes)


@pytest.mark.concurrency
def test_holds_expire_when_a_side_does_not_answer_in_time(split):
    """The workshop is down: the desk's holds expire after the TTL (2 s here) and are released by
    the desk itself; once the workshop is back it holds nothing for good, and every visit ends
    rejected as reservation_expired with nothing left held or booked."""
    engine, broker_url, deploy = split
    deployment = deploy(TASKGATE_RESERVATION_TTL_SECONDS="2")
    rng = random.Random(33)
    with Receiver() as receiver:
        register_client(engine, callback_url=receiver.url)
        try:
            for context in ("gateway", "customers", "visits", "appointment"):
                deployment.start(context)
            settle(engine, broker_url, rng, customers()[:5])
            day = "2027-03-0{}T09:00:00+00:00"
            sequence = [visit_task(f"V-{n}", day.format(n + 1), customer_id=f"C-{n}") for n in range(5)]
            deliver_shuffled(accept_in_order(engine, sequence), broker_url, rng, duplicated=0)

            def desk_expired():
                with engine.connect() as connection:
                    from contexts.appointment.tables import visit_holds

                    states = connection.scalars(select(visit_holds.c.state)).all()
                return len(states) == 5 and set(states) == {"expired"}

            wait_for(desk_expired, timeout=60, message="the desk's holds to expire")
            with Session(engine) as session:
                waiting = session.scalar(
                    select(func.count()).select_from(tasks).where(tasks.c.status.in_(("accepted", "waiting")))
                )
            assert waiting == 5  # no answer to the client before the other side has released
            deployment.start("maintenance")
            wait_until_settled(engine, [task["task_id"] for task in sequence], timeout=120)
        finally:
            codes = deployment.stop()
        callbacks = [json.loads(request["body"])["data"] for request in receiver.requests]
        with engine.connect() as connection:
            report = check_visits(connection, callbacks)
        assert report.ok, report.problems
    for task_id, results_of in outcomes(engine).items():
        if task_id.startswith("V-"):
            assert results_of == [("visits", "visit.rejected")]
    with engine.connect() as connection:
        reasons = connection.scalars(select(results.c.result).where(results.c.context == "visits")).all()
    assert reasons == [{"reason": "reservation_expired"}] * 5
    assert codes == [0] * len(codes)
