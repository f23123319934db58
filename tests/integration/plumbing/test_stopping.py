"""A consumer that cannot reach its broker still stops when asked: a process stopping during a
broker outage does not wait out every consumer's reconnection attempts."""

import threading

import pytest

from gateway import tables as gateway_tables
from messaging import broker
from messaging.consumer import MessageWorker
from messaging.dead_letters import DeadLetterKeeper
from tests.factories import wait_for
from tests.integration.plumbing.support import CUSTOMERS

NOBODY_LISTENS = "amqp://guest:guest@127.0.0.1:1//"


def message_worker(engine):
    return MessageWorker(
        broker.connect(NOBODY_LISTENS),
        CUSTOMERS.queue,
        CUSTOMERS.handlers,
        engine,
        inbox=CUSTOMERS.inbox,
        outbox=CUSTOMERS.outbox,
    )


def dead_letter_keeper(engine):
    return DeadLetterKeeper(broker.connect(NOBODY_LISTENS), engine, gateway_tables.dead_letters)


@pytest.mark.parametrize("make", [message_worker, dead_letter_keeper])
def test_a_consumer_waiting_for_its_broker_stops_when_asked(engine, make):
    consumer = make(engine)
    failed = []
    consumer.on_connection_error = lambda error, interval: failed.append(interval)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run_until, args=(stop,), daemon=True)
    thread.start()
    # Two attempts failed: it now waits seconds before the next one.
    wait_for(lambda: len(failed) >= 2, message="two failed connection attempts")
    stop.set()
    thread.join(5)
    alive = thread.is_alive()
    consumer.connection.release()
    assert not alive, "the consumer kept retrying its broker after stop"
