"""Group commit: threads that each have rows to write share one transaction.

A thread hands its item to submit() and gets back only once a transaction holding it has
committed (or with that transaction's error). While one transaction is being written, the items
that arrive meanwhile wait and then go together in the next one, written by one of their threads.
Nothing is written later than its submit() returns, so a caller's guarantees do not change; under
load many items share one commit, with no timer and no extra thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class _Ticket(Generic[Item]):
    __slots__ = ("done", "error", "item")

    def __init__(self, item: Item):
        self.item = item
        self.done = False
        self.error: BaseException | None = None


class GroupCommit(Generic[Item]):
    def __init__(self, write: Callable[[list[Item]], None]):
        """write(items) writes them all in one transaction, or raises."""
        self._write = write
        self._changed = threading.Condition()
        self._waiting: list[_Ticket[Item]] = []
        self._writing = False

    def submit(self, item: Item) -> None:
        """Return once item is committed; raise what its transaction raised."""
        ticket = _Ticket(item)
        with self._changed:
            self._waiting.append(ticket)
            while self._writing and not ticket.done:
                self._changed.wait()
            if ticket.done:  # another thread wrote it
                if ticket.error is not None:
                    raise ticket.error
                return
            batch, self._waiting = self._waiting, []
            self._writing = True
        error = None
        try:
            self._write([waiting.item for waiting in batch])
        except BaseException as raised:
            error = raised
        with self._changed:
            for waiting in batch:
                waiting.done, waiting.error = True, error
            self._writing = False
            self._changed.notify_all()
        if error is not None:
            raise error
