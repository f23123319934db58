"""The in-process broker wakes a waiting consumer only for a message on a queue it consumes."""

import threading
import time

from kombu import Connection, Consumer, Exchange, Producer, Queue

from messaging import inproc

EXCHANGE = Exchange("test.inproc", type="direct")
QUIET, BUSY = (
    Queue("test.quiet", EXCHANGE, routing_key="quiet"),
    Queue("test.busy", EXCHANGE, routing_key="busy"),
)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def test_messages_for_other_queues_do_not_wake_a_waiting_consumer():
    inproc.reset()
    with Connection(transport=inproc.Transport) as waiting, Connection(transport=inproc.Transport) as sending:
        received = []
        consumer = Consumer(
            waiting.default_channel, [QUIET], callbacks=[lambda body, message: received.append(body)]
        )
        consumer.consume()
        producer = Producer(sending.default_channel, exchange=EXCHANGE)
        for queue in (QUIET, BUSY):
            queue(sending.default_channel).declare()
        looks = []
        look = waiting.transport.cycle.get
        waiting.transport.cycle.get = lambda *args, **kwargs: looks.append(1) or look(*args, **kwargs)

        drained = threading.Thread(target=waiting.drain_events, kwargs={"timeout": 10})
        drained.start()
        wait_until(lambda: looks)  # it has looked once, found nothing, and waits
        for number in range(20):
            producer.publish({"n": number}, routing_key="busy")
            time.sleep(0)  # let the waiting thread run, were it woken
        producer.publish({"n": "quiet"}, routing_key="quiet")
        drained.join(10)

        assert received == [{"n": "quiet"}]
        assert len(looks) == 2  # before waiting, and once for its own message: none for the 20
