"""Delivering results to the client's callback URL: signed POSTs, retried on a schedule.

Due times live in the database, so retries survive restarts. A dispatcher leases a delivery by
moving its next_attempt_at past the attempt's deadline before posting, so another dispatcher (or
this one after a crash) takes it up again only if the attempt never got recorded.

Attempts run on a small pool with a cap per client, so one client's dead endpoint cannot hold up
another client's deliveries. Results of one task go out in the order they occurred: a delivery
waits while an earlier result of its task is still pending.

dispatcher: leasing and attempting; lease: the due query; sender: one attempt over HTTP;
schedule: when to try again; attempts: what each attempt makes of its delivery, and recording it.
"""

from gateway.callbacks.dispatcher import CallbackDispatcher
from gateway.callbacks.schedule import next_delay, retry_after_seconds
from gateway.callbacks.sender import read_environment_once

__all__ = [
    "CallbackDispatcher",
    "next_delay",
    "read_environment_once",
    "retry_after_seconds",
]
