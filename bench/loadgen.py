"""The load generator, run in its own process: `python -m bench.loadgen PLAN.json OUT.json`.

Every request is built and signed before the clock starts; then asyncio sends them as raw HTTP/1.1
over a few keep-alive connections, either open loop at a fixed rate (request i is due at
t0 + i/rate, whether or not earlier answers came back; its latency counts from that due time, so a
slow server cannot hide its queue) or unpaced (each connection sends its next request as soon as
the previous one is answered). Times are time.monotonic(), which is system-wide on Linux, so the
callback receiver's arrival times compare with them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from bench import workload

RETRIES = 3  # a keep-alive connection the server closed is reopened; the webhook is idempotent


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """Send request and read its answer; returns the status code."""
        for attempt in range(RETRIES):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.writer.write(request)
                return await self._read_response()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == RETRIES - 1:
                    return 0
        return 0

    async def _read_response(self) -> int:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, keep_alive = 0, True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        if length:
            await self.reader.readexactly(length)
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Records:
    """What happened to each request, as columns (cheap to append, compact as JSON)."""

    def __init__(self):
        self.index: list[int] = []
        self.due: list[float] = []
        self.sent: list[float] = []
        self.answered: list[float] = []
        self.status: list[int] = []

    def add(self, index: int, due: float, sent: float, status: int) -> None:
        self.index.append(index)
        self.due.append(due)
        self.sent.append(sent)
        self.answered.append(time.monotonic())
        self.status.append(status)


async def paced(requests: list[bytes], rate: float, connections: list[Connection], records: Records) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    workers = [
        asyncio.create_task(_drain(queue, connection, requests, records)) for connection in connections
    ]
    start = time.monotonic()
    for index in range(len(requests)):
        due = start + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)


async def _drain(queue: asyncio.Queue, connection: Connection, requests: list[bytes], records: Records):
    while (item := await queue.get()) is not None:
        index, due = item
        sent = time.monotonic()
        records.add(index, due, sent, await connection.send(requests[index]))


async def unpaced(requests: list[bytes], duration: float, connections: list[Connection], records: Records):
    deadline = time.monotonic() + duration
    pending = iter(range(len(requests)))

    async def loop(connection: Connection) -> None:
        for index in pending:  # one shared iterator: each index is taken once
            sent = time.monotonic()
            if sent > deadline:
                return
            records.add(index, sent, sent, await connection.send(requests[index]))

    await asyncio.gather(*(loop(connection) for connection in connections))


def build_requests(plan: dict) -> list[workload.Task]:
    clients = [workload.Client(**client) for client in plan["clients"]]
    if plan["phase"] == "warmup":
        return workload.warmup_tasks(clients, plan["customers"], plan["run"])
    count = int(plan["rate"] * plan["duration"]) if plan["rate"] else plan["max_tasks"]
    return workload.measured_tasks(clients, plan["customers"], count, plan["run"], plan.get("seed", 1))


async def run(plan: dict) -> dict:
    tasks = build_requests(plan)
    secrets = {client["client_id"]: client["secret"] for client in plan["clients"]}
    host = f"127.0.0.1:{plan['port']}"
    timestamp = int(time.time())
    requests = [workload.raw_request(task, secrets[task.client_id], host, timestamp) for task in tasks]
    connections = [Connection("127.0.0.1", plan["port"]) for _ in range(plan["connections"])]
    records = Records()
    cpu_before = time.process_time()
    started = time.monotonic()
    if plan["rate"]:
        await paced(requests, plan["rate"], connections, records)
    else:
        await unpaced(requests, plan["duration"], connections, records)
    finished = time.monotonic()
    for connection in connections:
        connection.close()
    return {
        "started": started,
        "finished": finished,
        "cpu_seconds": time.process_time() - cpu_before,  # the sending alone, not the pre-signing
        "task_id": [tasks[index].task_id for index in records.index],
        "type": [tasks[index].type for index in records.index],
        "due": records.due,
        "sent": records.sent,
        "answered": records.answered,
        "status": records.status,
    }


def main() -> None:
    plan_path, out_path = sys.argv[1:3]
    result = asyncio.run(run(json.loads(Path(plan_path).read_text())))
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
