"""Delivery against real local endpoints: retries until delivered, restarts, competing dispatchers,
ordering per task, no head-of-line blocking, replay (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway import deliveries as delivery_store
from gateway.callbacks import CallbackDispatcher
from gateway.tables import results
from messaging.db import make_engine
from messaging.wakeup import Wakeup
from tests.factories import register_client, wait_for
from tests.integration.delivery_support import delivery, results_for
from tests.receiver import Receiver

FAST = (0, 0.05, 0.05, 0.05, 0.05)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


class Running:
    """A dispatcher running in a thread, like the gateway worker runs it."""

    def __init__(self, engine, schedule=FAST, **options):
        self.stop = threading.Event()
        self.dispatcher = CallbackDispatcher(
            engine,
            Wakeup(),
            timeout=5,
            schedule=schedule,
            allow_private=True,
            idle_interval=0.05,
            rng=random.Random(3),
            **options,
        )
        self.thread = threading.Thread(target=self.dispatcher.run, args=(self.stop,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def delivered(engine, result_ids):
    return all(delivery(engine, result_id).status == "delivered" for result_id in result_ids)


def test_an_endpoint_that_fails_three_times_then_answers_gets_the_result_once(engine):
    with Receiver(lambda request, number: 503 if number <= 3 else 200) as receiver:
        register_client(engine, callback_url=receiver.url)
        [result_id] = results_for(engine, "acme", "T-1")
        with Running(engine):
            wait_for(lambda: delivered(engine, [result_id]))
    assert receiver.webhook_ids() == [str(result_id)] * 4
    with Session(engine) as session:
        found = delivery_store.find_delivery(session, "acme", result_id)
    assert [attempt["status_code"] for attempt in found["attempt_log"]] == [503, 503, 503, 200]
    assert found["attempts"] == 4


def test_a_dispatcher_stopped_mid_schedule_is_succeeded_by_another_and_delivers_once(engine):
    with Receiver(lambda request, number: 500 if number == 1 else 200) as receiver:
        register_client(engine, callback_url=receiver.url)
        [result_id] = results_for(engine, "acme", "T-1")
        with Running(engine, schedule=(0, 0.5)):
            wait_for(lambda: delivery(engine, result_id).attempts == 1)
        assert delivery(engine, result_id).status == "pending"  # stopped with a retry due
        with Running(engine, schedule=(0, 0.5)):
            wait_for(lambda: delivered(engine, [result_id]))
    assert len(receiver.requests) == 2
    assert delivery(engine, result_id).attempts == 2


def test_two_dispatchers_never_send_the_same_attempt_twice(engine):
    with Receiver(lambda request, number: 200) as receiver:
        register_client(engine, callback_url=receiver.url)
        made = [result_id for n in range(30) for result_id in results_for(engine, "acme", f"T-{n}")]
        with Running(engine), Running(engine):
            wait_for(lambda: delivered(engine, made), timeout=60)
    assert sorted(receiver.webhook_ids()) == sorted(str(result_id) for result_id in made)
    assert all(delivery(engine, result_id).attempts == 1 for result_id in made)


def test_results_of_one_task_are_delivered_in_the_order_they_occurred(engine):
    with Receiver(lambda request, number: 500 if number == 1 else 200) as receiver:
        register_client(engine, callback_url=receiver.url)
        earlier, later = results_for(engine, "acme", "T-1", count=2)
        with Running(engine, schedule=(0, 0.3)):
            wait_for(lambda: delivered(engine, [earlier, later]))
    # the later result waited while the earlier one was pending
    assert receiver.webhook_ids() == [str(earlier), str(earlier), str(later)]


def test_one_clients_hanging_endpoint_does_not_hold_up_another_client(engine):
    with Receiver() as stuck, Receiver() as fine:
        register_client(engine, "stuck", callback_url=stuck.url)
        register_client(engine, "fine", callback_url=fine.url)
        stuck_results = [r for n in range(6) for r in results_for(engine, "stuck", f"S-{n}")]
        fine_results = [r for n in range(4) for r in results_for(engine, "fine", f"F-{n}")]
        stuck.hold()
        with Running(engine, concurrency=4, per_client=2):
            wait_for(lambda: delivered(engine, fine_results), message="the other client's deliveries")
            assert stuck.max_in_flight <= 2  # the stuck client never had more than its share
            assert not any(delivery(engine, r).status == "delivered" for r in stuck_results)
            stuck.release()
            wait_for(lambda: delivered(engine, stuck_results), timeout=30)


def test_a_dead_delivery_is_replayed_with_the_same_webhook_id_and_a_fresh_schedule(engine):
    with Receiver(lambda request, number: 500 if number <= 2 else 200) as receiver:
        register_client(engine, callback_url=receiver.url)
        [result_id] = results_for(engine, "acme", "T-1")
        with Running(engine, schedule=(0, 0.05)):
            wait_for(lambda: delivery(engine, result_id).status == "failed")
            with Session(engine) as session, session.begin():
                assert delivery_store.replay(session, client_id="acme") == [result_id]
            wait_for(lambda: delivered(engine, [result_id]))
    assert receiver.webhook_ids() == [str(result_id)] * 3
    row = delivery(engine, result_id)
    assert (row.attempts, row.replayed_after_attempts) == (3, 2)


def test_replay_by_result_id_and_since(engine):
    with Receiver(lambda request, number: 200) as receiver:
        register_client(engine, callback_url=receiver.url)
        [old], [new] = results_for(engine, "acme", "T-1"), results_for(engine, "acme", "T-2")
        with Session(engine) as session, session.begin():
            session.execute(update(results).values(delivery_status="failed"))
            created = session.scalar(select(results.c.created_at).where(results.c.result_id == new))
            session.execute(
                update(results)
                .where(results.c.result_id == old)
                .values(created_at=created - timedelta(days=1))
            )
        with Session(engine) as session, session.begin():
            assert delivery_store.replay(session, client_id="acme", since=created) == [new]
            assert delivery_store.replay(session, result_id=old) == [old]
            assert delivery_store.replay(session, result_id=old) == []  # pending now: nothing to replay
        with Session(engine) as session:
            pending = delivery_store.list_deliveries(session, client_id="acme", status="pending")
        assert {row["result_id"] for row in pending} == {old, new}


def test_the_callback_url_is_checked_at_delivery_too(engine):
    with Receiver() as receiver:
        register_client(engine, callback_url=receiver.url)
        [result_id] = results_for(engine, "acme", "T-1")
        dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0, 60), allow_private=False)
        dispatcher.deliver_due()
    assert receiver.requests == []
    row = delivery(engine, result_id)
    assert row.status == "pending" and "non-public address" in row.last_error
