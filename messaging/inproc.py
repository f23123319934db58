"""An in-process broker for the embedded mode: kombu's memory transport without its 1 s polling.

kombu's virtual transports sleep ``polling_interval`` between empty polls. Here a consumer instead
waits until a message is put on one of the queues it consumes, so a hop costs no idle latency, an
idle process burns no CPU, and a message wakes only its queue's consumers. It also honours an
exchange's ``alternate-exchange`` argument, like RabbitMQ.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from queue import Empty
from time import monotonic

from kombu.transport import memory

_waiting_lock = threading.Lock()
# Queue name -> the events of the consumers waiting for it (ANY_QUEUE: of those that consume none).
_waiting: defaultdict[str, set[threading.Event]] = defaultdict(set)
ANY_QUEUE = ""


def _signal_arrival(queue: str) -> None:
    with _waiting_lock:
        waiting = [*_waiting.get(queue, ()), *_waiting.get(ANY_QUEUE, ())]
    for event in waiting:
        event.set()


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
        _signal_arrival(queue)

    def _put_fanout(self, exchange, message, routing_key=None, **kwargs):
        for queue in self._lookup(exchange, routing_key):
            self._put(queue, message)


class Transport(memory.Transport):
    Channel = Channel
    driver_type = "memory"
    driver_name = "taskgate-inproc"

    def drain_events(self, connection, timeout=None):
        deadline = None if timeout is None else monotonic() + timeout
        arrived = threading.Event()
        # Waiting before looking: a message put after the look still sets the event.
        queues = {queue for channel in self.channels for queue in channel._active_queues} or {ANY_QUEUE}
        with _waiting_lock:
            for queue in queues:
                _waiting[queue].add(arrived)
        try:
            while True:
                arrived.clear()
                try:
                    self.cycle.get(self._deliver, timeout=timeout)
                    return
                except Empty:
                    remaining = None if deadline is None else deadline - monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError() from None
                    arrived.wait(remaining)
        finally:
            with _waiting_lock:
                for queue in queues:
                    _waiting[queue].discard(arrived)


def reset() -> None:
    """Forget every queue and binding (tests start from an empty broker)."""
    memory.Channel.queues.clear()
    memory.Channel.events.clear()
    with _waiting_lock:
        _waiting.clear()
    Transport.global_state.clear()
