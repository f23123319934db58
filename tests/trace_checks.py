"""Spans as the tests read them (from the SDK's in-memory exporter or from OTLP/HTTP requests), and
the check that one task's spans form one connected trace."""

from __future__ import annotations

import dataclasses

# The client's own trace, which its webhook request continues.
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@dataclasses.dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    attributes: dict
    role: str  # the process's taskgate.role
    failed: bool
    events: list[str]


def from_sdk(spans) -> list[Span]:
    """Spans the SDK finished (InMemorySpanExporter.get_finished_spans())."""
    from opentelemetry.trace import StatusCode

    return [
        Span(
            trace_id=format(span.context.trace_id, "032x"),
            span_id=format(span.context.span_id, "016x"),
            parent_id=format(span.parent.span_id, "016x") if span.parent else None,
            name=span.name,
            kind=span.kind.name,
            attributes=dict(span.attributes),
            role=span.resource.attributes.get("taskgate.role", ""),
            failed=span.status.status_code == StatusCode.ERROR,
            events=[event.name for event in span.events],
        )
        for span in spans
    ]


def from_otlp(bodies: list[bytes]) -> list[Span]:
    """Spans in OTLP/HTTP protobuf export requests."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    spans = []
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {item.key: _value(item.value) for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                            name=span.name,
                            kind=SpanMessage.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                            attributes={item.key: _value(item.value) for item in span.attributes},
                            role=resource.get("taskgate.role", ""),
                            failed=span.status.code == Status.STATUS_CODE_ERROR,
                            events=[event.name for event in span.events],
                        )
                    )
    return spans


def _value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def client_trace(spans: list[Span], task_id: str) -> list[Span]:
    """The spans of the trace the client's request started, checked to be one connected trace:
    each span's parent is one of them (or the client's own span), and every span about task_id
    belongs to it."""
    trace = [span for span in spans if span.trace_id == CLIENT_TRACE]
    known = {span.span_id for span in trace} | {CLIENT_SPAN}
    orphans = [(span.name, span.role, span.parent_id) for span in trace if span.parent_id not in known]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
    strays = [
        (span.name, span.role)
        for span in spans
        if span.attributes.get("taskgate.task_id") == task_id and span.trace_id != CLIENT_TRACE
    ]
    assert not strays, f"spans of {task_id} in another trace: {strays}"
    return trace


def callback_attempts(trace: list[Span]) -> list[int | None]:
    """The status codes of the callback attempts in trace, in the order they ended."""
    return [
        span.attributes.get("http.response.status_code")
        for span in trace
        if span.kind == "CLIENT" and span.name == "POST" and "taskgate.attempt" in span.attributes
    ]


def processed_by(trace: list[Span]) -> set[str]:
    """The queues whose consumers processed a message of the trace."""
    return {
        span.attributes["messaging.destination.name"]
        for span in trace
        if span.kind == "CONSUMER" and "taskgate.task_id" in span.attributes
    }
