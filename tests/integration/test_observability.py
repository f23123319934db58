"""What an operator sees: the metrics' latency histogram and gauges, heartbeats and `taskgate status`."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from contexts.survey import tables as survey_tables
from gateway import create_app
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.tables import dead_letters as dead_letter_table
from gateway.tables import results
from gateway.tables import tasks as gateway_tasks
from messaging import vocabulary
from messaging.db import make_engine, utcnow
from messaging.dead_letters import DeadLetterKeeper, list_dead_letters
from messaging.envelope import Envelope
from messaging.heartbeat import Heartbeat, list_processes
from taskgate import tables
from taskgate.cli import main
from taskgate.registry import NAMES, overview_sources
from tests.conftest import make_settings
from tests.factories import register_client, survey_task, upsert_task, wait_for

ROOT = Path(__file__).resolve().parents[2]


def scrape(app) -> dict[tuple[str, tuple], float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_delivered_callback_is_measured_from_webhook_to_delivery(gateway, client, callbacks):
    callbacks.post("http://client.test/callbacks", status=204)
    before = value(scrape(gateway), "taskgate_task_to_callback_seconds_count", context="customers")
    client.submit(upsert_task(task_id="T-metrics"))
    client.wait_for_status("T-metrics", "succeeded")
    wait_for(
        lambda: (
            value(scrape(gateway), "taskgate_task_to_callback_seconds_count", context="customers")
            == before + 1
        ),
        message="the delivered callback to be observed",
    )
    samples = scrape(gateway)
    assert value(samples, "taskgate_task_to_callback_seconds_sum", context="customers") > 0


def test_gauges_report_backlogs_parked_tasks_failed_deliveries_and_processes(gateway, client, callbacks):
    callbacks.post("http://client.test/callbacks", status=204)
    client.submit(survey_task(task_id="S-parked", customer_id="C-unknown"))
    client.wait_for_status("S-parked", "waiting")
    client.submit(upsert_task(task_id="T-fails"))
    client.wait_for_status("T-fails", "succeeded")
    engine = gateway.extensions["taskgate"].engine
    wait_for(
        lambda: value(scrape(gateway), "taskgate_deliveries", status="pending") == 0, message="delivered"
    )
    with engine.begin() as connection:  # as if the retry schedule had run out
        connection.execute(update(results).values(delivery_status="failed"))

    samples = scrape(gateway)
    assert value(samples, "taskgate_overview_up") == 1
    assert value(samples, "taskgate_tasks_waiting", reason="unknown_customer") == 1
    assert value(samples, "taskgate_tasks_waiting", reason="customer_outdated") == 0
    assert value(samples, "taskgate_deliveries", status="failed") >= 1
    assert value(samples, "taskgate_dead_letters") == 0
    for outbox in ("gateway", "customers", "survey", "appointment", "maintenance", "visits"):
        assert ("taskgate_outbox_pending_messages", (("outbox", outbox),)) in samples
    assert value(samples, "taskgate_processes_alive") == 1


def test_the_line_a_kept_dead_letter_logs_names_its_task(database_url, caplog):
    """CONTRACT §1: every log line about a task includes task_id and task_uuid."""
    engine = make_engine(database_url)
    dead_letter_table.metadata.create_all(engine, tables=[dead_letter_table])
    envelope = Envelope("customer.upsert", "P-1", uuid.uuid4(), "acme", {"customer_id": "C-1"})
    acked = []
    message = type(
        "Message",
        (),
        {
            "headers": envelope.headers,
            "delivery_info": {"exchange": "taskgate.tasks", "routing_key": "customer.upsert"},
            "body": json.dumps(envelope.to_body()),
            "properties": {"message_id": str(envelope.message_id)},
            "ack": lambda self: acked.append(True),
        },
    )()
    with caplog.at_level(logging.INFO, logger="messaging.dead_letters"):
        DeadLetterKeeper(None, engine, dead_letter_table).keep(message)
    [record] = [record for record in caplog.records if "dead letter kept" in record.getMessage()]
    assert (record.task_id, record.task_uuid) == ("P-1", str(envelope.task_uuid))
    assert acked == [True]
    engine.dispose()


def test_a_dead_letter_whose_ack_fails_is_kept_once_and_the_failure_goes_to_kombu(database_url):
    """The broker's connection broke between the commit and the ack: storing it again and again
    would fill the table and never let kombu connect again."""
    engine = make_engine(database_url)
    dead_letter_table.metadata.create_all(engine, tables=[dead_letter_table])

    def broken_ack(self):
        raise ConnectionResetError("the broker went away")

    message = type(
        "Message",
        (),
        {
            "headers": {"x-task-id": "P-3"},
            "delivery_info": {"exchange": "taskgate.tasks", "routing_key": "nobody.takes.this"},
            "body": b"{}",
            "properties": {"message_id": "m-3"},
            "ack": broken_ack,
        },
    )()
    keeper = DeadLetterKeeper(None, engine, dead_letter_table)
    raised = []

    def keep():
        try:
            keeper.keep(message)
        except ConnectionResetError as error:
            raised.append(error)

    keeping = threading.Thread(target=keep)
    keeping.start()
    try:
        wait_for(lambda: not keeping.is_alive(), timeout=5, message="keep() to give the failed ack up")
    finally:
        keeper.should_stop = True
        keeping.join(10)
    with Session(engine) as session:
        assert len(list_dead_letters(session, dead_letter_table)) == 1
    assert raised
    engine.dispose()


def test_a_dead_letter_with_headers_json_cannot_hold_is_kept_as_well(database_url):
    """A publisher's header whose key is not UTF-8 (py-amqp gives it as bytes), and an x-death that
    is not RabbitMQ's list: the dead letter is kept and acked all the same, so it cannot wedge the
    keeper (which retries in place only while the database is away)."""
    engine = make_engine(database_url)
    dead_letter_table.metadata.create_all(engine, tables=[dead_letter_table])
    acked = []
    message = type(
        "Message",
        (),
        {
            "headers": {
                b"\xff-key": b"\xfe",
                "x-death": "not a list",
                "x-task-id": "P-2",
                "when": utcnow(),
                "ratio": float("nan"),
            },
            "delivery_info": {"exchange": "taskgate.tasks", "routing_key": "nobody.takes.this"},
            "body": b"{}",
            "properties": {"message_id": "m-2"},
            "ack": lambda self: acked.append(True),
        },
    )()
    keeper = DeadLetterKeeper(None, engine, dead_letter_table)
    keeping = threading.Thread(target=keeper.keep, args=(message,))
    keeping.start()
    try:
        wait_for(lambda: acked, timeout=10, message="the dead letter kept and acked")
    finally:
        keeper.should_stop = True  # were it retried in place, that ends it
        keeping.join(10)
    with Session(engine) as session:
        [kept] = list_dead_letters(session, dead_letter_table)
    assert kept["task_id"] == "P-2" and kept["reason"] == "unroutable: no queue takes it"
    assert kept["headers"]["\ufffd-key"] == "\ufffd" and kept["headers"]["x-death"] == "not a list"
    assert kept["headers"]["ratio"] == "nan"
    engine.dispose()


def test_outbox_backlog_and_the_age_of_its_oldest_message(database_url):
    """No relay runs here, so what is written stays pending."""
    app = create_app(make_settings(database_url), overview_sources=overview_sources())
    engine = app.extensions["taskgate"].engine
    written_at = utcnow() - timedelta(seconds=30)
    with engine.begin() as connection:
        for number in range(3):
            connection.execute(
                insert(survey_tables.outbox).values(
                    message_id=uuid.uuid4(),
                    exchange="events",
                    routing_key="survey.completed",
                    body={},
                    headers={},
                    created_at=written_at + timedelta(seconds=number),
                )
            )
    samples = scrape(app)
    assert value(samples, "taskgate_outbox_pending_messages", outbox="survey") == 3
    assert value(samples, "taskgate_outbox_pending_messages", outbox="gateway") == 0
    assert 30 <= value(samples, "taskgate_outbox_oldest_pending_seconds", outbox="survey") < 60
    assert value(samples, "taskgate_outbox_oldest_pending_seconds", outbox="gateway") == 0
    engine.dispose()


def test_a_process_that_stops_beating_is_reported_stale(database_url):
    engine = make_engine(database_url)
    heartbeat = Heartbeat(engine, tables.processes, role="worker", contexts=["survey"], interval=1)
    heartbeat.beat()
    with engine.connect() as connection:
        (process,) = list_processes(connection, tables.processes)
        assert process.alive and process.contexts == ("survey",)
        later = utcnow() + timedelta(seconds=10)
        (process,) = list_processes(connection, tables.processes, now=later)
        assert not process.alive and process.last_beat_seconds >= 9
    engine.dispose()


def test_a_process_that_stops_cleanly_removes_its_row(database_url):
    engine = make_engine(database_url)
    stop = threading.Event()
    heartbeat = Heartbeat(engine, tables.processes, role="worker", contexts=["survey"], interval=0.05)
    thread = threading.Thread(target=heartbeat.run, args=(stop,))
    thread.start()

    def rows():
        with engine.connect() as connection:
            return list_processes(connection, tables.processes)

    wait_for(lambda: len(rows()) == 1, message="the first beat")
    stop.set()
    thread.join(10)
    assert rows() == []
    engine.dispose()


@pytest.fixture
def status_env(gateway, stack):
    database_url, broker_url = stack
    return {"TASKGATE_DATABASE_URL": database_url, "TASKGATE_BROKER_URL": broker_url}


def test_status_lists_live_processes_and_backlogs(gateway, status_env):
    wait_for(lambda: value(scrape(gateway), "taskgate_processes_alive") == 1, message="a heartbeat")
    result = CliRunner().invoke(main, ["status"], env=status_env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("healthy")
    assert "gateway,customers,survey,appointment,maintenance,visits" in result.output

    result = CliRunner().invoke(main, ["status", "--json"], env=status_env)
    document = json.loads(result.output)
    assert document["healthy"] is True
    assert document["database"] == document["broker"] == "ok"
    assert set(document["outboxes"]) == set(NAMES)


def test_status_fails_when_a_process_is_stale(gateway, status_env):
    engine = gateway.extensions["taskgate"].engine
    wait_for(lambda: value(scrape(gateway), "taskgate_processes_alive") == 1, message="a heartbeat")
    dead = Heartbeat(engine, tables.processes, role="worker", contexts=["appointment"], interval=1)
    dead.beat()
    with engine.begin() as connection:
        connection.execute(
            update(tables.processes)
            .where(tables.processes.c.process_id == dead.process_id)
            .values(beat_at=utcnow() - timedelta(minutes=5))
        )
    result = CliRunner().invoke(main, ["status"], env=status_env)
    assert result.exit_code == 1
    assert result.output.startswith("NOT HEALTHY")
    assert "STALE" in result.output


def test_waiting_tasks_without_a_stored_reason_count_with_those_that_have_it(database_url):
    """Tasks parked before migration 0011 stored no reason: they waited for their customer, and
    count in taskgate_tasks_waiting{reason="unknown_customer"} with those parked since."""
    app = create_app(make_settings(database_url))
    engine = app.extensions["taskgate"].engine
    register_client(engine)
    namespace = app.extensions["taskgate"].settings.namespace
    with Session(engine) as session, session.begin():
        for number in range(5):
            task = upsert_task(task_id=f"W-{number}", customer_id=f"C-{number}")
            accept_task(session, "acme", task_uuid(namespace, "acme", f"W-{number}"), task)
    with engine.begin() as connection:
        for number in range(5):
            connection.execute(
                update(gateway_tasks)
                .where(gateway_tasks.c.task_id == f"W-{number}")
                .values(
                    status=vocabulary.WAITING,
                    waiting_reason=vocabulary.UNKNOWN_CUSTOMER if number < 3 else None,
                )
            )
    assert value(scrape(app), "taskgate_tasks_waiting", reason="unknown_customer") == 5
    engine.dispose()


RUNNING_WORKER = """
import sys
from gateway.metrics import DELIVERY_ATTEMPTS
DELIVERY_ATTEMPTS.labels("delivered").inc()
print("counted", flush=True)
sys.stdin.readline()
"""


def test_gunicorn_starting_keeps_the_metrics_of_the_workers_running_beside_it(tmp_path, monkeypatch):
    """One PROMETHEUS_MULTIPROC_DIR per host sums every process: gunicorn (re)starting removes an
    earlier run's files, not those of the `taskgate worker` processes that run on."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999999.db").write_bytes(b"")  # a process long gone
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    with subprocess.Popen(
        [sys.executable, "-c", RUNNING_WORKER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as worker:  # leaving closes its stdin: it ends
        assert worker.stdout.readline().strip() == "counted"
        spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
        conf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(conf)
        conf.on_starting(None)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))
        assert registry.get_sample_value("taskgate_delivery_attempts_total", {"outcome": "delivered"}) == 1
        assert not (directory / "counter_999999999.db").exists()
