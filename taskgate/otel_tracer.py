"""messaging's tracer, made of OpenTelemetry (installed by taskgate.tracing.setup): its spans
follow the messaging and HTTP semantic conventions. OpenTelemetry is imported only when one is
made, that is, only when tracing is on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import threading
from collections.abc import Iterator

from messaging import tracing
from messaging.envelope import TRACE_HEADERS, Envelope


class OpenTelemetryTracer(tracing.Tracer):
    """messaging's tracer, with OpenTelemetry: spans by the messaging and HTTP conventions."""

    enabled = True

    def __init__(self, provider):
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode

        self.provider = provider
        self._tracer = provider.get_tracer("taskgate", importlib.metadata.version("taskgate"))
        self._propagate, self._trace = propagate, trace
        self._Link, self._SpanKind, self._Status, self._StatusCode = Link, SpanKind, Status, StatusCode
        self._local = threading.local()  # the process spans of the messages this thread handles

    def current(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier)
        return carrier

    def _spans(self) -> dict:
        return getattr(self._local, "spans", {})

    @contextlib.contextmanager
    def processing(self, envelopes: list[Envelope], source: str) -> Iterator[None]:
        """A CONSUMER span per message, child of its context; a batch gets a span of its own,
        linked to each message's, which is current while it is handled (so statements nest)."""
        name = f"process {source}"
        batch = None
        if len(envelopes) > 1:
            batch = self._tracer.start_span(
                name,
                kind=self._SpanKind.CONSUMER,
                links=[self._Link(self._context_in(e.trace)) for e in envelopes if e.trace],
                attributes={**_messaging(source), "messaging.batch.message_count": len(envelopes)},
            )
        spans = {}
        for envelope in envelopes:  # a message twice in a batch (redelivered) is handled once
            if str(envelope.message_id) not in spans:
                spans[str(envelope.message_id)] = self._tracer.start_span(
                    name,
                    context=self._propagate.extract(envelope.trace),
                    kind=self._SpanKind.CONSUMER,
                    attributes={**_messaging(source), **_message(envelope)},
                    links=[self._Link(batch.get_span_context())] if batch else None,
                )
        current = batch or next(iter(spans.values()))
        outer, self._local.spans = self._spans(), spans
        try:
            with self._trace.use_span(current, end_on_exit=False):
                yield
        except BaseException as error:
            for span in [*spans.values(), *([batch] if batch else [])]:
                span.record_exception(error)
                span.set_status(self._Status(self._StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
        finally:
            self._local.spans = outer
            for span in spans.values():
                span.end()
            if batch:
                batch.end()

    def _context_in(self, trace: dict[str, str]):
        return self._trace.get_current_span(self._propagate.extract(trace)).get_span_context()

    def ids(self, message_id: str | None) -> tuple[str, str] | None:
        """The trace and span ids (hex) of message_id's process span, else of the current span."""
        span = self._spans().get(message_id) or self._trace.get_current_span()
        context = span.get_span_context()
        return (
            (format(context.trace_id, "032x"), format(context.span_id, "016x")) if context.is_valid else None
        )

    def context_of(self, envelope: Envelope) -> dict[str, str]:
        span = self._spans().get(str(envelope.message_id))
        if span is None:
            return envelope.trace
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier

    def note(self, envelope: Envelope, name: str, attributes: dict[str, str]) -> None:
        span = self._spans().get(str(envelope.message_id)) or self._trace.get_current_span()
        span.add_event(name, attributes)

    def describe(self, attributes: dict, envelope: Envelope | None = None) -> None:
        span = self._spans().get(str(envelope.message_id)) if envelope else None
        (span or self._trace.get_current_span()).set_attributes(attributes)

    @contextlib.contextmanager
    def publishing(self, rows: list[dict]) -> Iterator[None]:
        """A PRODUCER span per row, child of the context the row was written with; the row then
        carries the publish span's context (headers and body) for its consumer to continue."""
        spans = []
        for position, row in enumerate(rows):
            body = row["body"]
            span = self._tracer.start_span(
                f"publish {row['exchange']}",
                context=self._propagate.extract(row["headers"]),
                kind=self._SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": row["exchange"],
                    "messaging.rabbitmq.destination.routing_key": row["routing_key"],
                    "messaging.message.id": body["message_id"],
                    "taskgate.task_id": body["task_id"],
                    "taskgate.task_uuid": body["task_uuid"],
                    "taskgate.client_id": body["client_id"],
                },
            )
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier, context=self._trace.set_span_in_context(span))
            headers = {key: value for key, value in row["headers"].items() if key not in TRACE_HEADERS}
            rows[position] = {**row, "headers": {**headers, **carrier}, "body": {**body, "trace": carrier}}
            spans.append(span)
        try:
            yield
        except BaseException as error:
            for span in spans:
                span.set_status(self._Status(self._StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
        finally:
            for span in spans:
                span.end()

    @contextlib.contextmanager
    def attempting(self, trace: dict[str, str] | None, attributes: dict) -> Iterator[dict]:
        """The attempt as an HTTP CLIENT span (POST), child of the result's handling."""
        with self._tracer.start_as_current_span(
            "POST",
            context=self._propagate.extract(trace or {}),
            kind=self._SpanKind.CLIENT,
            attributes=attributes,
        ) as span:
            call = {"headers": self.current()}
            yield call
            if call.get("status_code") is not None:
                span.set_attribute("http.response.status_code", call["status_code"])
            if call.get("error") or (call.get("status_code") or 0) >= 400:
                span.set_status(self._Status(self._StatusCode.ERROR, call.get("error") or ""))
                span.set_attribute("error.type", str(call.get("status_code") or "error"))


def _messaging(source: str) -> dict:
    return {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": source,
    }


def _message(envelope: Envelope) -> dict:
    return {
        "messaging.message.id": str(envelope.message_id),
        "taskgate.message_type": envelope.type,
        "taskgate.task_id": envelope.task_id,
        "taskgate.task_uuid": str(envelope.task_uuid),
        "taskgate.client_id": envelope.client_id,
    }
