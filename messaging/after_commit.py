"""Work that may run only once a transaction has committed, registered while it runs.

A handler calls after_commit(connection, callback); the consumer that owns the transaction runs
the callbacks once its commit succeeded, and forgets them if it did not. Kept in the connection's
info for the length of one transaction (begin() clears what a failed one may have left).
"""

from __future__ import annotations

from collections.abc import Callable

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
