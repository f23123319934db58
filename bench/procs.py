"""Processes the benchmark starts: each logs to a file, and all of them are stopped on the way out,
also after Ctrl-C or a failure (see Processes)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll condition until it returns something truthy; raise TimeoutError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Process:
    """A subprocess with its output in a log file; stop() sends SIGTERM, then SIGKILL after a grace."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, role: str = "taskgate"
    ):
        self.name = name
        self.role = role  # "taskgate" processes count towards CPU per task; "harness" and "stage" do not
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def check_running(self) -> None:
        if not self.running():
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, grace: float = 15.0) -> int:
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        self._log.close()
        return code


class Processes(contextlib.AbstractContextManager):
    """The processes of one step; leaving the block stops them all, newest first."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.started: list[Process] = []

    def start(self, name: str, args: list[str], role: str = "taskgate") -> Process:
        process = Process(name, args, self.env, self.log_dir, role)
        self.started.append(process)
        return process

    def of_role(self, role: str) -> list[Process]:
        return [process for process in self.started if process.role == role]

    def __exit__(self, *exc_info) -> None:
        for process in reversed(self.started):
            process.stop()


def run_command(args: list[str], env: dict[str, str]) -> str:
    completed = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{completed.stderr[-2000:]}")
    return completed.stdout


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until_healthy(port: int, process: Process, path: str = "/healthz", timeout: float = 60) -> None:
    def healthy() -> bool:
        process.check_running()
        try:
            return http_get(port, path)[0] == 200
        except OSError:  # not listening yet
            return False

    wait_for(healthy, timeout, f"{process.name} to answer {path}", interval=0.1)


def clean_environment(**variables: str) -> dict[str, str]:
    """The caller's environment without its TASKGATE_* settings, plus variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKGATE_")}
    env.update(variables)
    return env
