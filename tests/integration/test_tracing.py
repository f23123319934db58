"""OpenTelemetry in one process, spans into the SDK's in-memory exporter: a task's spans form one
trace from the client's request to its last callback attempt, across contexts; off, nothing of
OpenTelemetry is even imported."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import responses

from messaging import tracing as messaging_tracing
from taskgate import tracing
from tests.factories import cancel_task, maintenance_task, schedule_task, signed, upsert_task, wait_for
from tests.integration.conftest import CALLBACK_URL, TaskClient
from tests.trace_checks import (
    CLIENT_SPAN,
    CLIENT_TRACE,
    TRACEPARENT,
    callback_attempts,
    client_trace,
    from_sdk,
    processed_by,
)


@pytest.fixture
def exporter():
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"taskgate.role": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.setup("test", provider=provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(tracing.TraceIds())

    def emit(self, record):
        self.records.append(record)


def test_a_cancel_is_one_trace_across_contexts_and_a_retried_callback(
    exporter, gateway, credentials, callbacks
):
    engine = gateway.extensions["taskgate"].engine
    tracing.instrument_app(gateway)
    tracing.instrument_engine(engine)
    received = []

    def answer(request):  # the cancel's first callback fails once: it is attempted again
        body = json.loads(request.body)
        received.append((body["data"]["task_id"], request.headers.get("traceparent")))
        first_of_cancel = [task_id for task_id, _ in received].count("X-1") == 1
        return (500 if body["data"]["task_id"] == "X-1" and first_of_cancel else 204), {}, ""

    callbacks.add_callback(responses.POST, CALLBACK_URL, callback=answer)
    client = TaskClient(gateway, credentials)
    client.submit(upsert_task())
    client.submit(schedule_task("A-1", "2026-12-01T09:00:00+01:00"))
    client.submit(maintenance_task("M-1", "2026-12-01T10:00:00Z", appointment_task_id="A-1"))
    client.wait_for_status("M-1", "succeeded")
    logs, root = Records(), logging.getLogger()
    level = root.level
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    try:
        raw, headers = signed(
            credentials["signing_secret"], cancel_task("X-1", "A-1"), webhook_id="msg_cancel"
        )
        response = client.http.post(
            "/v1/clients/acme/tasks", data=raw, headers={**headers, "traceparent": TRACEPARENT}
        )
        assert response.status_code == 202
        wait_for(
            lambda: [d["status"] for d in client.read("X-1")["deliveries"]] == ["delivered"] * 2,
            timeout=20,
            message="both callbacks of the cancel delivered",
        )

        def attempted():  # an attempt's span ends once its record is handed over, maybe a moment later
            spans = from_sdk(exporter.get_finished_spans())
            return (
                len(callback_attempts([span for span in spans if span.trace_id == CLIENT_TRACE])) == 3
                and spans
            )

        spans = wait_for(attempted, timeout=20, message="the three attempts' spans")
    finally:
        root.removeHandler(logs)
        root.setLevel(level)

    trace = client_trace(spans, "X-1")
    [request] = [span for span in trace if span.kind == "SERVER"]
    assert request.parent_id == CLIENT_SPAN and request.attributes["taskgate.task_id"] == "X-1"
    assert {"taskgate.appointment", "taskgate.maintenance"} <= processed_by(trace)
    # Each result is recorded in the trace: here, the gateway running in the same process, in the
    # transaction of the context that decided it.
    statements = [span.attributes.get("db.statement", "") for span in trace if span.kind == "CLIENT"]
    assert sum("INSERT INTO gateway_results" in statement for statement in statements) == 2
    assert any(span.kind == "PRODUCER" for span in trace)
    assert any(span.kind == "CLIENT" and "db.system" in span.attributes for span in trace)  # statements nest
    assert sorted(callback_attempts(trace)) == [204, 204, 500]
    assert [span.failed for span in trace if span.attributes.get("http.response.status_code") == 500] == [
        True
    ]
    outcomes = {span.attributes.get("taskgate.outcome") for span in trace if span.kind == "CONSUMER"}
    assert {"appointment.canceled", "maintenance.canceled"} <= outcomes
    # The client's service can continue the trace from each callback.
    sent = [traceparent for task_id, traceparent in received if task_id == "X-1"]
    assert len(sent) == 3 and all(traceparent.split("-")[1] == CLIENT_TRACE for traceparent in sent)
    # Log lines about the task carry the trace, and no statement outside a task makes a trace.
    about_cancel = [record for record in logs.records if getattr(record, "task_id", None) == "X-1"]
    assert about_cancel and {getattr(record, "trace_id", None) for record in about_cancel} == {CLIENT_TRACE}
    assert not [span for span in spans if span.kind == "CLIENT" and span.parent_id is None]


def test_a_parked_task_keeps_its_trace_and_notes_its_park_and_resume(
    exporter, gateway, credentials, callbacks
):
    callbacks.add(responses.POST, CALLBACK_URL, status=204)
    tracing.instrument_app(gateway)
    client = TaskClient(gateway, credentials)
    raw, headers = signed(credentials["signing_secret"], schedule_task("A-9", "2026-12-02T09:00:00Z"))
    assert client.http.post(
        "/v1/clients/acme/tasks", data=raw, headers={**headers, "traceparent": TRACEPARENT}
    )
    client.wait_for_status("A-9", "waiting")  # its customer is not known yet
    client.submit(upsert_task())
    client.wait_for_status("A-9", "succeeded")

    def attempted():  # the attempt's span ends once its record is handed over, maybe a moment later
        spans = from_sdk(exporter.get_finished_spans())
        return callback_attempts([span for span in spans if span.trace_id == CLIENT_TRACE]) and spans

    spans = wait_for(attempted, timeout=20, message="the callback attempt's span")
    trace = client_trace(spans, "A-9")
    events = {event for span in trace for event in span.events}
    assert "taskgate.parked" in events
    resumed_by = [span for span in spans if "taskgate.resumed" in span.events]
    assert resumed_by and all(span.trace_id != CLIENT_TRACE for span in resumed_by)  # the upsert's trace
    # Decided where it was resumed, in a process span of its own trace that says the outcome.
    outcomes = {span.attributes.get("taskgate.outcome") for span in trace if span.kind == "CONSUMER"}
    assert "appointment.scheduled" in outcomes
    assert callback_attempts(trace) == [204]


def test_off_nothing_of_opentelemetry_is_imported(tmp_path):
    script = f"""
import os, sys
for name in [name for name in os.environ if name.startswith("OTEL_")]:
    del os.environ[name]
os.environ["OTEL_SDK_DISABLED"] = "true"
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
from gateway import create_app
from gateway.config import Settings
from messaging.db import make_engine
from taskgate import tracing
from taskgate.registry import overview_sources
from taskgate.runtime import Runtime
assert not tracing.setup("check")
settings = Settings.from_env({{"TASKGATE_DATA_DIR": {str(tmp_path)!r}}})
app = create_app(settings, engine=make_engine(settings.database_url), overview_sources=overview_sources())
tracing.instrument_app(app)
loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
assert not loaded, loaded
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_the_environment_turns_tracing_on():
    assert not tracing.wanted({})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert not messaging_tracing.tracer().enabled


def test_an_attempt_span_shows_the_callback_url_without_credentials_or_query():
    from types import SimpleNamespace

    from gateway.callbacks.sender import span_attributes

    row = SimpleNamespace(
        task_id="T-1",
        task_uuid="u",
        client_id="acme",
        result_id="r",
        attempts=2,
        callback_url="https://user:secret@hooks.example:8443/cb?token=abc",
    )
    attributes = span_attributes(row)
    assert attributes["url.full"] == "https://hooks.example:8443/cb"
    assert attributes["server.address"] == "hooks.example" and attributes["taskgate.attempt"] == 3
    malformed = span_attributes(SimpleNamespace(**{**vars(row), "callback_url": "http://[::1/cb"}))
    assert "url.full" not in malformed and malformed["taskgate.task_id"] == "T-1"
