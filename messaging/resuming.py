"""Deciding a resumed task in the transaction that resumed it.

While a consumer handles messages (on a first try), it decides the parked tasks its handlers
resume (messaging.handling): decided_here(resumed) hands them over there and then, so each is decided
right where it was resumed, before anything handled after it, and returns what they caused.
Anywhere else (a sweeper, a retry, a handler called directly) it returns the resumed tasks
themselves, to travel as messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from messaging.envelope import Envelope

Decide = Callable[[list[Envelope]], list[Envelope]]

_decide: ContextVar[Decide | None] = ContextVar("taskgate_decide_resumed", default=None)


@contextlib.contextmanager
def deciding(decide: Decide | None) -> Iterator[None]:
    """While the block runs (in this thread), decide decides the tasks resumed (None: nobody)."""
    token = _decide.set(decide)
    try:
        yield
    finally:
        _decide.reset(token)


def decided_here(resumed: list[Envelope]) -> list[Envelope]:
    """What the resumed tasks caused, decided here if a consumer is deciding, else the tasks."""
    decide = _decide.get()
    return decide(resumed) if decide is not None and resumed else resumed
