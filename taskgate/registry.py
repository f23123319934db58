"""Every part that consumes messages, by the name `taskgate worker --context NAME` uses."""

from __future__ import annotations

from collections.abc import Mapping

from contexts.appointment import worker as appointment
from contexts.customers import worker as customers
from contexts.maintenance import worker as maintenance
from contexts.survey import worker as survey
from gateway import worker as gateway
from messaging.context import ContextSpec

_PARTS = {part.NAME: part for part in (gateway, customers, survey, appointment, maintenance)}

NAMES = tuple(_PARTS)
QUEUES = [part.QUEUE for part in _PARTS.values()]
METADATA = [part.METADATA for part in _PARTS.values()]


def spec(name: str, environ: Mapping[str, str] | None = None) -> ContextSpec:
    """The wiring of context name, with its settings read from environ (os.environ by default)."""
    return _PARTS[name].spec(environ)
