"""What the messaging tests share: the customers context's queue and tables, a worker running in a
thread, and ways to publish and take raw messages."""

import contextlib
import json
import threading
import uuid

from kombu import Producer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contexts.customers.worker import spec as customers_spec
from messaging import broker, topology
from messaging.consumer import MessageWorker
from messaging.db import make_engine
from messaging.envelope import Envelope
from taskgate.runtime import declare_topology
from tests.backends import sqlite_url
from tests.factories import wait_for

CUSTOMERS = customers_spec({})


@contextlib.contextmanager
def sqlite_engine(tmp_path):
    engine = make_engine(sqlite_url(tmp_path))
    yield engine
    engine.dispose()


@contextlib.contextmanager
def declared(broker_url):
    """A connection to the broker, with taskgate's topology declared."""
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
        wait_for(lambda: drain(connection) or received, timeout=timeout, message=f"a message on {queue.name}")
    received[0].ack()
    return received[0]


def drain(connection):
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


def queue_is_drained(connection):
    bound = CUSTOMERS.queue(connection.default_channel)
    _, messages, _ = bound.queue_declare(passive=True)
    return messages == 0


def received_message_ids(connection, expected: int) -> list[str]:
    """The message ids of the first `expected` messages on the customers' queue, as they came."""
    received = []
    with connection.Consumer([CUSTOMERS.queue], on_message=received.append, accept=["json"]):
        wait_for(lambda: drain(connection) or len(received) >= expected, message="every message")
    for message in received:
        message.ack()
    return [message.properties["message_id"] for message in received]
