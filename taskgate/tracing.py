"""OpenTelemetry tracing, when the `otel` extra is installed and the OTEL_* environment asks for it.

setup() is called once per process by its composition root (wsgi.py, `taskgate serve`, `taskgate
worker`). Off, it returns at once and nothing of OpenTelemetry is imported. On, it installs the
tracer messaging asks (messaging.tracing), instruments Flask, SQLAlchemy and requests, and adds
trace_id/span_id to the log lines. docs/observability.md says what a trace holds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from messaging import tracing
from taskgate.otel_tracer import OpenTelemetryTracer

log = logging.getLogger(__name__)

# Any of these set (and OTEL_SDK_DISABLED not true) turns tracing on.
TURNED_ON_BY = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER")


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for tracing."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name) for name in TURNED_ON_BY)


def setup(role: str, *, provider=None) -> bool:
    """Trace this process (role: webhook, worker-<context>, serve…) if the environment asks for it,
    or into provider (tests); whether it does."""
    if provider is None and not wanted():
        return False
    if tracing.tracer().enabled:
        return True
    try:
        provider = provider or _provider_from_environment(role)
    except ImportError:
        log.warning("OTEL_* asks for tracing, but the otel extra is missing: pip install 'taskgate[otel]'")
        return False
    provider.sampler = _inside_traces(provider.sampler)  # before any tracer is made: each copies it
    tracing.install(OpenTelemetryTracer(provider))
    _instrument_libraries(provider)
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceIds())
    return True


def shutdown() -> None:
    """Stop tracing this process (tests): what was traced is exported, nothing more is."""
    traced = tracing.tracer()
    if not traced.enabled:
        return
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    tracing.install(tracing.Tracer())
    RequestsInstrumentor().uninstrument()
    SQLAlchemyInstrumentor().uninstrument()
    for handler in logging.getLogger().handlers:
        for kept in [kept for kept in handler.filters if isinstance(kept, TraceIds)]:
            handler.removeFilter(kept)
    traced.provider.shutdown()


def instrument_app(app) -> None:
    """Trace app's requests (the webhook's server span); nothing when tracing is off."""
    if tracing.tracer().enabled:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        # Probes and scrapes are no one's task: they make no traces.
        quiet = "healthz,readyz,metrics"
        FlaskInstrumentor.instrument_app(app, tracer_provider=tracing.tracer().provider, excluded_urls=quiet)


def instrument_engine(engine) -> None:
    """Trace engine's statements inside traces; nothing when tracing is off."""
    if tracing.tracer().enabled:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # Its declared range ends before SQLAlchemy 2.1, whose engine events it uses are unchanged.
        SQLAlchemyInstrumentor().instrument(
            engine=engine, tracer_provider=tracing.tracer().provider, skip_dep_check=True
        )


def _provider_from_environment(role: str):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES take precedence over these.
    resource = Resource.create({"service.name": "taskgate", "taskgate.role": role})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def _instrument_libraries(provider) -> None:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument(tracer_provider=provider)


def _inside_traces(configured):
    """configured (OTEL_TRACES_SAMPLER), except that an outgoing call (a CLIENT span: a statement,
    an HTTP request) starts no trace of its own: the dispatcher's lease and the relay's sweep would
    otherwise make a trace each, many times a second."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class InsideTraces(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, *more):
            parent = trace.get_current_span(parent_context).get_span_context()
            if kind == trace.SpanKind.CLIENT and not parent.is_valid:
                return SamplingResult(Decision.DROP)
            return configured.should_sample(parent_context, trace_id, name, kind, attributes, *more)

        def get_description(self) -> str:
            return f"InsideTraces({configured.get_description()})"

    return InsideTraces()


class TraceIds(logging.Filter):
    """trace_id and span_id on each log line: of the message the line is about (its message_id
    extra), else of the current span."""

    def filter(self, record: logging.LogRecord) -> bool:
        traced = tracing.tracer()
        ids = traced.ids(getattr(record, "message_id", None)) if traced.enabled else None
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True
