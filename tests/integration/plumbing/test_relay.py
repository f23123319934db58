"""The outbox relay, and the topology it publishes to, on the in-process broker and on RabbitMQ."""

import threading
import time
from datetime import timedelta

import amqp
import pytest
from kombu import Producer, Queue, binding
from sqlalchemy import text
from sqlalchemy.orm import Session

from contexts.survey import tables as survey_tables
from gateway import worker as gateway_worker
from messaging import broker, inproc, topology, vocabulary
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope
from messaging.outbox import add_raw_to_outbox, add_to_outbox
from messaging.relay import OutboxRelay, _take_statement
from messaging.wakeup import Wakeup
from taskgate.registry import NAMES
from taskgate.runtime import Runtime, declare_topology
from tests import backends
from tests.backends import sqlite_url
from tests.conftest import make_settings
from tests.integration.plumbing.support import (
    CUSTOMERS,
    count,
    declared,
    get_one,
    queue_is_drained,
    received_message_ids,
    upsert,
)


def test_the_relay_publishes_with_the_contract_properties_and_empties_the_outbox(
    engine, connection, broker_url
):
    task = upsert()
    effect = task.caused("customer.registered", {"customer_id": "C-1"})
    with Session(engine) as session, session.begin():
        add_to_outbox(session, CUSTOMERS.outbox, [task, effect])
    relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect(broker_url), Wakeup())
    assert relay.relay_batch() == 2
    assert count(engine, CUSTOMERS.outbox) == 0

    message = get_one(connection, CUSTOMERS.queue)
    assert message.properties["message_id"] == str(task.message_id)
    assert message.properties["correlation_id"] == str(task.task_uuid)
    assert message.content_type == "application/json"
    assert message.properties["delivery_mode"] == 2
    assert message.headers == {"x-task-id": "T-1", "x-task-uuid": str(task.task_uuid), "x-client-id": "acme"}
    assert Envelope.from_body(message.decode()) == task
    relay.broker.release()


def test_a_message_staged_again_keeps_its_message_id_on_the_broker(engine, connection, broker_url):
    """A replayed dead letter is a new outbox row, but the broker message is the one that died:
    its message_id property is its body's, as for every message (CONTRACT.md)."""
    task = upsert()
    with Session(engine) as session, session.begin():
        add_raw_to_outbox(session, CUSTOMERS.outbox, *vocabulary.route(task), task)
    relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect(broker_url), Wakeup())
    assert relay.relay_batch() == 1
    message = get_one(connection, CUSTOMERS.queue)
    assert message.properties["message_id"] == str(task.message_id)
    relay.broker.release()


def test_offered_rows_are_published_from_memory_and_deleted_in_one_statement(engine, connection, broker_url):
    """What a process offers goes out without reading its rows back; rows nobody offered wait for
    a sweep, which takes only rows older than sweep_after (younger ones have a live writer)."""
    with Session(engine) as session, session.begin():
        offered = add_to_outbox(session, CUSTOMERS.outbox, [upsert(task_id="T-1")])
        left = add_to_outbox(session, CUSTOMERS.outbox, [upsert(task_id="T-2")])  # its writer "died"
    relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect(broker_url, confirm_each=False))
    relay.offer(offered)
    assert relay.publish_offered() == 1
    assert count(engine, CUSTOMERS.outbox) == 2  # deleted in the next batch, not one by one
    relay.forget_published()
    assert count(engine, CUSTOMERS.outbox) == 1
    assert relay.relay_batch(older_than=timedelta(minutes=1)) == 0  # too young for a sweep
    assert relay.relay_batch() == 1
    assert count(engine, CUSTOMERS.outbox) == 0
    assert received_message_ids(connection, 2) == [str(row["message_id"]) for row in offered + left]
    relay.broker.release()


def test_an_offer_is_done_once_the_broker_has_confirmed_its_messages(engine, connection, broker_url):
    """The webhook waits for it before its 202: a task sent after that 202, through any webhook
    process, is published after this one."""
    with Session(engine) as session, session.begin():
        offered = add_to_outbox(session, CUSTOMERS.outbox, [upsert(task_id="T-1")])
    relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect(broker_url, confirm_each=False))
    published = relay.offer(offered)
    assert not published.done.is_set()
    assert relay.publish_offered() == 1
    assert published.wait(10)
    assert received_message_ids(connection, 1) == [str(offered[0]["message_id"])]
    relay.broker.release()


def test_an_offer_the_broker_failed_goes_first_in_the_next_try(engine):
    """RabbitMQ: an offer is done only once the broker has its messages; one whose publish failed
    is published first when the relay tries again (on a fresh connection, as its loop does)."""
    url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    backends.empty_broker(url)
    with declared(url) as connection:
        with Session(engine) as session, session.begin():
            rows = add_to_outbox(session, CUSTOMERS.outbox, [upsert(task_id="T-1"), upsert(task_id="T-2")])
        relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect(url, confirm_each=False))
        try:
            relay.broker.default_channel.basic_qos(0, 1, False)  # connected
            relay.broker.connection.sock.close()  # as if the broker had gone away
            failed = relay.offer(rows[:1])
            with pytest.raises(OSError):
                relay.publish_offered()
            later = relay.offer(rows[1:])
            assert not failed.done.is_set()
            assert later.since == failed.since  # its wait is bounded from the failed one's
            relay.broker.collect()
            assert relay.publish_offered() == 2
            assert failed.done.is_set() and later.done.is_set()
            assert received_message_ids(connection, 2) == [str(row["message_id"]) for row in rows]
        finally:
            relay.broker.release()


def test_a_stuck_relay_keeps_a_later_offer_waiting_no_longer_than_the_first(engine, broker_url):
    """The wait counts from the oldest offer the relay has not finished: while the broker blocks
    publishers, only the first requests wait out their bound, not every request."""
    with Session(engine) as session, session.begin():
        rows = add_to_outbox(session, CUSTOMERS.outbox, [upsert(task_id="T-1"), upsert(task_id="T-2")])
    relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect(broker_url, confirm_each=False))
    first = relay.offer(rows[:1])  # the relay does not run: nothing is published
    assert not first.wait(0.5)
    later = relay.offer(rows[1:])
    assert later.since == first.since
    assert later.since + 0.5 <= time.monotonic()  # its bound has passed already: it does not wait
    assert not later.wait(0.5)
    assert relay.publish_offered() == 2
    assert first.done.is_set() and later.done.is_set()
    relay.broker.release()


def staged(engine, number: int) -> list[Envelope]:
    """number customer.upsert messages in the customers' outbox, in order."""
    tasks = [upsert(task_id=f"T-{n}") for n in range(number)]
    with Session(engine) as session, session.begin():
        add_to_outbox(session, CUSTOMERS.outbox, tasks)
    return tasks


def relay_to(engine, broker_url, batch_size: int) -> OutboxRelay:
    connection = broker.connect(broker_url, confirm_each=False)
    return OutboxRelay(engine, CUSTOMERS.outbox, connection, Wakeup(), batch_size=batch_size)


def test_the_relay_confirms_whole_batches_and_every_message_arrives_once(engine, connection, broker_url):
    tasks = staged(engine, 250)
    relay = relay_to(engine, broker_url, batch_size=100)
    assert [relay.relay_batch() for _ in range(4)] == [100, 100, 50, 0]
    assert count(engine, CUSTOMERS.outbox) == 0
    assert received_message_ids(connection, len(tasks)) == [str(t.message_id) for t in tasks]
    relay.broker.release()


def test_the_relay_declares_its_exchange_again_on_a_new_connection(engine):
    """RabbitMQ: an exchange is declared once per connection, not with every message; a relay
    that starts over on a fresh connection (as after a failure) declares it again, so a broker
    that lost it (or a vhost made anew) does not close the channel on the next publish."""
    url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    backends.empty_broker(url)
    declare_topology(url)
    relay = relay_to(engine, url, batch_size=100)
    try:
        staged(engine, 2)
        assert relay.relay_batch() == 2
        with broker.connect(url) as elsewhere:
            elsewhere.default_channel.exchange_delete(topology.tasks.name)
        relay.broker.collect()  # what the relay does after a failure
        staged(engine, 3)
        assert relay.relay_batch() == 3  # confirmed: the exchange was there again
        assert count(engine, CUSTOMERS.outbox) == 0
    finally:
        relay.broker.release()
        declare_topology(url)  # the exchange's bindings, for the tests after this one


def test_the_topology_is_declared_even_if_the_broker_drops_the_connection_meanwhile(monkeypatch, caplog):
    """RabbitMQ: a starting broker may take a connection and then drop it (as in the fault test of
    a broker restart, where a worker starting then crashed); the declaration starts over."""
    url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    backends.empty_broker(url)
    declared = amqp.Channel.exchange_declare
    dropped = []

    def dropped_once(channel, *args, **kwargs):
        if not dropped:
            dropped.append(channel)
            raise ConnectionResetError(104, "Connection reset by peer")
        return declared(channel, *args, **kwargs)

    monkeypatch.setattr(amqp.Channel, "exchange_declare", dropped_once)
    declare_topology(url)
    monkeypatch.undo()
    assert dropped and "broker unreachable (" in caplog.text
    with broker.connect(url) as connection:  # passive: fails unless they exist
        for exchange in topology.EXCHANGES.values():
            exchange(connection.default_channel).declare(passive=True)
        for queue in [CUSTOMERS.queue, topology.dead_letters]:
            queue(connection.default_channel).queue_declare(passive=True)


def test_a_batch_the_broker_does_not_confirm_stays_in_the_outbox(engine, connection, broker_url, monkeypatch):
    staged(engine, 3)
    relay = relay_to(engine, broker_url, batch_size=100)

    def no_confirm():
        raise OSError("connection lost before the confirms")

    with monkeypatch.context() as patched:
        patched.setattr(relay._confirms, "wait", no_confirm)
        with pytest.raises(OSError):
            relay.relay_batch()
    assert count(engine, CUSTOMERS.outbox) == 3  # rolled back: nothing is lost
    assert relay.relay_batch() == 3
    assert count(engine, CUSTOMERS.outbox) == 0
    relay.broker.release()


def test_relays_running_at_once_publish_each_message_once(database_url, connection, broker_url):
    """Each relay takes its own rows (on PostgreSQL, FOR UPDATE SKIP LOCKED; SQLite: one writer)."""
    engine = make_engine(database_url)
    tasks = staged(engine, 300)
    relays = [relay_to(engine, broker_url, batch_size=20) for _ in range(3)]
    failures = []

    def relay_all(relay):
        try:
            while relay.relay_batch():
                pass
        except Exception as error:  # reported below, with the others' outcome
            failures.append(error)

    threads = [threading.Thread(target=relay_all, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads) and not failures
    assert count(engine, CUSTOMERS.outbox) == 0
    assert sorted(received_message_ids(connection, len(tasks))) == sorted(str(t.message_id) for t in tasks)
    assert queue_is_drained(connection)  # and nothing twice
    for relay in relays:
        relay.broker.release()
    engine.dispose()


def test_a_relay_takes_its_batch_in_one_pass_whatever_the_statistics(postgres_database):
    """PostgreSQL, with planner statistics taken while the outbox was empty (a backlog builds
    faster than autovacuum analyses): taking a batch runs each step of its plan once, rather than
    the batch's query again for every row it takes."""
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    try:
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
        staged(engine, 1000)
        take = _take_statement(CUSTOMERS.outbox, 100, keep=False, locking=True).compile(engine)
        with engine.connect() as connection, connection.begin():
            [[plan]] = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {take.string}", {**take.params, "before": utcnow()}
            ).one()
            connection.rollback()

        def loops(node):
            return [node["Actual Loops"]] + [n for child in node.get("Plans", []) for n in loops(child)]

        assert plan["Plan"]["Actual Rows"] == 100
        assert max(loops(plan["Plan"])) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "keep",
    # The time since the process stopped says nothing of whether a kept message was handled.
    [timedelta(hours=1), timedelta(microseconds=1)],
    ids=["back-within-the-keep", "back-after-it"],
)
def test_the_in_process_broker_gets_kept_messages_again_after_a_restart(engine, keep):
    declare_topology("memory://")
    task = upsert()
    with Session(engine) as session, session.begin():
        add_to_outbox(session, CUSTOMERS.outbox, [task])
    relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect("memory://"), Wakeup(), keep_published=keep)
    assert relay.relay_batch() == 1
    assert relay.relay_batch() == 0  # kept, but not pending
    assert count(engine, CUSTOMERS.outbox) == 1

    inproc.reset()  # the process died with the message still in the broker's memory
    declare_topology("memory://")
    assert relay.republish_kept() == 1
    assert relay.relay_batch() == 1
    with broker.connect("memory://") as connection:
        assert get_one(connection, CUSTOMERS.queue).properties["message_id"] == str(task.message_id)
    relay.broker.release()


def test_kept_messages_are_forgotten_after_their_time(engine):
    with Session(engine) as session, session.begin():
        add_to_outbox(session, CUSTOMERS.outbox, [upsert()])
    relay = OutboxRelay(
        engine,
        CUSTOMERS.outbox,
        broker.connect("memory://"),
        Wakeup(),
        keep_published=timedelta(microseconds=1),
    )
    declare_topology("memory://")
    assert relay.relay_batch() == 1
    assert relay.purge_kept() == 1
    assert count(engine, CUSTOMERS.outbox) == 0
    relay.broker.release()


def test_a_task_no_context_takes_is_dead_lettered_not_dropped(connection):
    Producer(connection.default_channel).publish(
        b"{}", exchange=topology.tasks, routing_key="nobody.listens", content_type="application/json"
    )
    dead = get_one(connection, topology.dead_letters)
    assert dead.delivery_info["routing_key"] == "nobody.listens"


def test_an_earlier_releases_binding_of_the_gateways_queue_to_every_result_is_removed(engine, broker_url):
    """An earlier release bound the gateway's queue to every result ("#") and published results
    recorded in place under "handled.": declaring the topology unbinds "#", so such a message left
    in an outbox passes the queue by, while a result reaches it as ever."""
    with broker.connect(broker_url) as connection:
        earlier = Queue(
            gateway_worker.QUEUE.name,
            bindings=[binding(topology.results, routing_key="#")],
            durable=True,
            queue_arguments=gateway_worker.QUEUE.queue_arguments,
        )
        earlier(connection.default_channel).declare()
    task = upsert()
    sent = vocabulary.result(task, context="customers", outcome="customer.registered", status="succeeded")
    recorded = vocabulary.result(task, context="customers", outcome="customer.updated", status="succeeded")
    declare_topology(broker_url)
    with broker.connect(broker_url) as connection:
        with Session(engine) as session, session.begin():
            add_raw_to_outbox(
                session,
                CUSTOMERS.outbox,
                topology.results.name,
                "handled.customers.customer.updated",
                recorded,
            )
            add_to_outbox(session, CUSTOMERS.outbox, [sent])
        relay = OutboxRelay(engine, CUSTOMERS.outbox, broker.connect(broker_url), Wakeup())
        assert relay.relay_batch() == 2
        relay.broker.release()
        assert get_one(connection, gateway_worker.QUEUE).properties["message_id"] == str(sent.message_id)
        _, waiting, _ = gateway_worker.QUEUE(connection.default_channel).queue_declare(passive=True)
        assert waiting == 0


@pytest.mark.parametrize(("contexts", "sweeps"), [(NAMES, True), (["survey"], False)], ids=["every", "some"])
def test_on_the_in_process_broker_only_a_process_with_every_context_sweeps(tmp_path, contexts, sweeps):
    """A process without every context, alone with the in-process broker, would publish others'
    rows where nobody reads, and keep them marked published, out of their own sweeps."""
    url = sqlite_url(tmp_path)
    engine = make_engine(url)
    runtime = Runtime(make_settings(url), engine)
    runtime.start(contexts)
    try:
        assert (runtime.relay(survey_tables.outbox).sweep_after is not None) == sweeps
    finally:
        runtime.stop()
        engine.dispose()
