"""`taskgate demo` as a newcomer runs it: real processes, real HTTP both ways, its printed tour."""

from __future__ import annotations

import re
import subprocess

import pytest
import requests
from sqlalchemy.orm import Session

from gateway.deliveries import list_deliveries
from messaging.db import make_engine
from tests import backends
from tests.e2e.helpers import BIN, Process, environment, free_port, wait_until_healthy
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

# (task_id, context, outcome, status) of every callback the tour must bring, and nothing else.
EXPECTED = {
    ("T-1", "customers", "customer.registered", "succeeded"),
    ("S-1", "survey", "survey.assigned", "succeeded"),
    ("A-1", "appointment", "appointment.scheduled", "succeeded"),
    ("A-2", "appointment", "appointment.rejected", "rejected"),
    ("M-1", "maintenance", "maintenance.scheduled", "succeeded"),
    ("X-1", "appointment", "appointment.canceled", "succeeded"),
    ("X-1", "maintenance", "maintenance.canceled", "succeeded"),
    ("V-1", "visits", "visit.booked", "succeeded"),
    ("T-2", "customers", "customer.registered", "succeeded"),
    ("V-2", "visits", "visit.rejected", "rejected"),
}
CALLBACK_LINE = re.compile(r"^   (<|!!) (\S+) (\S+): (\S+) \((\w+)\)\s+(.*)\[(.+)\]$")


def run_demo(url: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "taskgate"), "demo", "--url", url, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def callbacks_printed(output: str) -> dict[tuple, str]:
    """(task_id, context, outcome, status) -> the rest of the line, for each callback the demo printed."""
    printed = {}
    for line in output.splitlines():
        if match := CALLBACK_LINE.match(line):
            mark, task_id, context, outcome, status, detail, verdict = match.groups()
            assert (mark, verdict) == ("<", "signature verified"), line
            key = (task_id, context, outcome, status)
            assert key not in printed, f"printed twice: {line}"
            printed[key] = detail
    return printed


def assert_whole_tour(output: str) -> str:
    """The ten callbacks, as expected and verified; returns the demo's client id."""
    printed = callbacks_printed(output)
    assert set(printed) == EXPECTED, output
    assert "reason=resource_busy" in printed["A-2", "appointment", "appointment.rejected", "rejected"]
    assert "maintenance_task_id=M-1" in printed["X-1", "maintenance", "maintenance.canceled", "succeeded"]
    assert "reason=position_busy" in printed["V-2", "visits", "visit.rejected", "rejected"]
    assert "10 callbacks for 9 tasks" in output
    assert "/v1/clients/demo-" in output and "/metrics" in output
    assert len(output.splitlines()) <= 48, output
    return re.search(r"^client (demo-[0-9a-f]+) registered", output, re.MULTILINE).group(1)


def test_the_demo_starts_serve_itself_and_stops_it(tmp_path):
    env = environment(TASKGATE_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(tmp_path))  # TMPDIR: serve's log
    del env["TASKGATE_ALLOW_PRIVATE_CALLBACKS"]  # the demo allows its own receiver for the serve it starts
    url = f"http://127.0.0.1:{free_port()}"

    demo = run_demo(url, env)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "the demo started `taskgate serve` there" in demo.stdout
    assert "Stopped the taskgate serve the demo started (exit code 0)" in demo.stdout
    client_id = assert_whole_tour(demo.stdout)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/healthz", timeout=5)
    engine = make_engine(backends.sqlite_url(tmp_path / "data"))
    with Session(engine) as session:
        stored = list_deliveries(session, client_id=client_id)
    engine.dispose()
    assert {(d["task_id"], d["context"], d["outcome"], d["status"]) for d in stored} == {
        (task_id, context, outcome, "delivered") for task_id, context, outcome, _ in EXPECTED
    }


def test_the_demo_uses_a_running_taskgate_and_leaves_it_running(tmp_path):
    env = environment(TASKGATE_DATA_DIR=str(tmp_path / "data"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = Process([str(BIN / "taskgate"), "serve", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        wait_until_healthy(url, serve)
        demo = run_demo(url, env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert f"Using the taskgate serving at {url}" in demo.stdout
        assert_whole_tour(demo.stdout)
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        code = serve.stop()
    assert code == 0, serve.output()


def test_a_callback_that_does_not_come_fails_the_demo_with_the_reason(tmp_path):
    env = environment(TASKGATE_DATA_DIR=str(tmp_path / "data"))
    env["TASKGATE_ALLOW_PRIVATE_CALLBACKS"] = "0"  # so this server refuses to call the demo's 127.0.0.1
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = Process([str(BIN / "taskgate"), "serve", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        wait_until_healthy(url, serve)
        demo = run_demo(url, env, "--timeout", "2")
    finally:
        serve.stop()
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert "FAILED: no callback (customers customer.registered) for T-1 within 2 s." in demo.stdout
    assert "taskgate has it as succeeded" in demo.stdout
    assert "TASKGATE_ALLOW_PRIVATE_CALLBACKS=1" in demo.stdout  # the server's own reason, read back


def test_the_demo_says_so_when_something_else_answers_at_the_url(tmp_path):
    env = environment(TASKGATE_DATA_DIR=str(tmp_path / "data"))
    with Receiver() as receiver:  # answers POSTs only: GET /healthz is 501 there
        url = receiver.url.removesuffix("/callbacks")
        demo = run_demo(url, env)
    assert demo.returncode == 1
    assert f"something answers at {url}, but not as taskgate: GET /healthz gave 501" in demo.stderr
