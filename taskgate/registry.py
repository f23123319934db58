"""Every part that consumes messages, by the name `taskgate worker --context NAME` uses."""

from __future__ import annotations

from collections.abc import Mapping

from contexts.appointment import worker as appointment
from contexts.customers import worker as customers
from contexts.maintenance import worker as maintenance
from contexts.survey import worker as survey
from contexts.visits import worker as visits
from gateway import worker as gateway
from gateway.overview import Sources
from messaging.context import ContextSpec
from taskgate import tables

_PARTS = {part.NAME: part for part in (gateway, customers, survey, appointment, maintenance, visits)}

NAMES = tuple(_PARTS)
QUEUES = [part.QUEUE for part in _PARTS.values()]
# Bindings of earlier releases that the queues lose when the topology is declared.
RETIRED_BINDINGS = [(gateway.QUEUE, exchange, key) for exchange, key in gateway.RETIRED_BINDINGS]
METADATA = [*(part.METADATA for part in _PARTS.values()), tables.metadata]


def spec(name: str, environ: Mapping[str, str] | None = None) -> ContextSpec:
    """The wiring of context name, with its settings read from environ (os.environ by default)."""
    return _PARTS[name].spec(environ)


def overview_sources() -> Sources:
    """What /metrics and the console report on: every outbox's backlog and the worker heartbeats."""
    return Sources(
        outboxes={name: part.spec({}).outbox for name, part in _PARTS.items()},
        processes=tables.processes,
    )
