"""An in-process broker for the embedded mode: kombu's memory transport without its 1 s polling.

kombu's virtual transports sleep ``polling_interval`` between empty polls. Here a consumer instead
waits on a condition that every put signals, so a hop costs no idle latency and an idle process
burns no CPU. It also honours an exchange's ``alternate-exchange`` argument, like RabbitMQ.
"""

from __future__ import annotations

import threading
from queue import Empty
from time import monotonic

from kombu.transport import memory

_arrivals = threading.Condition()
_generation = 0


def _signal_arrival() -> None:
    global _generation
    with _arrivals:
        _generation += 1
        _arrivals.notify_all()


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

    def _put(self, queue, message, **kwargs):
        super()._put(queue, message, **kwargs)
        _signal_arrival()

    def _put_fanout(self, exchange, message, routing_key=None, **kwargs):
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        _signal_arrival()


class Transport(memory.Transport):
    Channel = Channel
    driver_type = "memory"
    driver_name = "taskgate-inproc"

    def drain_events(self, connection, timeout=None):
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            seen = _generation
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                remaining = None if deadline is None else deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError() from None
                with _arrivals:
                    _arrivals.wait_for(lambda seen=seen: _generation != seen, remaining)


def reset() -> None:
    """Forget every queue and binding (tests start from an empty broker)."""
    memory.Channel.queues.clear()
    memory.Channel.events.clear()
    Transport.global_state.clear()
