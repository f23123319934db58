"""The bare pipeline: the stages taskgate is made of, without its guarantees, as the yardstick that
`python -m bench` measures taskgate against at the same offered rates.

A webhook (Flask on gunicorn) commits a task row and an outbox row in one transaction and answers
202; a relay publishes the outbox's rows to RabbitMQ (persistent, publisher confirms) and deletes
them; a worker answers each task with a result message; a dispatcher posts each result to the
client's callback URL, signed. No signature check, inbox, result rows, attempt log or retries.

    gunicorn -c gunicorn.conf.py bench.bare_pipeline:app
    python -m bench.bare_pipeline relay|worker|dispatcher

Settings: BENCH_DATABASE_URL, BENCH_BROKER_URL, and for the dispatcher BENCH_CALLBACKS (a JSON file:
client id -> {"url", "secret"}).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
from flask import Flask, request
from kombu import Connection, Consumer, Exchange, Producer, Queue
from sqlalchemy import delete, insert, select, text

from bench.stages import bare_outbox, bare_tasks, metadata
from gateway.signatures import signed_headers
from messaging.db import make_engine

TASKS = Exchange("bench.tasks", type="direct", durable=True)
RESULTS = Exchange("bench.results", type="direct", durable=True)
TASK_QUEUE = Queue("bench.tasks", TASKS, routing_key="task", durable=True)
RESULT_QUEUE = Queue("bench.results", RESULTS, routing_key="result", durable=True)
CHANNEL = "bench_outbox"  # the relay's wake-up (LISTEN/NOTIFY)

app = Flask(__name__)


@functools.cache
def _engine():
    return make_engine(os.environ["BENCH_DATABASE_URL"])


def prepare(database_url: str, broker_url: str) -> None:
    """The tables, exchanges and queues, made once before the pipeline starts."""
    engine = make_engine(database_url)
    metadata.create_all(engine)
    engine.dispose()
    with Connection(broker_url) as connection:
        for queue in (TASK_QUEUE, RESULT_QUEUE):
            queue(connection.default_channel).declare()


@app.post("/v1/clients/<client_id>/tasks")
def accept(client_id: str):
    task = json.loads(request.get_data())
    task_uuid, now = uuid.uuid4(), datetime.now(UTC)
    message = {"task_id": task["task_id"], "task_uuid": str(task_uuid), "client_id": client_id}
    with _engine().begin() as connection:
        connection.execute(
            insert(bare_tasks),
            {
                "task_uuid": task_uuid,
                "client_id": client_id,
                "task_id": task["task_id"],
                "type": task["type"],
                "payload": task["payload"],
                "status": "accepted",
                "received_at": now,
            },
        )
        connection.execute(
            insert(bare_outbox),
            {
                "message_id": uuid.uuid4(),
                "exchange": TASKS.name,
                "routing_key": "task",
                "body": message,
                "headers": {},
                "created_at": now,
            },
        )
        connection.execute(text(f"NOTIFY {CHANNEL}"))
    return {"task_id": task["task_id"], "task_uuid": str(task_uuid), "status": "accepted"}, 202


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


def relay() -> None:
    """Publish the outbox's rows, oldest first, and delete them once the broker confirmed them."""
    import psycopg

    engine = _engine()
    oldest = select(bare_outbox.c.id).order_by(bare_outbox.c.id).limit(100).with_for_update(skip_locked=True)
    take = delete(bare_outbox).where(bare_outbox.c.id.in_(oldest.scalar_subquery())).returning(bare_outbox)
    listener = psycopg.connect(
        engine.url.set(drivername="postgresql").render_as_string(False), autocommit=True
    )
    listener.execute(f"LISTEN {CHANNEL}")
    with Connection(os.environ["BENCH_BROKER_URL"], transport_options={"confirm_publish": True}) as broker:
        producer = Producer(broker.default_channel)
        while True:
            with engine.begin() as connection:
                rows = connection.execute(take).all()
                for row in sorted(rows, key=lambda row: row.id):
                    producer.publish(row.body, exchange=TASKS, routing_key=row.routing_key, delivery_mode=2)
            if not rows:
                for _ in listener.notifies(timeout=1.0, stop_after=1):
                    pass


def worker() -> None:
    """Answer each task with a result message (published, then the task acknowledged)."""
    url = os.environ["BENCH_BROKER_URL"]
    # Publishing with confirms waits on its connection: not the one whose deliveries are being handled.
    with Connection(url) as broker, Connection(url, transport_options={"confirm_publish": True}) as out:
        producer = Producer(out.default_channel)

        def on_task(task, message):
            result = {**task, "result_id": str(uuid.uuid4()), "outcome": "bare.done", "status": "succeeded"}
            producer.publish(result, exchange=RESULTS, routing_key="result", delivery_mode=2)
            message.ack()

        _consume(broker, TASK_QUEUE, on_task)


def dispatcher() -> None:
    """Post each result to its client's callback URL, signed; acknowledged once answered."""
    callbacks = json.loads(Path(os.environ["BENCH_CALLBACKS"]).read_text())
    session = requests.Session()
    with Connection(os.environ["BENCH_BROKER_URL"]) as broker:

        def on_result(data, message):
            client = callbacks[data["client_id"]]
            payload = json.dumps({"type": "task.result", "data": data}).encode()
            headers = signed_headers(client["secret"], data["result_id"], int(time.time()), payload)
            session.post(client["url"], data=payload, headers=headers, timeout=10).close()
            message.ack()

        _consume(broker, RESULT_QUEUE, on_result)


def _consume(broker: Connection, queue: Queue, callback) -> None:
    with Consumer(broker.default_channel, [queue], callbacks=[callback], prefetch_count=100, accept=["json"]):
        while True:
            broker.drain_events()


if __name__ == "__main__":
    {"relay": relay, "worker": worker, "dispatcher": dispatcher}[sys.argv[1]]()
