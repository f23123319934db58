"""What the HTTP app shares between requests: settings, the engine, wake-ups, broker health."""

from __future__ import annotations

import dataclasses
import threading
import time

from flask import current_app
from sqlalchemy import Engine

from gateway.accepting import Accepting
from gateway.backpressure import Backpressure
from gateway.clients import KnownClients
from gateway.config import Settings
from gateway.overview import Sources
from gateway.throttle import AuthFailures, Throttle
from messaging import broker
from messaging.db import read_only
from messaging.outbox import Publish


class BrokerProbe:
    """Whether the broker answers, checked at most once per ttl seconds (broker.Liveness)."""

    def __init__(self, url: str, ttl: float = 2.0):
        self.ttl = ttl
        self._liveness = broker.Liveness(url, timeout=1.0)
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._up = True

    def is_up(self) -> bool:
        with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl:
                self._up = self._liveness.answers()
                self._checked_at = time.monotonic()
            return self._up


@dataclasses.dataclass
class GatewayState:
    settings: Settings
    engine: Engine
    publish: Publish  # the messages of accepted tasks, once committed
    broker_probe: BrokerProbe
    backpressure: Backpressure
    clients: KnownClients
    auth_failures: AuthFailures
    # The console's failed sign-ins per source address, apart from failed signatures and API
    # tokens: a client's broken integration on the operator's address must not lock the operator out.
    console_failures: Throttle
    intake: Throttle  # each client's rate of tasks, if limited
    accepting: Accepting  # the transactions that accept tasks
    overview_sources: Sources = dataclasses.field(default_factory=Sources)

    @property
    def reader(self) -> Engine:
        """The engine for read-only transactions (on SQLite they do not queue behind writers)."""
        return read_only(self.engine)


def current_state() -> GatewayState:
    return current_app.extensions["taskgate"]
