"""One deadline per callback attempt: an endpoint answering a byte at a time is cut off at the
timeout, holds up nobody else, and does not keep a stopping dispatcher waiting."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.callbacks import CallbackDispatcher
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.results import record_result
from gateway.tables import delivery_attempts, results
from messaging import vocabulary
from messaging.db import make_engine
from messaging.envelope import Envelope
from messaging.wakeup import Wakeup
from tests.factories import register_client, upsert_task, wait_for
from tests.hostile_receiver import SLOW_BODY, SLOW_HEADERS, TricklingReceiver
from tests.receiver import Receiver

# Far beyond any timeout here: without the deadline, an attempt would last this long.
TRICKLE_SECONDS = 15
# Room for a loaded machine; still far short of TRICKLE_SECONDS.
MARGIN_MS = 3000


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def results_for(engine, client_id: str, count: int) -> list:
    """count results of as many tasks of client_id, due for delivery."""
    made = []
    for number in range(count):
        task_id = f"{client_id}-{number}"
        identity = task_uuid(DEFAULT_NAMESPACE, client_id, task_id)
        cause = Envelope("customer.upsert", task_id, identity, client_id, {})
        result = vocabulary.result(cause, context="customers", outcome="x", status="succeeded")
        with Session(engine) as session, session.begin():
            accept_task(session, client_id, identity, upsert_task(task_id))
            record_result(session, result)
        made.append(result.payload["result_id"])
    return made


def dispatcher(engine, timeout: float, **options) -> CallbackDispatcher:
    return CallbackDispatcher(
        engine,
        Wakeup(),
        timeout=timeout,
        schedule=(0, 60),
        allow_private=True,
        idle_interval=0.05,
        rng=random.Random(5),
        **options,
    )


def attempts_of(engine, client_id: str) -> list:
    with Session(engine) as session:
        return session.execute(
            select(delivery_attempts)
            .join(results, results.c.result_id == delivery_attempts.c.result_id)
            .where(results.c.client_id == client_id)
        ).all()


def statuses(engine, client_id: str) -> list[tuple[str, int]]:
    with Session(engine) as session:
        rows = session.execute(
            select(results.c.delivery_status, results.c.attempts).where(results.c.client_id == client_id)
        )
        return sorted(tuple(row) for row in rows)


def test_an_endpoint_trickling_its_headers_is_cut_off_at_the_deadline(engine):
    with TricklingReceiver(SLOW_HEADERS, give_up=TRICKLE_SECONDS) as receiver:
        register_client(engine, callback_url=receiver.url)
        results_for(engine, "acme", 1)
        assert dispatcher(engine, timeout=0.5).deliver_due(limit=1) == 1
        wait_for(lambda: receiver.count("hung up") == 1, message="the dispatcher to hang up")
    [attempt] = attempts_of(engine, "acme")
    assert attempt.status_code is None
    assert attempt.error == "the attempt took longer than 0.5 s"
    assert attempt.duration_ms <= 500 + MARGIN_MS
    assert statuses(engine, "acme") == [("pending", 1)]


def test_an_endpoint_trickling_its_body_is_cut_off_at_the_deadline_and_its_status_stands(engine):
    with TricklingReceiver(SLOW_BODY, give_up=TRICKLE_SECONDS) as receiver:
        register_client(engine, callback_url=receiver.url)
        results_for(engine, "acme", 1)
        dispatcher(engine, timeout=0.5).deliver_due(limit=1)
        wait_for(lambda: receiver.count("hung up") == 1, message="the dispatcher to hang up")
    [attempt] = attempts_of(engine, "acme")
    assert attempt.status_code == 200  # the endpoint took the result; only its body was cut off
    assert attempt.error == "the attempt took longer than 0.5 s"
    assert attempt.duration_ms <= 500 + MARGIN_MS
    assert statuses(engine, "acme") == [("delivered", 1)]


class Running:
    """A dispatcher running in a thread, like the gateway worker runs it."""

    def __init__(self, dispatcher: CallbackDispatcher):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=dispatcher.run, args=(self.stop,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_a_trickling_endpoint_does_not_hold_up_another_clients_callback(engine):
    with TricklingReceiver(give_up=TRICKLE_SECONDS) as slow, Receiver() as fine:
        register_client(engine, "slow", callback_url=slow.url)
        register_client(engine, "fine", callback_url=fine.url)
        results_for(engine, "slow", 1)
        with Running(dispatcher(engine, timeout=3, concurrency=2, per_client=1)):
            wait_for(lambda: slow.count("request") == 1, message="the slow endpoint's first request")
            results_for(engine, "fine", 1)
            wait_for(lambda: statuses(engine, "fine") == [("delivered", 1)], message="the other callback")
            assert slow.count("hung up") == 0  # delivered while the slow one's attempt was going on
            wait_for(lambda: attempts_of(engine, "slow"), message="the slow endpoint's attempt")
    assert slow.count("gave up") == 0
    [attempt] = attempts_of(engine, "slow")
    assert attempt.error == "the attempt took longer than 3 s"


def test_a_stopping_dispatcher_ends_its_attempt_in_flight_and_starts_no_other(engine):
    with TricklingReceiver(give_up=TRICKLE_SECONDS) as receiver:
        register_client(engine, callback_url=receiver.url)
        results_for(engine, "acme", 4)
        running = Running(dispatcher(engine, timeout=1, concurrency=1, per_client=1))
        with running:
            wait_for(lambda: receiver.count("request") == 1, message="the first attempt")
            running.stop.set()
            running.thread.join(TRICKLE_SECONDS / 2)
            assert not running.thread.is_alive()
    assert receiver.count("request") == 1  # the rest of the chunk was not attempted
    assert statuses(engine, "acme") == [("pending", 0)] * 3 + [("pending", 1)]
