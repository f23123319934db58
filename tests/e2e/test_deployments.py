"""End to end, as a client sees it: real processes, real HTTP both ways.

Once as `taskgate serve` on the embedded defaults, once split into gunicorn and workers on
PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from tests import backends
from tests.e2e import scenario
from tests.e2e.helpers import BIN, Process, environment, free_port, run, wait_until_healthy
from tests.factories import wait_for
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


def test_serve_on_embedded_defaults(tmp_path, receiver):
    env = environment(TASKGATE_DATA_DIR=str(tmp_path / "data"))
    del env["TASKGATE_ALLOW_PRIVATE_CALLBACKS"]  # no setup: the embedded defaults call back to 127.0.0.1
    credentials = json.loads(
        run([str(BIN / "taskgate"), "clients", "add", "acme", "--callback-url", receiver.url], env)
    )
    port = free_port()
    serve = Process([str(BIN / "taskgate"), "serve", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", serve)
        scenario.upsert_comes_back_signed(f"http://127.0.0.1:{port}", credentials, receiver)
        scenario.every_task_type_and_the_cancel_cascade(f"http://127.0.0.1:{port}", credentials, receiver)
        scenario.a_chunked_body_over_the_limit_is_refused(f"http://127.0.0.1:{port}")
    finally:
        code = serve.stop()
    assert code == 0, serve.output()
    assert '"task_id": "T-1001"' in serve.output()  # log lines carry the task's ids


# Worker processes by the contexts each serves: as the README deploys them, each with the gateway
# beside its contexts (results recorded in place in both, customer events crossing between them
# on the broker); and the gateway alone, where every result reaches it through the broker.
SPLIT_LAYOUTS = {
    "each-worker-with-the-gateway": [
        ("gateway", "survey"),
        ("gateway", "customers", "appointment", "maintenance", "visits"),
    ],
    "the-gateway-alone": [("gateway",), ("customers",), ("survey", "appointment", "maintenance")],
}


@pytest.mark.parametrize("layout", SPLIT_LAYOUTS.values(), ids=SPLIT_LAYOUTS.keys())
def test_split_processes_on_postgresql_and_rabbitmq(tmp_path, receiver, postgres_database, layout):
    broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    postgres_database.empty()
    backends.empty_broker(broker_url)
    env = environment(TASKGATE_DATABASE_URL=postgres_database.url, TASKGATE_BROKER_URL=broker_url)
    run([str(BIN / "taskgate"), "db", "upgrade"], env)
    credentials = json.loads(
        run([str(BIN / "taskgate"), "clients", "add", "acme", "--callback-url", receiver.url], env)
    )
    port = free_port()
    processes = [
        Process(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "wsgi:app"],
            env,
            tmp_path / "gunicorn.log",
        ),
        *(
            Process(
                [str(BIN / "taskgate"), "worker", *(f"--context={name}" for name in contexts)],
                env,
                tmp_path / f"worker-{'+'.join(contexts)}.log",
            )
            for contexts in layout
        ),
    ]
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes[0])
        scenario.upsert_comes_back_signed(f"http://127.0.0.1:{port}", credentials, receiver)
        scenario.every_task_type_and_the_cancel_cascade(f"http://127.0.0.1:{port}", credentials, receiver)
    finally:
        codes = [process.stop() for process in processes]
    assert codes == [0] * len(processes), "\n".join(process.output() for process in processes)
    # Each result is recorded by the worker that decided it if that one runs the gateway too,
    # else by the worker with the gateway, after the broker.
    workers = dict(zip(layout, processes[1:], strict=True))
    for task_id, context in (("S-1", "survey"), ("A-1", "appointment"), ("M-1", "maintenance")):
        deciding = next(contexts for contexts in layout if context in contexts)
        recording = deciding if "gateway" in deciding else ("gateway",)
        assert _recorded(workers[recording].output(), task_id), f"{task_id} not recorded by {recording}"
        others = [worker for contexts, worker in workers.items() if contexts != recording]
        assert not any(_recorded(worker.output(), task_id) for worker in others)


def _recorded(log: str, task_id: str) -> bool:
    return any('"result recorded"' in line and f'"task_id": "{task_id}"' in line for line in log.splitlines())


def test_a_worker_told_to_stop_while_it_starts_stops_cleanly(tmp_path, postgres_database):
    """SIGTERM while the worker still waits for its broker ends the start-up with exit 0, as an
    orchestrator stopping a deployment that is still coming up expects."""
    postgres_database.empty()
    env = environment(
        TASKGATE_DATABASE_URL=postgres_database.url,
        TASKGATE_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}//",  # nobody listens there
    )
    run([str(BIN / "taskgate"), "db", "upgrade"], env)
    worker = Process([str(BIN / "taskgate"), "worker", "--context", "survey"], env, tmp_path / "worker.log")
    try:
        wait_for(lambda: "broker unreachable" in worker.output(), timeout=60, message="waiting for broker")
    finally:
        code = worker.stop(timeout=20)
    assert code == 0, worker.output()
    assert "stopped while starting" in worker.output()


def test_the_http_side_apart_on_the_in_process_broker_leaves_its_tasks_to_serve(tmp_path, monkeypatch):
    """gunicorn's workers would publish what they accept into a broker of their own, which no
    worker reads, and forget it: they publish nothing, and `serve` sweeps the outbox."""
    monkeypatch.delenv("TASKGATE_BROKER_URL", raising=False)
    monkeypatch.setenv("TASKGATE_DATA_DIR", str(tmp_path))
    webhook = runpy.run_path(str(Path(__file__).parents[2] / "wsgi.py"))
    assert webhook["relay"] is None
    assert webhook["app"].extensions["taskgate"].publish([{"id": 1}]) is None  # nothing offered
    webhook["engine"].dispose()
