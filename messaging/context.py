"""What a message-handling part declares so that a runner can wire it up."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Protocol

from kombu import Queue
from sqlalchemy import Engine, Table

from messaging.handling import BatchHandler, Handler
from messaging.outbox import Publish

DEFAULT_WAIT_TIMEOUT_SECONDS = 3600


class ReadModel(Protocol):
    """A context's copy of another's data, rebuilt from events (e.g. its customers)."""

    def clear(self, session) -> int:
        """Forget every row (before the source publishes its state again); how many."""


@dataclasses.dataclass(frozen=True)
class ContextSpec:
    name: str
    queue: Queue
    handlers: Mapping[str, Handler]
    inbox: Table
    outbox: Table
    read_model: ReadModel | None = None
    # Optional: handlers of many messages of one type at once (same effects as one by one).
    batch_handlers: Mapping[str, BatchHandler] = dataclasses.field(default_factory=dict)
    # Optional: more loops of the context, each made with the engine and its relay's offer
    # (to publish what it writes to the outbox), run until the event is set.
    loops: tuple[Callable[[Engine, Publish], Callable[[threading.Event], None]], ...] = ()
    # Optional: message types whose handler is their own inbox: no inbox row for them. Its handler
    # tells a repeat itself (by the message ids it keeps in a table of its own, in the same
    # transaction) or a repeat changes nothing (e.g. an event a copy holds already), and it says
    # what became of each message (the consumer logs no "handled" line for them).
    own_inbox: frozenset[str] = frozenset()


# The longest a duration setting of a context may be: beyond, dates it computes overflow.
MAX_SECONDS = 30 * 86400


def env_int(
    environ: Mapping[str, str] | None, name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    """An integer setting from the environment, with a clear error naming the variable."""
    raw = (os.environ if environ is None else environ).get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be at most {maximum}")
    return value


def wait_timeout(environ: Mapping[str, str] | None) -> timedelta:
    """How long a task waits for its customer: TASKGATE_WAIT_TIMEOUT_SECONDS."""
    return timedelta(
        seconds=env_int(
            environ, "TASKGATE_WAIT_TIMEOUT_SECONDS", DEFAULT_WAIT_TIMEOUT_SECONDS, 1, MAX_SECONDS
        )
    )
