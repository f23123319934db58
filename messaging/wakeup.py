"""A wake-up between a thread that committed work and the loop (in the same process) that handles it."""

from __future__ import annotations

import threading


class Wakeup:
    """In-process wake-up: notify() after a commit, wait() in the loop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        """Signal new work."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Block until notified or timeout; True if notified."""
        notified = self._event.wait(timeout)
        self._event.clear()
        return notified

    def close(self) -> None:
        """Wake the waiter for good (it is shutting down)."""
        self._event.set()
