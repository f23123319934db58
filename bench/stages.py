"""The bare stages taskgate is made of, measured in the same run so its figures read as ratios:
an HTTP POST on Flask, the commit of a task row plus an outbox row, a kombu publish and consume."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kombu import Connection, Consumer, Exchange, Producer, Queue
from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, UniqueConstraint, Uuid, insert

from bench.procs import BIN, Processes, clean_environment, free_port, wait_until_healthy
from bench.services import Services
from gateway.signatures import new_secret
from messaging.db import make_engine
from messaging.outbox import make_outbox_table

metadata = MetaData()
bare_tasks = Table(
    "bench_tasks",
    metadata,
    Column("task_uuid", Uuid, primary_key=True),
    Column("client_id", String(63), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("client_id", "task_id"),
)
bare_outbox = make_outbox_table(metadata, "bench")  # the outbox every owner of tables has
PAYLOAD = {"survey_id": "SRV-1", "due_date": "2030-12-31", "customer_id": "C-1"}
MESSAGE = json.dumps({"message_id": str(uuid.uuid4()), "type": "survey.assign", "payload": PAYLOAD}).encode()


@dataclasses.dataclass(frozen=True)
class StageOptions:
    duration: float
    connections: int
    http_workers: int
    commit_processes: int


def measure_all(services: Services, options: StageOptions, run_dir: Path) -> dict:
    stage_dir = run_dir / "stages"
    stage_dir.mkdir(parents=True)
    return {
        "flask_gunicorn_req_per_s": bare_flask(stage_dir, options, server="gunicorn"),
        "flask_waitress_req_per_s": bare_flask(stage_dir, options, server="waitress"),
        "commit_postgresql_txn_per_s": bare_commit(
            services.fresh_database(), options.commit_processes, options.duration
        ),
        "commit_sqlite_txn_per_s": bare_commit(f"sqlite:///{stage_dir / 'bare.db'}", 1, options.duration),
        **bare_kombu(services.fresh_vhost(), options.duration),
        "commit_postgresql_processes": options.commit_processes,
    }


def bare_flask(stage_dir: Path, options: StageOptions, server: str) -> float:
    """Requests/s of the load generator, unpaced, against bench.bare_app."""
    port = free_port()
    env = clean_environment(TASKGATE_HTTP_WORKERS=str(options.http_workers))
    if server == "gunicorn":
        args = [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "bench.bare_app:app",
        ]
    else:
        args = [sys.executable, "-m", "bench.bare_app", str(port)]
    plan = {
        "phase": "bare",
        "port": port,
        "clients": [{"client_id": "bare", "secret": new_secret()}],
        "customers": 50,
        "run": "bare",
        "connections": options.connections,
        "duration": options.duration,
        "rate": None,
        "max_tasks": int(20_000 * options.duration),
    }
    plan_path, out_path = stage_dir / f"plan-{server}.json", stage_dir / f"sent-{server}.json"
    plan_path.write_text(json.dumps(plan))
    with Processes(env, stage_dir) as processes:
        app = processes.start(f"bare-{server}", args, "stage")
        wait_until_healthy(port, app)
        loadgen = processes.start(
            f"loadgen-bare-{server}",
            [sys.executable, "-m", "bench.loadgen", str(plan_path), str(out_path)],
            "stage",
        )
        if loadgen.wait(options.duration + 120) != 0:
            raise RuntimeError(f"the load generator failed:\n{loadgen.log_path.read_text()[-2000:]}")
    sent = json.loads(out_path.read_text())
    ok = sum(1 for status in sent["status"] if status == 202)
    return round(ok / (sent["finished"] - sent["started"]), 1)


def bare_commit(url: str, processes: int, duration: float) -> float:
    """Transactions/s, each inserting one task row and one outbox row (SQLAlchemy Core)."""
    engine = make_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    context = multiprocessing.get_context("spawn")
    start_line, counts = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_commit_loop, args=(url, number, start_line, duration, counts))
        for number in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        total = sum(counts.get(timeout=duration + 60) for _ in workers)
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
    return round(total / duration, 1)


def _commit_loop(url: str, worker: int, start_line, duration: float, counts) -> None:
    engine = make_engine(url)
    with engine.connect():  # connected before the clock starts
        pass
    start_line.wait()  # the processes start together
    deadline, count = time.monotonic() + duration, 0
    while time.monotonic() < deadline:
        now = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(insert(bare_tasks), _task_row(worker, count, now))
            connection.execute(insert(bare_outbox), _outbox_row(now))
        count += 1
    engine.dispose()
    counts.put(count)


def _task_row(worker: int, count: int, now: datetime) -> dict:
    return {
        "task_uuid": uuid.uuid4(),
        "client_id": "bare",
        "task_id": f"{worker}-{count}-{uuid.uuid4().hex[:8]}",
        "type": "survey.assign",
        "payload": PAYLOAD,
        "status": "accepted",
        "received_at": now,
    }


def _outbox_row(now: datetime) -> dict:
    return {
        "message_id": uuid.uuid4(),
        "exchange": "taskgate.tasks",
        "routing_key": "survey.assign",
        "body": PAYLOAD,
        "headers": {"x-task-id": "T-1"},
        "created_at": now,
    }


def bare_kombu(broker_url: str, duration: float) -> dict:
    """Messages/s on a durable quorum queue: publish (persistent), publish waiting for a confirm per
    message, and consume (prefetch 100, one ack per message)."""
    exchange = Exchange("bench.bare", type="direct", durable=True)
    queue = Queue(
        "bench.bare", exchange, routing_key="bare", durable=True, queue_arguments={"x-queue-type": "quorum"}
    )
    with Connection(broker_url) as connection:
        queue(connection.default_channel).declare()
        published = _publish_for(connection, exchange, duration)
        consumed, consume_seconds = _consume(connection, queue, published, duration)
    with Connection(broker_url, transport_options={"confirm_publish": True}) as connection:
        confirmed = _publish_for(connection, exchange, duration)
        queue(connection.default_channel).delete()
    return {
        "kombu_publish_msg_per_s": round(published / duration, 1),
        "kombu_publish_confirmed_msg_per_s": round(confirmed / duration, 1),
        "kombu_consume_msg_per_s": round(consumed / consume_seconds, 1),
    }


def _publish_for(connection: Connection, exchange: Exchange, duration: float) -> int:
    producer = Producer(connection.default_channel, exchange=exchange)
    deadline, count = time.monotonic() + duration, 0
    while time.monotonic() < deadline:
        producer.publish(
            MESSAGE,
            routing_key="bare",
            delivery_mode=2,
            content_type="application/json",
            content_encoding="utf-8",
        )
        count += 1
    return count


def _consume(connection: Connection, queue: Queue, available: int, duration: float) -> tuple[int, float]:
    consumed = 0

    def on_message(body, message) -> None:
        nonlocal consumed
        message.ack()
        consumed += 1

    channel = connection.channel()
    started = time.monotonic()
    deadline = started + duration
    with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"], prefetch_count=100):
        while consumed < available and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=1)
            except TimeoutError:
                break
    elapsed = time.monotonic() - started
    channel.close()
    return consumed, elapsed
