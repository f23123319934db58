"""Work that may run only once a transaction has committed, registered while it runs.

A handler calls after_commit(connection, callback); the consumer that owns the transaction runs
the callbacks once its commit succeeded, and forgets them if it did not. Kept in the connection's
info for the length of one transaction (begin() clears what a failed one may have left).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_KEY = "taskgate_after_commit"


def after_commit(connection, callback: Callable[[], None]) -> None:
    """Run callback once connection's current transaction has committed (never if it does not)."""
    connection.info.setdefault(_KEY, []).append(callback)


def begin(connection) -> None:
    """At the start of a transaction: forget what an earlier one registered and never committed."""
    connection.info.pop(_KEY, None)


def registered(connection) -> list[Callable[[], None]]:
    """At the end of a transaction, before its commit: what to run once the commit succeeded."""
    return connection.info.pop(_KEY, [])


def run(callbacks: list[Callable[[], None]]) -> None:
    """Once the transaction committed: each callback, whatever the others do. Nothing may fail
    the transaction's owner now: what committed stays committed, and a callback's work is only
    ever a shortcut (a hand-over, a wake-up, a log line) that the loops make up for."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("work after a commit failed; the loops take it up")
