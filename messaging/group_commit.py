"""Group commit: threads that each have rows to write share one transaction.

A thread hands its item over and is told once a transaction holding it has committed (or with that
transaction's error). While one transaction is being written, the items that arrive meanwhile wait
and then go together in the next one, written by one of their threads: under load many items share
one commit, with no timer and no extra thread.

submit() returns only after the commit. submit_nowait() returns at once when another thread is
writing (the item goes with a later write) and writes itself otherwise; its ticket tells later
whether the item was committed, and wait() makes sure it is, writing if nobody else does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Ticket(Generic[Item]):
    """One submitted item: written yet, and with which error."""

    __slots__ = ("done", "error", "item")

    def __init__(self, item: Item):
        self.item = item
        self.done = False
        self.error: BaseException | None = None

    @property
    def failed(self) -> bool:
        """True once the item's transaction failed (never blocks)."""
        return self.done and self.error is not None


class GroupCommit(Generic[Item]):
    def __init__(self, write: Callable[[list[Item]], None]):
        """write(items) writes them all in one transaction, or raises."""
        self._write = write
        self._changed = threading.Condition()
        self._waiting: list[Ticket[Item]] = []
        self._writing = False

    def submit(self, item: Item) -> None:
        """Return once item is committed; raise what its transaction raised."""
        self.wait([self.submit_nowait(item)])

    def submit_nowait(self, item: Item) -> Ticket[Item]:
        """Queue item; write it (and whatever else waits) now unless another thread is writing."""
        ticket = Ticket(item)
        with self._changed:
            self._waiting.append(ticket)
            if self._writing:
                return ticket
            batch = self._take_batch()
        self._write_batch(batch)
        return ticket

    def wait(self, tickets: Iterable[Ticket[Item]]) -> None:
        """Return once every ticket's item is written; raise the first error among them."""
        tickets = list(tickets)
        for ticket in tickets:
            while True:
                with self._changed:
                    while self._writing and not ticket.done:
                        self._changed.wait()
                    if ticket.done:
                        break
                    batch = self._take_batch()  # nobody writes it: this thread does
                self._write_batch(batch)
        for ticket in tickets:
            if ticket.error is not None:
                raise ticket.error

    def _take_batch(self) -> list[Ticket[Item]]:
        """Everything waiting, for this thread to write (called holding the condition)."""
        batch, self._waiting = self._waiting, []
        self._writing = True
        return batch

    def _write_batch(self, batch: list[Ticket[Item]]) -> None:
        error = None
        try:
            self._write([ticket.item for ticket in batch])
        except BaseException as raised:
            error = raised
        with self._changed:
            for ticket in batch:
                ticket.done, ticket.error = True, error
            self._writing = False
            self._changed.notify_all()
