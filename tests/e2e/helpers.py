"""Real processes and a real HTTP receiver for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.factories import wait_for

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A subprocess whose output goes to a log file; stopped with SIGTERM and expected to exit 0."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code


def environment(**variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKGATE_")}
    env["TASKGATE_ALLOW_PRIVATE_CALLBACKS"] = "1"  # the receiver listens on 127.0.0.1
    env.update(variables)
    return env


def run(args: list[str], env: dict[str, str]) -> str:
    completed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def wait_until_healthy(base_url: str, process: Process, timeout: float = 30) -> None:
    def healthy():
        assert process.process.poll() is None, f"process exited early:\n{process.output()}"
        try:
            return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or still booting
            return False

    wait_for(healthy, timeout=timeout, interval=0.1, message=f"{base_url}/healthz")
