"""Exchanges and queues. Every name starts with ``taskgate.``."""

from __future__ import annotations

from kombu import Exchange, Queue, binding

from messaging import vocabulary

# A task no queue takes (no context subscribes to its type) goes to the dead letters, not nowhere.
tasks = Exchange(
    vocabulary.TASKS_EXCHANGE,
    type="topic",
    durable=True,
    arguments={"alternate-exchange": vocabulary.DEAD_LETTER_EXCHANGE},
)
events = Exchange(vocabulary.EVENTS_EXCHANGE, type="topic", durable=True)
results = Exchange(vocabulary.RESULTS_EXCHANGE, type="topic", durable=True)
dead_letter = Exchange(vocabulary.DEAD_LETTER_EXCHANGE, type="topic", durable=True)

EXCHANGES = {exchange.name: exchange for exchange in (tasks, events, results, dead_letter)}

# The broker's own last line: a message redelivered this often (e.g. it crashes its worker each
# time) goes to the dead-letter exchange even if no worker survives to put it there.
DELIVERY_LIMIT = 20


def queue(name: str, bindings: list[tuple[Exchange, str]]) -> Queue:
    """A durable quorum queue named taskgate.<name> that dead-letters to taskgate.dead-letter."""
    return Queue(
        f"taskgate.{name}",
        bindings=[binding(exchange, routing_key=key) for exchange, key in bindings],
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": dead_letter.name,
        },
    )


dead_letters = Queue(
    "taskgate.dead-letters",
    bindings=[binding(dead_letter, routing_key="#")],
    durable=True,
    queue_arguments={"x-queue-type": "quorum"},
)
