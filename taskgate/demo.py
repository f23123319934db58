"""`taskgate demo`: play a client company against taskgate and say what happens, step by step."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import requests

from taskgate.receiver import Callback, make_server
from taskgate.sender import post_task
from taskgate.tour import Step, steps

Echo = Callable[[str], None]
Register = Callable[[str, str], dict]  # (client_id, callback_url) -> credentials


class DemoFailed(Exception):
    """The demo cannot go on; the message says why and what to check."""


class Inbox:
    """The callbacks the receiver got, handed to the main thread in arrival order, repeats dropped
    (at-least-once delivery: a client dedupes on webhook-id)."""

    def __init__(self):
        self._queue: queue.Queue[Callback] = queue.Queue()
        self._seen: set[str | None] = set()
        self._lock = threading.Lock()

    def put(self, callback: Callback) -> None:
        with self._lock:
            if callback.webhook_id in self._seen:
                return
            self._seen.add(callback.webhook_id)
        self._queue.put(callback)

    def next(self, deadline: float) -> Callback | None:
        try:
            return self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None


def run(url: str, register: Register, echo: Echo, *, timeout: float = 30, database: str = "") -> int:
    """Run the tour against the taskgate at url (starting one if none answers); the exit code."""
    url = url.rstrip("/")
    secret: list[str] = []  # known once the client is registered, after the receiver listens
    inbox = Inbox()
    echo("taskgate demo: this plays a client company. It sends signed tasks to taskgate's webhook; taskgate")
    echo(
        "routes each to the context that handles it, and every result comes back to us as a signed callback."
    )
    receiver = make_server(0, lambda: secret[0] if secret else None, inbox.put)
    threading.Thread(target=receiver.serve_forever, name="demo-receiver", daemon=True).start()
    try:
        with taskgate_at(url, echo):
            callback_url = f"http://127.0.0.1:{receiver.server_port}/callbacks"
            client_id = f"demo-{secrets.token_hex(3)}"
            credentials = register(client_id, callback_url)
            secret.append(credentials["signing_secret"])
            echo(f"client {client_id} registered; its endpoint (this demo) listens at {callback_url}")
            echo(
                f"  tasks are signed, and callbacks verified, with its secret {credentials['signing_secret']}"
            )
            return _tour(url, credentials, inbox, echo, timeout, database)
    finally:
        receiver.shutdown()
        receiver.server_close()


def _tour(url: str, credentials: dict, inbox: Inbox, echo: Echo, timeout: float, database: str) -> int:
    client_id = credentials["client_id"]
    started = time.monotonic()
    received: list[Callback] = []
    tour = steps(datetime.now(UTC) + timedelta(days=1))
    for number, step in enumerate(tour, 1):
        echo(f"{number}. {step.why}")
        response = post_task(url, client_id, credentials["signing_secret"], json.dumps(step.task).encode())
        _check_accepted(response, step.task, url, client_id, database)
        echo(
            f"   > {step.task['task_id']} {step.task['type']} for {step.task['customer_id']}: "
            f"{response.status_code} {HTTPStatus(response.status_code).phrase}"
        )
        missing = dict(step.expected)
        deadline = time.monotonic() + timeout
        while missing:
            callback = inbox.next(deadline)
            if callback is None:
                echo(_not_arrived(url, credentials, step, missing, timeout))
                return 1
            received.append(callback)
            echo(_describe(callback, _as_expected(callback, tour)))
            data = callback.data or {}
            if data.get("task_id") == step.task["task_id"]:
                missing.pop(data.get("context"), None)
    wrong = [c for c in received if not c.verified or not _as_expected(c, tour)]
    seconds = time.monotonic() - started
    if wrong:
        echo(f"FAILED: {len(wrong)} of {len(received)} callbacks not as expected or not verified (marked !!)")
    else:
        echo(
            f"{len(received)} callbacks for {len(tour)} tasks in {seconds:.1f} s, each signed by taskgate "
            "and verified here with the client's secret."
        )
    echo("Follow one task (its results and each delivery attempt) and watch the counters:")
    echo(
        f"  curl -H 'Authorization: Bearer {credentials['api_token']}' {url}/v1/clients/{client_id}/tasks/X-1"
    )
    echo(f"  curl {url}/metrics")
    return 1 if wrong else 0


def _check_accepted(response: requests.Response, task: dict, url: str, client_id: str, database: str) -> None:
    if response.status_code == 401:
        raise DemoFailed(
            f"the taskgate at {url} does not know client {client_id} (401): it must use the database this "
            f"shell registered it in ({database}); set the same TASKGATE_DATABASE_URL (or TASKGATE_DATA_DIR)"
        )
    if response.status_code != 202:
        raise DemoFailed(f"{task['task_id']} was not accepted: {response.status_code} {response.text[:500]}")


def _as_expected(callback: Callback, tour: list[Step]) -> bool:
    data = callback.data or {}
    return any(
        data.get("task_id") == step.task["task_id"]
        and step.expected.get(data.get("context")) == data.get("outcome")
        for step in tour
    )


def _describe(callback: Callback, expected: bool) -> str:
    data = callback.data
    if data is None:
        return f"   !! unreadable callback {callback.webhook_id}: {callback.body[:100]!r}"
    detail = " ".join(f"{key}={_short(value)}" for key, value in (data.get("result") or {}).items())
    verdict = "signature verified" if callback.verified else callback.verdict
    mark = "<" if expected and callback.verified else "!!"
    line = (
        f"   {mark} {data.get('task_id')} {data.get('context')}: {data.get('outcome')} ({data.get('status')})"
    )
    return f"{line}  {detail}  [{verdict}]" if detail else f"{line}  [{verdict}]"


def _short(value) -> str:
    text = str(value)
    # A UUIDv7 begins with its timestamp, so its end is what tells two apart.
    return "..." + text[-8:] if len(text) == 36 and text.count("-") == 4 else text


def _not_arrived(url: str, credentials: dict, step: Step, missing: dict[str, str], timeout: float) -> str:
    """Why a callback did not come, as far as the task's own record tells."""
    awaited = ", ".join(f"{context} {outcome}" for context, outcome in missing.items())
    lines = [f"FAILED: no callback ({awaited}) for {step.task['task_id']} within {timeout:.0f} s."]
    auth = {"Authorization": f"Bearer {credentials['api_token']}"}
    base = f"{url}/v1/clients/{credentials['client_id']}"
    try:
        task = requests.get(f"{base}/tasks/{step.task['task_id']}", headers=auth, timeout=10).json()
        outcomes = ", ".join(f"{r['context']} {r['outcome']}" for r in task["results"]) or "none yet"
        lines.append(f"  taskgate has it as {task['status']}; results: {outcomes}")
        if not task["results"]:
            lines.append("  no context answered: is a worker of each context running (taskgate worker)?")
        for delivery in task["deliveries"]:
            if delivery["status"] == "delivered":
                continue
            detail = requests.get(
                f"{base}/deliveries/{delivery['result_id']}", headers=auth, timeout=10
            ).json()
            last = detail.get("last_error") or f"HTTP {detail.get('last_status_code')}"
            lines.append(
                f"  its callback is {delivery['status']} after {delivery['attempts']} attempt(s): {last}"
            )
    except (requests.RequestException, ValueError, KeyError) as error:
        lines.append(f"  could not read the task back: {error}")
    return "\n".join(lines)


def answers(url: str) -> bool:
    """Whether a taskgate answers at url; False if nothing listens there."""
    try:
        response = requests.get(f"{url}/healthz", timeout=2)
    except requests.ConnectionError:
        return False
    except requests.RequestException as error:
        raise DemoFailed(f"{url}/healthz did not answer properly: {error}") from None
    if response.status_code != 200:
        raise DemoFailed(
            f"something answers at {url}, but not as taskgate: GET /healthz gave {response.status_code}"
        )
    return True


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def taskgate_at(url: str, echo: Echo, *, start_timeout: float = 60) -> Iterator[None]:
    """Use the taskgate answering at url, or run `taskgate serve` there for the demo's length."""
    if answers(url):
        echo(f"Using the taskgate serving at {url} (it keeps running afterwards).")
        yield
        return
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise DemoFailed(
            f"nothing answers at {url}/healthz, and the demo can start a server only at http://HOST:PORT"
        )
    log_path = Path(tempfile.mkdtemp(prefix="taskgate-demo-")) / "serve.log"
    # The demo's receiver listens on 127.0.0.1, which taskgate refuses to call back unless allowed.
    env = {**os.environ, "TASKGATE_ALLOW_PRIVATE_CALLBACKS": "1"}
    command = [
        sys.executable,
        "-m",
        "taskgate",
        "serve",
        "--host",
        parts.hostname,
        "--port",
        str(parts.port or 80),
    ]
    with open(log_path, "wb") as log:
        # Its own session: a Ctrl-C reaches the demo only, which then stops serve in order.
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_serving(url, server, log_path, start_timeout)
    except BaseException:
        _stop(server)
        raise
    echo(f"Nothing answered at {url}, so the demo started `taskgate serve` there (log: {log_path}).")
    try:
        yield
    finally:
        code = _stop(server)
        echo(
            f"Stopped the taskgate serve the demo started (exit code {code}); "
            f"`taskgate serve --port {parts.port or 80}` with this environment serves these tasks again."
        )


def _wait_until_serving(url: str, server: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(0.1)  # returns at once if it ended
        if server.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
            state = f"exited with {server.returncode}" if server.poll() is not None else "never answered"
            raise DemoFailed(f"taskgate serve {state} at {url}; the end of {log_path}:\n{tail}")


def _stop(server: subprocess.Popen, timeout: float = 30) -> int:
    if server.poll() is None:
        server.terminate()  # SIGTERM: serve finishes what it is handling and exits
    try:
        return server.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()
