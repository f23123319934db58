"""OpenTelemetry in the split deployment: gunicorn and one worker process per context on
PostgreSQL and RabbitMQ, exporting over OTLP/HTTP to a local receiver. A cancel that cascades from
the appointment to the maintenance context, with a callback retried after a 500, is one trace whose
parent links cross every process it passed through."""

from __future__ import annotations

import json

import pytest
import requests

from tests import backends
from tests.e2e.helpers import BIN, Process, environment, free_port, run, wait_until_healthy
from tests.factories import cancel_task, maintenance_task, schedule_task, signed, upsert_task, wait_for
from tests.receiver import Receiver
from tests.trace_checks import CLIENT_TRACE, TRACEPARENT, callback_attempts, client_trace, from_otlp

pytestmark = pytest.mark.e2e

WORKERS = ("gateway", "customers", "appointment", "maintenance")


def first_callback_of_the_cancel_fails(request: dict, number: int) -> int:
    if json.loads(request["body"])["data"]["task_id"] != "X-1":
        return 204
    first_callback_of_the_cancel_fails.seen += 1
    return 500 if first_callback_of_the_cancel_fails.seen == 1 else 204


def test_a_cancel_is_one_trace_across_the_split_deployment(tmp_path, postgres_database):
    broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    postgres_database.empty()
    backends.empty_broker(broker_url)
    first_callback_of_the_cancel_fails.seen = 0
    with Receiver() as collector, Receiver(first_callback_of_the_cancel_fails) as receiver:
        env = environment(
            TASKGATE_DATABASE_URL=postgres_database.url,
            TASKGATE_BROKER_URL=broker_url,
            TASKGATE_CALLBACK_RETRY_SCHEDULE="0,0.2,1",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url.rsplit("/", 1)[0],
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        run([str(BIN / "taskgate"), "db", "upgrade"], env)
        credentials = json.loads(
            run([str(BIN / "taskgate"), "clients", "add", "acme", "--callback-url", receiver.url], env)
        )
        port = free_port()
        gunicorn = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "wsgi:app"]
        processes = [Process(gunicorn, env, tmp_path / "gunicorn.log")] + [
            Process([str(BIN / "taskgate"), "worker", "--context", name], env, tmp_path / f"{name}.log")
            for name in WORKERS
        ]
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, processes[0])
            tasks_url = f"{base_url}/v1/clients/acme/tasks"
            auth = {"Authorization": f"Bearer {credentials['api_token']}"}

            def post(task: dict, **extra: str) -> None:
                raw, headers = signed(
                    credentials["signing_secret"], task, webhook_id=f"msg_{task['task_id']}"
                )
                response = requests.post(tasks_url, data=raw, headers={**headers, **extra}, timeout=10)
                assert response.status_code == 202, response.text

            def status(task_id: str) -> dict:
                return requests.get(f"{tasks_url}/{task_id}", headers=auth, timeout=10).json()

            post(upsert_task())
            post(schedule_task("A-1", "2026-12-01T09:00:00+01:00"))
            post(maintenance_task("M-1", "2026-12-01T10:00:00Z", appointment_task_id="A-1"))
            wait_for(lambda: status("M-1")["status"] == "succeeded", timeout=30, message="M-1 to succeed")
            post(cancel_task("X-1", "A-1"), traceparent=TRACEPARENT)
            wait_for(
                lambda: [d["status"] for d in status("X-1")["deliveries"]] == ["delivered"] * 2,
                timeout=30,
                message="both callbacks of the cancel delivered",
            )

            def whole_trace():
                spans = from_otlp([request["body"] for request in collector.requests])
                trace = [span for span in spans if span.trace_id == CLIENT_TRACE]
                return len(callback_attempts(trace)) == 3 and spans

            spans = wait_for(whole_trace, timeout=30, message="the cancel's spans exported")
        finally:
            codes = [process.stop() for process in processes]
        assert codes == [0] * len(processes), "\n".join(process.output() for process in processes)
        spans = from_otlp([request["body"] for request in collector.requests])  # those sent at exit too

    trace = client_trace(spans, "X-1")
    roles = {span.role for span in trace}
    assert {"webhook", "worker-appointment", "worker-maintenance", "worker-gateway"} <= roles
    # Each process's spans hang from another process's span: the parent links cross processes.
    by_id = {span.span_id: span for span in trace}
    crossings = {(by_id[span.parent_id].role, span.role) for span in trace if span.parent_id in by_id}
    assert ("webhook", "worker-appointment") in crossings
    assert ("worker-appointment", "worker-maintenance") in crossings
    assert ("worker-maintenance", "worker-gateway") in crossings
    assert sorted(callback_attempts(trace)) == [204, 204, 500]
    sent = [r["headers"].get("traceparent", "") for r in receiver.requests if b'"X-1"' in r["body"]]
    assert len(sent) == 3 and all(traceparent.split("-")[1] == CLIENT_TRACE for traceparent in sent)
    lines = [json.loads(line) for line in processes[3].output().splitlines() if line.startswith("{")]
    about_cancel = [line for line in lines if line.get("task_id") == "X-1"]
    assert about_cancel and {line.get("trace_id") for line in about_cancel} == {CLIENT_TRACE}
