"""A kombu consumer that stops when asked, also while it waits for its broker to come back."""

from __future__ import annotations

import contextlib
import threading

from kombu.mixins import ConsumerMixin


class _Stopped(Exception):
    """Raised into kombu's reconnection loop once the consumer is to stop."""


class StoppingConsumer(ConsumerMixin):
    """ConsumerMixin run until an event is set. kombu looks at should_stop between deliveries, but
    not while it retries a connection the broker refuses (for ever, sleeping up to 30 s between
    attempts): there it is asked once a second too, so a process stopping during a broker outage
    does not wait out every consumer's retries."""

    def run_until(self, stop: threading.Event) -> None:
        """Consume until stop is set (looked at least once a second)."""
        threading.Thread(target=self._stop_when, args=(stop,), daemon=True).start()
        with contextlib.suppress(_Stopped):
            self.run()

    def _stop_when(self, stop: threading.Event) -> None:
        stop.wait()
        self.should_stop = True

    @contextlib.contextmanager
    def establish_connection(self):
        with self.create_connection() as connection:
            connection.ensure_connection(
                self.on_connection_error, self.connect_max_retries, callback=self._unless_stopping
            )
            yield connection

    def _unless_stopping(self) -> None:
        """Called by kombu once a second while it retries the connection."""
        if self.should_stop:
            raise _Stopped
