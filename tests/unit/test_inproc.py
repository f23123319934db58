"""The in-process broker wakes a waiting consumer only for messages put on a queue it consumes."""

from __future__ import annotations

import threading

import pytest
from kombu import Connection, Exchange, Queue

from messaging import inproc


@pytest.fixture
def broker():
    inproc.reset()
    yield
    inproc.reset()


def _consumer(queue: Queue):
    """A connection consuming queue, the bodies it received, and its kombu Consumer."""
    connection = Connection(transport=inproc.Transport)
    received = []
    consumer = connection.Consumer([queue], callbacks=[lambda body, message: received.append(body)])
    consumer.consume()
    return connection, received, consumer


def _publish(exchange: Exchange, routing_key: str, body: dict) -> None:
    with Connection(transport=inproc.Transport) as publisher:
        publisher.Producer(exchange=exchange).publish(body, routing_key=routing_key)


def test_a_put_wakes_only_the_consumers_of_its_queue(broker):
    exchange = Exchange("test-wakeups", type="direct")
    first, second = Queue("first", exchange, "first"), Queue("second", exchange, "second")
    first_connection, first_received, _ = _consumer(first)
    second_connection, second_received, _ = _consumer(second)
    first_wakeups = first_connection.transport.arrivals
    second_wakeups = second_connection.transport.arrivals

    with Connection(transport=inproc.Transport) as publisher:
        producer = publisher.Producer(exchange=exchange)
        for number in range(20):
            producer.publish({"n": number}, routing_key="second")

    assert first_connection.transport.arrivals == first_wakeups
    assert second_connection.transport.arrivals == second_wakeups + 20
    second_connection.drain_events(timeout=1)
    assert second_received == [{"n": 0}]
    with pytest.raises(TimeoutError):
        first_connection.drain_events(timeout=0.05)
    assert first_received == []


def test_a_waiting_consumer_is_woken_by_a_put_on_its_queue(broker):
    exchange = Exchange("test-wakeups", type="direct")
    queue = Queue("waited", exchange, "waited")
    connection, received, _ = _consumer(queue)
    waiting = threading.Thread(target=connection.drain_events, kwargs={"timeout": 10})
    waiting.start()
    _publish(exchange, "waited", {"n": 1})
    waiting.join(5)
    assert not waiting.is_alive()
    assert received == [{"n": 1}]


def test_a_cancelled_consumer_is_no_longer_woken(broker):
    exchange = Exchange("test-wakeups", type="direct")
    queue = Queue("cancelled", exchange, "cancelled")
    connection, _, consumer = _consumer(queue)
    consumer.cancel()
    wakeups = connection.transport.arrivals
    _publish(exchange, "cancelled", {"n": 1})
    assert connection.transport.arrivals == wakeups


def test_a_cancel_leaves_the_other_consumers_of_the_queue_woken(broker):
    exchange = Exchange("test-wakeups", type="direct")
    queue = Queue("shared", exchange, "shared")
    staying, _, _ = _consumer(queue)
    _, _, leaving = _consumer(queue)
    leaving.cancel()
    wakeups = staying.transport.arrivals
    _publish(exchange, "shared", {"n": 1})
    assert staying.transport.arrivals == wakeups + 1
