"""A whole taskgate deployment as processes on PostgreSQL + RabbitMQ, for breaking things on purpose."""

from __future__ import annotations

import itertools
import json
import random
import signal
import time
from pathlib import Path

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.tables import results, tasks
from taskgate.tables import processes as heartbeats
from tests.e2e.helpers import BIN, Process, free_port, wait_until_healthy
from tests.factories import signed, wait_for

WORKERS = ("gateway", "customers", "survey", "appointment", "maintenance")


class System:
    """gunicorn plus worker processes by context; kill them, start them again, count what happened."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http: Process | None = None
        self.workers: dict[str, list[Process]] = {name: [] for name in WORKERS}
        self.kills = 0
        self.restarts = 0
        self._numbers = itertools.count()

    def start_http(self) -> None:
        self.http = Process(
            [
                str(BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--timeout",
                "60",
                "wsgi:app",
            ],
            self.env,
            self.log_dir / f"http-{next(self._numbers)}.log",
        )
        wait_until_healthy(self.base_url, self.http)

    def start(self, context: str) -> Process:
        process = Process(
            [str(BIN / "taskgate"), "worker", "--context", context],
            self.env,
            self.log_dir / f"{context}-{next(self._numbers)}.log",
        )
        self.workers[context].append(process)
        return process

    def start_all(self, per_context: int = 1) -> None:
        for context in WORKERS:
            for _ in range(per_context):
                self.start(context)

    def kill_random(self, rng: random.Random) -> str:
        """kill -9 a random live worker process and start a new one for its context."""
        alive = [(context, p) for context, ps in self.workers.items() for p in ps if p.process.poll() is None]
        context, victim = rng.choice(alive)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        victim.stop()
        self.workers[context].remove(victim)
        self.kills += 1
        self.start(context)
        self.restarts += 1
        return context

    def terminate_and_restart(self, context: str) -> list[int]:
        """SIGTERM every process of context (or "http"), wait for each to exit, start as many again;
        returns the exit codes (0 = it stopped cleanly rather than being killed)."""
        if context == "http":
            code = self.http.stop()
            self.start_http()
            self.restarts += 1
            return [code]
        stopping = self.workers[context]
        self.workers[context] = []
        codes = [process.stop() for process in stopping]
        for _ in stopping:
            self.start(context)
            self.restarts += 1
        return codes

    def wait_until_started(self, engine, timeout: float = 60) -> None:
        """Until every live worker has started (its heartbeat row is there): one just started
        again by the killer gets its start-up done before stop(), whose exit codes are checked."""

        def started() -> bool:
            live = {p.process.pid for ps in self.workers.values() for p in ps if p.process.poll() is None}
            with engine.connect() as connection:
                beating = set(connection.scalars(select(heartbeats.c.pid)))
            return live <= beating

        wait_for(started, timeout=timeout, message="every worker started")

    def stop(self) -> list[int]:
        processes = [p for ps in self.workers.values() for p in ps] + ([self.http] if self.http else [])
        return [process.stop() for process in processes]

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


class Client:
    """The client company: signs and sends tasks, retrying on 503 or a connection error as it should."""

    def __init__(self, base_url: str, credentials: dict):
        self.base_url = base_url
        self.credentials = credentials
        self.statuses: list[int] = []

    def send(self, task: dict, deadline: float = 120) -> int:
        url = f"{self.base_url}/v1/clients/{self.credentials['client_id']}/tasks"
        end = time.monotonic() + deadline
        number = 0
        while True:
            number += 1
            raw, headers = signed(
                self.credentials["signing_secret"], task, webhook_id=f"msg_{task['task_id']}_{number}"
            )
            try:
                response = requests.post(url, data=raw, headers=headers, timeout=30)
                self.statuses.append(response.status_code)
                if response.status_code in (200, 202):
                    return response.status_code
                assert response.status_code == 503, (response.status_code, response.text)
                assert response.headers["Content-Type"] == "application/problem+json"
                assert response.headers["Retry-After"].isdigit()
            except requests.RequestException:  # refused, reset or timed out: try again later
                self.statuses.append(0)
            if time.monotonic() > end:
                raise AssertionError(f"{task['task_id']} was never accepted")
            time.sleep(0.2)  # the client's back-off before it tries again (not a test synchronisation)


def wait_until_settled(engine, task_ids: list[str], timeout: float = 240) -> None:
    """Every task has a final status and every result is delivered."""

    def settled():
        with Session(engine) as session:
            open_tasks = session.scalar(
                select(func.count())
                .select_from(tasks)
                .where(tasks.c.task_id.in_(task_ids), tasks.c.status.in_(("accepted", "waiting")))
            )
            undelivered = session.scalar(
                select(func.count()).select_from(results).where(results.c.delivery_status != "delivered")
            )
            known = session.scalar(
                select(func.count()).select_from(tasks).where(tasks.c.task_id.in_(task_ids))
            )
        return known == len(task_ids) and open_tasks == 0 and undelivered == 0

    wait_for(settled, timeout=timeout, interval=0.5, message="every task settled and every result delivered")


def outcomes(engine) -> dict[str, list[tuple[str, str]]]:
    """task_id -> [(context, outcome)] of every stored result."""
    with Session(engine) as session:
        rows = session.execute(
            select(tasks.c.task_id, results.c.context, results.c.outcome).join(
                results, results.c.task_uuid == tasks.c.task_uuid
            )
        ).all()
    found: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        found.setdefault(row.task_id, []).append((row.context, row.outcome))
    return found


def received_result_ids(receiver) -> list[str]:
    return [json.loads(request["body"])["data"]["result_id"] for request in receiver.requests]
