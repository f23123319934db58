"""Order per customer, proven end to end: a client's tasks sent back to back reach the contexts
reordered and duplicated (and, on PostgreSQL + RabbitMQ, several workers per context, one of them
killed mid-run), and still nothing the client sent earlier is overtaken by what it sent later:
every invitation goes to the email sent just before it, every customer ends as its last upsert
says, every appointment whose cancel was accepted ends canceled (taskgate.order_check)."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.tables import results
from messaging.db import make_engine
from taskgate.order_check import check_order
from taskgate.registry import NAMES
from taskgate.runtime import Runtime, declare_topology
from tests import backends
from tests.conftest import make_settings
from tests.e2e.helpers import BIN, Process, environment, run
from tests.e2e.order_scenario import (
    CANCELS,
    PAIRS,
    TRIPLES,
    accept_in_order,
    client_sequence,
    deliver_shuffled,
    known_before,
)
from tests.factories import register_client, wait_for
from tests.faults.system import wait_until_settled
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

WORKERS_PER_CONTEXT = 2


def verify(engine, receiver: Receiver) -> None:
    callbacks = [json.loads(request["body"])["data"] for request in receiver.requests]
    with engine.connect() as connection:
        report = check_order(connection, callbacks)
    print(f"\n{report.summary()}")
    assert report.ok, "\n".join(report.problems[:20])
    assert report.checked["surveys on the email sent just before"] == PAIRS
    assert report.checked["customers"] == PAIRS + TRIPLES + CANCELS
    assert report.checked["appointments canceled"] == CANCELS


def settle(engine, broker_url: str, rng: random.Random, sequence: list[dict]) -> None:
    """Accept the tasks in order, deliver them shuffled and duplicated, wait until all is done."""
    deliver_shuffled(accept_in_order(engine, sequence), broker_url, rng)
    wait_until_settled(engine, [task["task_id"] for task in sequence], timeout=300)


def results_stored(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(results))


def test_order_per_customer_embedded(tmp_path):
    database_url, broker_url = backends.sqlite_url(tmp_path), "memory://"
    backends.empty_broker(broker_url)
    settings = make_settings(database_url, broker_url, callback_retry_schedule=(0, 0.2, 0.5, 1))
    engine = make_engine(database_url)
    rng = random.Random(20)
    with Receiver() as receiver:
        register_client(engine, callback_url=receiver.url)
        declare_topology(broker_url)
        runtime = Runtime(settings, engine)
        runtime.start(NAMES)
        try:
            settle(engine, broker_url, rng, known_before())  # every context's copy holds the old email
            settle(engine, broker_url, rng, client_sequence(rng))
        finally:
            runtime.stop()
        verify(engine, receiver)
        # The same check as an operator runs it.
        log = tmp_path / "callbacks.jsonl"
        log.write_bytes(b"\n".join(request["body"] for request in receiver.requests))
        env = environment(TASKGATE_DATABASE_URL=database_url)
        printed = run([str(BIN / "taskgate"), "check-order", "--callbacks", str(log)], env)
        assert printed.startswith(
            "order check: customers 500, copies 1500, surveys 200"
        ) and printed.endswith(": OK\n")
    engine.dispose()


@pytest.mark.concurrency
def test_order_per_customer_on_many_workers_with_a_kill(tmp_path, postgres_database):
    broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    postgres_database.empty()
    backends.empty_broker(broker_url)
    env = environment(
        TASKGATE_DATABASE_URL=postgres_database.url,
        TASKGATE_BROKER_URL=broker_url,
        TASKGATE_CALLBACK_RETRY_SCHEDULE="0,0.2,0.5,1,2",
        TASKGATE_LOG_LEVEL="WARNING",
    )
    engine = make_engine(postgres_database.url)
    rng = random.Random(21)
    processes: list[Process] = []

    def start(context: str) -> None:
        log = tmp_path / f"{context}-{len(processes)}.log"
        processes.append(Process([str(BIN / "taskgate"), "worker", "--context", context], env, log))

    with Receiver() as receiver:
        register_client(engine, callback_url=receiver.url)
        declare_topology(broker_url)
        try:
            for context in ("gateway", *[name for name in NAMES if name != "gateway"] * WORKERS_PER_CONTEXT):
                start(context)
            settle(engine, broker_url, rng, known_before())  # every context's copy holds the old email
            sequence = client_sequence(rng)
            deliver_shuffled(accept_in_order(engine, sequence), broker_url, rng)
            # Mid-run: kill -9 one context's worker while it is busy, and start another in its place.
            wait_for(
                lambda: results_stored(engine) >= len(sequence) // 4, timeout=120, message="a quarter done"
            )
            victim = rng.choice([p for p in processes if "gateway" not in p.log_path.name])
            victim.process.kill()
            victim.process.wait(10)
            victim.stop()
            processes.remove(victim)
            start(victim.log_path.name.split("-")[0])
            wait_until_settled(engine, [task["task_id"] for task in sequence], timeout=300)
        finally:
            codes = [process.stop() for process in processes]
        verify(engine, receiver)
    engine.dispose()
    assert codes == [0] * len(codes), "\n".join(process.output()[-2000:] for process in processes)
