"""Trace context for messages: what messaging and its users ask of a tracer.

Off (the default), every call here does nothing. A process that traces installs a Tracer that does
the work (taskgate.tracing, with OpenTelemetry) before it handles anything; messaging itself
imports no tracing library. A message's trace context travels as W3C `traceparent`/`tracestate`
entries in its envelope (``Envelope.trace``), so it survives the outbox, a park and a relay after
a crash, and in the broker message's headers.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from messaging import vocabulary
from messaging.envelope import Envelope


class Tracer:
    """No tracing: each call answers with nothing and costs next to nothing."""

    enabled = False

    def current(self) -> dict[str, str]:
        """The W3C headers of the span current in this thread ({} when there is none)."""
        return {}

    @contextlib.contextmanager
    def processing(self, envelopes: list[Envelope], source: str) -> Iterator[None]:
        """Around handling envelopes from source (a queue) in one transaction: a process span
        per message, its parent the message's trace context."""
        yield

    def context_of(self, envelope: Envelope) -> dict[str, str]:
        """The W3C headers of envelope's process span, for what its handling causes ({} if none)."""
        return {}

    def note(self, envelope: Envelope, name: str, attributes: dict[str, str]) -> None:
        """An event on the process span of envelope (parked, resumed…)."""

    def describe(self, attributes: dict, envelope: Envelope | None = None) -> None:
        """Attributes for envelope's process span, or the current span (the outcome, the task)."""

    def ids(self, message_id: str | None) -> tuple[str, str] | None:
        """The trace and span ids of a log line about message_id (None: the line has none)."""
        return None

    @contextlib.contextmanager
    def publishing(self, rows: list[dict]) -> Iterator[None]:
        """Around publishing outbox rows: a publish span per row, whose context replaces the
        row's trace headers for the consumer to continue from."""
        yield

    @contextlib.contextmanager
    def attempting(self, trace: dict[str, str] | None, attributes: dict) -> Iterator[dict]:
        """Around one callback attempt: yields a dict whose "headers" carry the attempt's context
        (to send with the request), and where the caller puts the "status_code" or "error"."""
        yield {"headers": {}}


_tracer = Tracer()


def tracer() -> Tracer:
    return _tracer


def install(installed: Tracer) -> None:
    """Make installed the tracer of this process (at start, before any message is handled)."""
    global _tracer
    _tracer = installed


def continued(caused: list[Envelope], handled: list[Envelope]) -> list[Envelope]:
    """The caused messages, each about its cause's task carrying the trace context of its cause's
    handling (a parked task, resumed by another task's message, keeps its own trace)."""
    if not tracer().enabled:
        return caused
    causes = {envelope.message_id: envelope for envelope in handled}
    for envelope in caused:  # a context's word on its task: the outcome, on the span that decided
        if envelope.type == vocabulary.TASK_RESULT and (cause := causes.get(envelope.causation_id)):
            outcome = {
                "taskgate.outcome": envelope.payload["outcome"],
                "taskgate.status": envelope.payload["status"],
            }
            tracer().describe(outcome, cause)
    return [
        dataclasses.replace(envelope, trace=tracer().context_of(cause))
        if (cause := causes.get(envelope.causation_id)) and envelope.task_uuid == cause.task_uuid
        else envelope
        for envelope in caused
    ]
