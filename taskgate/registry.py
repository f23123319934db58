"""Every part that consumes messages, by the name `taskgate worker --context NAME` uses."""

from __future__ import annotations

from contexts.customers.worker import SPEC as CUSTOMERS
from gateway.worker import SPEC as GATEWAY
from messaging.context import ContextSpec

SPECS: dict[str, ContextSpec] = {spec.name: spec for spec in (GATEWAY, CUSTOMERS)}
NAMES = tuple(SPECS)
METADATA = [spec.metadata for spec in SPECS.values()]
