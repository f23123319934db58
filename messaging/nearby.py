"""A consumer in the same process and on the same database as a context's handlers (nearby):
it handles the messages a transaction causes in that transaction, instead of taking them from its
queue once the relay has published them. They are published all the same, marked as handled by
its queue and routed where its bindings leave them out (messaging.vocabulary.route); should one
reach it all the same, its consumers only ack it (messaging.consumer)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from messaging.db import Transaction
from messaging.envelope import Envelope


@dataclasses.dataclass(frozen=True)
class Nearby:
    """handle(transaction, caused) handles, in the transaction that caused them, what the consumer
    of queue would take from it, and returns the ids of the messages it handled."""

    queue: str
    handle: Callable[[Transaction, list[Envelope]], set[uuid.UUID]]

    def take(self, transaction: Transaction, caused: list[Envelope]) -> list[Envelope]:
        """caused, those handled here in transaction marked as handled by this consumer's queue."""
        taken = self.handle(transaction, caused) if caused else set()
        return [
            dataclasses.replace(envelope, handled_by=(*envelope.handled_by, self.queue))
            if envelope.message_id in taken
            else envelope
            for envelope in caused
        ]
