"""Outbox relay and message worker on the in-process broker and on RabbitMQ."""

import contextlib
import json
import threading
import uuid
from datetime import timedelta

import amqp
import pytest
from kombu import Producer
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from contexts.customers import tables as customers_tables
from contexts.customers.worker import spec as customers_spec
from messaging import broker, inproc, topology
from messaging.after_commit import after_commit
from messaging.consumer import MessageWorker, PermanentError
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope
from messaging.outbox import add_to_outbox
from messaging.relay import OutboxRelay, _take_statement
from messaging.wakeup import Wakeup
from taskgate.runtime import declare_topology
from tests import backends
from tests.backends import sqlite_url
from tests.factories import wait_for

CUSTOMERS = customers_spec({})


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(sqlite_url(tmp_path))
    yield engine
    engine.dispose()


@pytest.fixture
def connection(broker_url):
    declare_topology(broker_url)
    with broker.connect(broker_url) as connection:
        yield connection


def upsert(task_id="T-1", **payload):
    return Envelope(
        type="customer.upsert",
        task_id=task_id,
        task_uuid=uuid.uuid4(),
        client_id="acme",
        payload={"customer_id": "C-1", "name": "Ada", "email": "ada@example.com", **payload},
    )


def get_one(connection, queue, timeout=10):
    """The next raw message on queue (not decoded: it may be undecodable), acked."""
    received = []
    with connection.Consumer([queue], on_message=received.append, accept=["json"]):
        wait_for(
            lambda: _drain(connection) or received, timeout=timeout, message=f"a message on {queue.name}"
        )
    received[0].ack()
    return received[0]


def _drain(connection):
    with contextlib.suppress(TimeoutError):
        connection.drain_events(timeout=0.1)


def publish_raw(connection, envelope: Envelope, body=None, routing_key=None):
    Producer(connection.default_channel).publish(
        body if body is not None else json.dumps(envelope.to_body()).encode(),
        exchange=topology.tasks,
        routing_key=routing_key or envelope.type,
        content_type="application/json",
        content_encoding="utf-8",
        message_id=str(envelope.message_id),
        headers=envelope.headers,
    )


class RunningWorker:
    def __init__(self, broker_url, engine, handlers=None, **options):
        self.stop = threading.Event()
        self.worker = MessageWorker(
            broker.connect(broker_url),
            CUSTOMERS.queue,
            CUSTOMERS.handlers if handlers is None else handlers,
            engine,
            inbox=CUSTOMERS.inbox,
            outbox=CUSTOMERS.outbox,
            retry_delays=(0.01, 0.01),
            **options,
        )
        self.thread = threading.Thread(target=self.worker.run_until, args=(self.stop,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "worker did not stop"
        self.worker.connection.release()


def count(engine, table):
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(table))


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


def test_a_message_delivered_twice_has_one_effect(engine, connection, broker_url):
    task = upsert()
    with RunningWorker(broker_url, engine) as running:
        publish_raw(connection, task)
        publish_raw(connection, task)
        wait_for(lambda: running.worker.connection and count(engine, CUSTOMERS.inbox) == 1)
        wait_for(lambda: _queue_is_drained(connection), message="both deliveries acked")
    assert count(engine, customers_tables.customers) == 1
    assert count(engine, CUSTOMERS.outbox) == 2  # one event and one result, not two of each


def test_a_consumer_offers_its_relay_the_rows_it_wrote_once_committed(engine, connection, broker_url):
    offered: list[tuple[int, list[dict]]] = []  # rows committed in the outbox at each offer, and the offer
    publish = lambda rows: offered.append((count(engine, CUSTOMERS.outbox), rows))  # noqa: E731
    task = upsert()
    with RunningWorker(broker_url, engine, publish=publish):
        publish_raw(connection, task)
        wait_for(lambda: offered, message="an offer")
    [(committed, rows)] = offered
    assert committed == 2  # the event and the result, already committed when offered
    assert [row["body"]["type"] for row in rows] == ["customer.registered", "task.result"]
    assert all(row["body"]["causation_id"] == str(task.message_id) for row in rows)


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


def _queue_is_drained(connection):
    bound = CUSTOMERS.queue(connection.default_channel)
    _, messages, _ = bound.queue_declare(passive=True)
    return messages == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "undecodable"),
        (json.dumps({"type": "customer.upsert"}).encode(), "invalid envelope"),
        (json.dumps({**upsert().to_body(), "causation_id": 1}).encode(), "invalid envelope"),
    ],
    ids=["not-json", "missing-fields", "causation-not-a-string"],
)
def test_an_unreadable_message_is_dead_lettered_with_its_reason(engine, connection, broker_url, body, reason):
    with RunningWorker(broker_url, engine):
        publish_raw(connection, upsert(), body=body)
        dead = get_one(connection, topology.dead_letters)
    assert reason in dead.headers["x-taskgate-reason"]
    assert dead.headers["x-taskgate-queue"] == "taskgate.customers"
    assert (dead.body if isinstance(dead.body, bytes) else dead.body.encode()) == body


def test_a_failing_handler_is_retried_then_dead_lettered(engine, connection, broker_url):
    calls = []

    def broken(session, envelope):
        calls.append(envelope.message_id)
        raise RuntimeError("bug triggered by this payload")

    task = upsert()
    with RunningWorker(broker_url, engine, handlers={"customer.upsert": broken}):
        publish_raw(connection, task)
        dead = get_one(connection, topology.dead_letters)
    assert len(calls) == 3  # first try and two retries
    assert "RuntimeError: bug triggered by this payload" in dead.headers["x-taskgate-reason"]
    assert dead.headers["x-task-id"] == "T-1"
    assert count(engine, CUSTOMERS.inbox) == 0  # nothing of the failed attempts was committed


def test_a_permanent_error_is_dead_lettered_at_once(engine, connection, broker_url):
    calls = []

    def refuses(session, envelope):
        calls.append(1)
        raise PermanentError("cannot ever work")

    with RunningWorker(broker_url, engine, handlers={"customer.upsert": refuses}):
        publish_raw(connection, upsert())
        dead = get_one(connection, topology.dead_letters)
    assert calls == [1]
    assert "cannot ever work" in dead.headers["x-taskgate-reason"]


def test_what_a_handler_leaves_for_after_the_commit_runs_only_if_it_commits(engine, connection, broker_url):
    ran = []

    def registers(outcome):
        def handle(session, envelope):
            after_commit(session, lambda: ran.append((outcome, count(engine, customers_tables.customers))))
            if outcome == "refused":
                raise PermanentError("refused after registering")
            return CUSTOMERS.handlers["customer.upsert"](session, envelope)

        return handle

    with RunningWorker(broker_url, engine, handlers={"customer.upsert": registers("refused")}):
        publish_raw(connection, upsert())
        get_one(connection, topology.dead_letters)
    with RunningWorker(broker_url, engine, handlers={"customer.upsert": registers("stored")}):
        publish_raw(connection, upsert())
        wait_for(lambda: ran, message="the callback after the commit")
    assert ran == [("stored", 1)]  # after the commit (its customer is there), never for the refused


def test_a_message_without_a_handler_is_dead_lettered(engine, connection, broker_url):
    with RunningWorker(broker_url, engine, handlers={}):
        publish_raw(connection, upsert())
        dead = get_one(connection, topology.dead_letters)
    assert "no handler" in dead.headers["x-taskgate-reason"]


def test_waiting_messages_are_handled_in_batches_and_one_bad_message_spoils_none(
    engine, connection, broker_url
):
    """Published before the worker starts, the messages arrive together; the bad one makes its
    batch roll back, the others are then handled one by one, the bad one is dead-lettered."""
    transactions, handled = [], []

    def upsert_unless_poison(connection, envelope):
        if envelope.payload["name"] == "poison":
            raise PermanentError("poison")
        transactions.append(connection.get_transaction())  # kept alive here: distinct objects
        handled.append(envelope.task_id)
        return []

    tasks = [upsert(task_id=f"T-{n}", name="poison" if n == 30 else "Ada") for n in range(60)]
    for task in tasks:
        publish_raw(connection, task)
    with RunningWorker(broker_url, engine, handlers={"customer.upsert": upsert_unless_poison}, batch_size=25):
        wait_for(lambda: count(engine, CUSTOMERS.inbox) == 59, message="59 messages handled")
        dead = get_one(connection, topology.dead_letters)
    assert "poison" in dead.headers["x-taskgate-reason"] and dead.headers["x-task-id"] == "T-30"
    assert sorted(set(handled)) == sorted(t.task_id for t in tasks if t.task_id != "T-30")
    assert len(set(transactions)) < 59  # some messages shared a transaction


def test_a_batch_handler_gets_runs_of_its_type_in_order_and_each_message_once(engine, connection, broker_url):
    """Messages that arrive together: the inbox sees each once (a redelivered copy in the same batch
    is a duplicate), runs of a type with a batch handler go to it together, the order is kept."""
    calls = []

    def one(session, envelope):
        calls.append(("one", envelope.task_id))
        return []

    def many(session, envelopes):
        calls.append(("many", *[envelope.task_id for envelope in envelopes]))
        return []

    messages = [upsert(task_id=f"T-{number}") for number in range(6)]
    other = Envelope("customer.erase", "T-erase", messages[0].task_uuid, "acme", {"customer_id": "C-1"})
    for message in [*messages[:3], messages[1], other, *messages[3:]]:
        publish_raw(connection, message, routing_key="customer.upsert")  # all to the customers queue
    handlers = {"customer.upsert": one, "customer.erase": one}
    with RunningWorker(broker_url, engine, handlers=handlers, batch_handlers={"customer.upsert": many}):
        wait_for(lambda: count(engine, CUSTOMERS.inbox) == 7, message="7 messages handled")
        wait_for(lambda: _queue_is_drained(connection), message="every message acked")
    flattened = [task_id for call in calls for task_id in call[1:]]
    assert flattened == ["T-0", "T-1", "T-2", "T-erase", "T-3", "T-4", "T-5"]
    assert ("one", "T-erase") in calls
    assert any(call[0] == "many" and len(call) > 2 for call in calls)  # some went together


def staged(engine, number: int) -> list[Envelope]:
    """number customer.upsert messages in the customers' outbox, in order."""
    tasks = [upsert(task_id=f"T-{n}") for n in range(number)]
    with Session(engine) as session, session.begin():
        add_to_outbox(session, CUSTOMERS.outbox, tasks)
    return tasks


def relay_to(engine, broker_url, batch_size: int) -> OutboxRelay:
    connection = broker.connect(broker_url, confirm_each=False)
    return OutboxRelay(engine, CUSTOMERS.outbox, connection, Wakeup(), batch_size=batch_size)


def received_message_ids(connection, expected: int) -> list[str]:
    """The message ids of the first `expected` messages on the customers' queue, as they came."""
    received = []
    with connection.Consumer([CUSTOMERS.queue], on_message=received.append, accept=["json"]):
        wait_for(lambda: _drain(connection) or len(received) >= expected, message="every message")
    for message in received:
        message.ack()
    return [message.properties["message_id"] for message in received]


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
    assert _queue_is_drained(connection)  # and nothing twice
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


def test_the_in_process_broker_gets_kept_messages_again_after_a_restart(engine):
    declare_topology("memory://")
    task = upsert()
    with Session(engine) as session, session.begin():
        add_to_outbox(session, CUSTOMERS.outbox, [task])
    relay = OutboxRelay(
        engine, CUSTOMERS.outbox, broker.connect("memory://"), Wakeup(), keep_published=timedelta(hours=1)
    )
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
        engine, CUSTOMERS.outbox, broker.connect("memory://"), Wakeup(), keep_published=timedelta(0)
    )
    declare_topology("memory://")
    assert relay.relay_batch() == 1
    assert relay.republish_kept() == 0
    assert count(engine, CUSTOMERS.outbox) == 0
    relay.broker.release()


def test_a_task_no_context_takes_is_dead_lettered_not_dropped(connection):
    Producer(connection.default_channel).publish(
        b"{}", exchange=topology.tasks, routing_key="nobody.listens", content_type="application/json"
    )
    dead = get_one(connection, topology.dead_letters)
    assert dead.delivery_info["routing_key"] == "nobody.listens"


def test_batches_are_acked_once_committed_and_nothing_is_left_unacked(engine, connection, broker_url):
    """On RabbitMQ a batch is acked with one multiple-ack; messages dead-lettered between batches
    (undecodable) are acked on their own, and nothing is acked twice or left behind."""
    tasks = [upsert(task_id=f"T-{n}") for n in range(40)]
    for number, task in enumerate(tasks):
        publish_raw(connection, task)
        if number % 15 == 7:
            publish_raw(connection, task, body=b"{not json")
    with RunningWorker(broker_url, engine, batch_size=10):
        wait_for(lambda: count(engine, CUSTOMERS.inbox) == 40, message="40 messages handled")
        wait_for(lambda: _queue_is_drained(connection), message="every message acked")
        dead = []
        with connection.Consumer([topology.dead_letters], on_message=dead.append, accept=["json"]):
            wait_for(lambda: _drain(connection) or len(dead) >= 3, message="3 dead letters")
        for message in dead:
            message.ack()
    assert len(dead) == 3
    assert all("undecodable" in message.headers["x-taskgate-reason"] for message in dead)
