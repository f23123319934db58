"""What a message-handling part declares so that a runner can wire it up."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from kombu import Queue
from sqlalchemy import MetaData, Table

from messaging.consumer import Handler


@dataclasses.dataclass(frozen=True)
class ContextSpec:
    name: str
    queue: Queue
    handlers: Mapping[str, Handler]
    inbox: Table
    outbox: Table
    metadata: MetaData
