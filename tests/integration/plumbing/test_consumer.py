"""The message worker on the in-process broker and on RabbitMQ: inbox, batches, dead letters, acks."""

import json

import pytest
from amqp.exceptions import MessageNacked
from sqlalchemy import func, select

from contexts.customers import tables as customers_tables
from contexts.replica.parking import resumed_task
from messaging import consumer, topology
from messaging.after_commit import after_commit
from messaging.dead_letters import send_to_dead_letters
from messaging.envelope import Envelope
from messaging.handling import PermanentError
from messaging.nearby import Nearby
from messaging.resuming import decided_here
from tests.factories import wait_for
from tests.integration.plumbing.support import (
    CUSTOMERS,
    RunningWorker,
    count,
    drain,
    get_one,
    publish_raw,
    queue_is_drained,
    upsert,
)


def test_a_message_delivered_twice_has_one_effect(engine, connection, broker_url):
    task = upsert()
    with RunningWorker(broker_url, engine) as running:
        publish_raw(connection, task)
        publish_raw(connection, task)
        wait_for(lambda: running.worker.connection and count(engine, CUSTOMERS.inbox) == 1)
        wait_for(lambda: queue_is_drained(connection), message="both deliveries acked")
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


def test_a_nearby_consumer_handles_what_a_transaction_caused_in_it_and_it_is_not_published(
    engine, connection, broker_url
):
    seen = []  # per call of the nearby consumer: the types, and whether the inbox row is already there

    def handle(transaction, caused):
        inbox_rows = transaction.scalar(select(func.count()).select_from(CUSTOMERS.inbox))
        seen.append(([envelope.type for envelope in caused], inbox_rows))
        return {envelope.message_id for envelope in caused if envelope.type == "task.result"}

    offered = []
    nearby = Nearby(handle)
    with RunningWorker(broker_url, engine, publish=offered.extend, nearby=nearby):
        publish_raw(connection, upsert())
        wait_for(lambda: offered, message="an offer")
    assert seen == [(["customer.registered", "task.result"], 1)]  # in the handling transaction
    assert [row["body"]["type"] for row in offered] == ["customer.registered"]


def test_when_the_nearby_consumer_fails_the_retry_commits_without_it(engine, connection, broker_url):
    calls = []

    def failing(transaction, caused):
        calls.append([envelope.type for envelope in caused])
        raise RuntimeError("the nearby consumer's part fails")

    offered = []
    nearby = Nearby(failing)
    with RunningWorker(broker_url, engine, publish=offered.extend, nearby=nearby):
        publish_raw(connection, upsert())
        wait_for(lambda: offered, message="an offer")
    assert calls == [["customer.registered", "task.result"]]  # the first try only
    assert count(engine, customers_tables.customers) == 1  # the message's own effects committed
    assert [row["body"]["type"] for row in offered] == ["customer.registered", "task.result"]  # both travel


def parking_handlers(decided: list[str], *, fail_resumed: int = 0, failure=RuntimeError):
    """Handlers on the customers queue: an upsert is decided (its task-id noted), except "T-parked",
    which waits until a customer.erase resumes it; resumed, it fails the first fail_resumed times."""
    parked: list[Envelope] = []

    def upsert_handler(session, task):
        if task.task_id == "T-parked" and not parked:
            parked.append(task)
            return []
        if task.task_id == "T-parked" and decided.count("failed") < fail_resumed:
            decided.append("failed")
            raise failure("the resumed task fails")
        decided.append(task.task_id)
        return [task.caused("customer.registered", {"customer_id": "C-1"})]

    def erase_handler(session, event):
        return decided_here([resumed_task(task, event) for task in parked])

    return {"customer.upsert": upsert_handler, "customer.erase": erase_handler}


@pytest.mark.parametrize("batch_size", [50, 1], ids=["together", "one-by-one"])
def test_a_resumed_task_is_decided_right_after_what_resumed_it(engine, connection, broker_url, batch_size):
    """A parked task that a message resumes is decided in that message's transaction, before the
    messages taken after it (a later task of its customer must not overtake it), and is not sent
    again."""
    decided: list[str] = []
    waits = upsert("T-parked")
    erase = Envelope("customer.erase", "T-erase", waits.task_uuid, "acme", {"customer_id": "C-1"})
    for message in (waits, erase, upsert("T-later")):
        publish_raw(connection, message, routing_key="customer.upsert")  # all to the customers queue
    offered = []
    handlers = parking_handlers(decided)
    with RunningWorker(broker_url, engine, handlers=handlers, publish=offered.extend, batch_size=batch_size):
        wait_for(lambda: len(decided) == 2, message="both upserts decided")
        wait_for(lambda: queue_is_drained(connection), message="every message acked")
    assert decided == ["T-parked", "T-later"]
    assert [row["body"]["type"] for row in offered] == ["customer.registered", "customer.registered"]
    # Decided as the message it was parked as: what it caused names a message that was published.
    assert offered[0]["body"]["causation_id"] == str(waits.message_id)


@pytest.mark.parametrize("failure", [RuntimeError, PermanentError])
def test_a_resumed_task_that_fails_in_place_travels_as_a_message_on_the_retry(
    engine, connection, broker_url, failure
):
    """Whatever the resumed task's handler raises, the message that resumed it commits on the
    retry (a PermanentError is the task's, not that message's), and the task travels."""
    decided: list[str] = []
    waits = upsert("T-parked")
    erase = Envelope("customer.erase", "T-erase", waits.task_uuid, "acme", {"customer_id": "C-1"})
    offered = []
    handlers = parking_handlers(decided, fail_resumed=1, failure=failure)
    with RunningWorker(broker_url, engine, handlers=handlers, publish=offered.extend, batch_size=1):
        publish_raw(connection, waits, routing_key="customer.upsert")
        wait_for(lambda: count(engine, CUSTOMERS.inbox) == 1, message="the task parked")
        publish_raw(connection, erase, routing_key="customer.upsert")
        wait_for(lambda: offered, message="the resumed task sent again")
    assert decided == ["failed"]  # tried in place once; the retry committed the erase without it
    [row] = offered
    assert (row["body"]["type"], row["body"]["task_id"]) == ("customer.upsert", "T-parked")
    assert row["body"]["causation_id"] == str(erase.message_id)


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


def test_a_dead_letter_the_broker_refuses_goes_back_to_its_queue_and_the_consumer_lives_on(
    engine, connection, broker_url, monkeypatch
):
    """The broker nacks the first dead letter: the message is requeued (not acked, not lost), the
    consumer goes on, and the message is dead-lettered when it comes round again."""
    refusals = []

    def refused_once(message, queue, reason):
        if not refusals:
            refusals.append(reason)
            raise MessageNacked("the broker refused it")
        send_to_dead_letters(message, queue, reason)

    monkeypatch.setattr(consumer, "send_to_dead_letters", refused_once)
    monkeypatch.setattr(consumer, "DEAD_LETTER_PAUSE_SECONDS", 0.01)
    with RunningWorker(broker_url, engine) as running:
        publish_raw(connection, upsert(), body=b"{not json")
        dead = get_one(connection, topology.dead_letters)
        assert running.thread.is_alive()
    assert len(refusals) == 1
    assert "undecodable" in dead.headers["x-taskgate-reason"]


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


def test_work_after_the_commit_that_fails_spoils_neither_the_rest_of_it_nor_the_message(
    engine, connection, broker_url
):
    """A callback that raises after the commit: the relay still gets the rows, the callbacks after
    it still run, and the message is acked once (not handled again as if its batch had failed)."""
    ran, offered = [], []

    def handle(session, envelope):
        after_commit(session, lambda: 1 / 0)
        after_commit(session, lambda: ran.append(envelope.task_id))
        return CUSTOMERS.handlers["customer.upsert"](session, envelope)

    task = upsert()
    with RunningWorker(
        broker_url, engine, handlers={"customer.upsert": handle}, publish=offered.append
    ) as running:
        publish_raw(connection, task)
        wait_for(lambda: ran and queue_is_drained(connection), message="the message acked")
        assert running.thread.is_alive()
    assert ran == [task.task_id]
    assert [[row["body"]["type"] for row in rows] for rows in offered] == [
        ["customer.registered", "task.result"]
    ]


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
        wait_for(lambda: queue_is_drained(connection), message="every message acked")
    flattened = [task_id for call in calls for task_id in call[1:]]
    assert flattened == ["T-0", "T-1", "T-2", "T-erase", "T-3", "T-4", "T-5"]
    assert ("one", "T-erase") in calls
    assert any(call[0] == "many" and len(call) > 2 for call in calls)  # some went together


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
        wait_for(lambda: queue_is_drained(connection), message="every message acked")
        dead = []
        with connection.Consumer([topology.dead_letters], on_message=dead.append, accept=["json"]):
            wait_for(lambda: drain(connection) or len(dead) >= 3, message="3 dead letters")
        for message in dead:
            message.ack()
    assert len(dead) == 3
    assert all("undecodable" in message.headers["x-taskgate-reason"] for message in dead)
