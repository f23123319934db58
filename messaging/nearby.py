"""A consumer in the same process and on the same database as a context's handlers (nearby):
it handles the messages a transaction causes in that transaction, instead of taking them from its
queue once the relay has published them. What it handled is not published: nothing else consumes
it, and it would cost an outbox row, a publish and its confirm."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from messaging.db import Transaction
from messaging.envelope import Envelope


@dataclasses.dataclass(frozen=True)
class Nearby:
    """handle(transaction, caused) handles, in the transaction that caused them, what the nearby
    consumer would take from its queue, and returns the ids of the messages it handled."""

    handle: Callable[[Transaction, list[Envelope]], set[uuid.UUID]]

    def take(self, transaction: Transaction, caused: list[Envelope]) -> list[Envelope]:
        """caused, without those handled here in transaction."""
        taken = self.handle(transaction, caused) if caused else set()
        return [envelope for envelope in caused if envelope.message_id not in taken]
