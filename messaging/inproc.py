"""An in-process broker for the embedded mode: kombu's memory transport without its 1 s polling.

kombu's virtual transports sleep ``polling_interval`` between empty polls. Here a consumer instead
waits on its connection's condition, which a put signals if the connection consumes the queue put
to, so a hop costs no idle latency, an idle process burns no CPU and a message wakes only its own
consumers. It also honours an exchange's ``alternate-exchange`` argument, like RabbitMQ.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from queue import Empty
from time import monotonic

from kombu.transport import memory

# Which transports (connections) consume each queue, by channel and consumer tag: a put wakes only those.
_consumers: defaultdict[str, dict[tuple[Channel, str], Transport]] = defaultdict(dict)
_consumers_lock = threading.Lock()  # consumers come and go in several threads


def _signal_consumers(queue: str) -> None:
    with _consumers_lock:
        transports = set(_consumers[queue].values()) if queue in _consumers else set()
    for transport in transports:
        transport.signal_arrival()


class Channel(memory.Channel):
    def _lookup(self, exchange, routing_key, default=None):
        # As RabbitMQ does: what no binding of an exchange takes goes to its alternate-exchange.
        queues = super()._lookup(exchange, routing_key, default)
        if not queues and exchange:
            declared = self.state.exchanges.get(exchange) or {}
            alternate = (declared.get("arguments") or {}).get("alternate-exchange")
            if alternate:
                return super()._lookup(alternate, routing_key, default)
        return queues

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        consumed = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        with _consumers_lock:
            _consumers[queue][self, consumer_tag] = self.connection
        return consumed

    def basic_cancel(self, consumer_tag):
        with _consumers_lock:
            for queue, consumers in list(_consumers.items()):
                consumers.pop((self, consumer_tag), None)
                if not consumers:
                    del _consumers[queue]
        return super().basic_cancel(consumer_tag)

    def _put(self, queue, message, **kwargs):
        super()._put(queue, message, **kwargs)
        _signal_consumers(queue)

    def _put_fanout(self, exchange, message, routing_key=None, **kwargs):
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        for queue in self._lookup(exchange, routing_key):
            _signal_consumers(queue)


class Transport(memory.Transport):
    Channel = Channel
    driver_type = "memory"
    driver_name = "taskgate-inproc"

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self._arrived = threading.Condition()
        self.arrivals = 0  # puts on the queues this transport consumes, so far

    def signal_arrival(self) -> None:
        """A message was put on a queue this transport consumes."""
        with self._arrived:
            self.arrivals += 1
            self._arrived.notify_all()

    def drain_events(self, connection, timeout=None):
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            seen = self.arrivals
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                remaining = None if deadline is None else deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError() from None
                with self._arrived:
                    self._arrived.wait_for(lambda seen=seen: self.arrivals != seen, remaining)


def reset() -> None:
    """Forget every queue and binding (tests start from an empty broker)."""
    memory.Channel.queues.clear()
    memory.Channel.events.clear()
    Transport.global_state.clear()
