"""Poison messages: retried a bounded number of times, dead-lettered with the reason, kept in the
database, never blocking the queue; replayable from the CLI."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from kombu import Producer
from sqlalchemy.orm import Session

from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.tables import dead_letters as dead_letter_table
from messaging import broker, topology, vocabulary
from messaging.dead_letters import list_dead_letters
from messaging.envelope import Envelope
from taskgate.cli import main
from tests.factories import upsert_task, wait_for
from tests.integration.conftest import CALLBACK_URL


@pytest.fixture(autouse=True)
def endpoint(callbacks):
    callbacks.post(CALLBACK_URL, status=204)


def publish(stack, envelope: Envelope) -> None:
    exchange, routing_key = vocabulary.route(envelope)
    with broker.connect(stack[1]) as connection:
        Producer(connection.default_channel).publish(
            json.dumps(envelope.to_body()).encode(),
            exchange=topology.EXCHANGES[exchange],
            routing_key=routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            headers=envelope.headers,
        )


def kept(engine) -> list[dict]:
    with Session(engine) as session:
        return list_dead_letters(session, dead_letter_table)


def test_a_poison_message_is_dead_lettered_with_its_reason_and_blocks_nothing(stack, gateway, client):
    engine = gateway.extensions["taskgate"].engine
    poison = Envelope(
        "customer.upsert", "P-1", uuid.uuid4(), "acme", {"customer_id": "C-1", "name": "No Email"}
    )
    publish(stack, poison)
    client.submit(upsert_task())  # queued behind the poison message
    client.wait_for_status("T-1001", "succeeded")
    [letter] = wait_for(lambda: kept(engine), message="the dead letter to be kept")
    assert letter["queue"] == "taskgate.customers"
    assert "KeyError" in letter["reason"] and "email" in letter["reason"]
    assert letter["task_id"] == "P-1"
    assert (letter["exchange"], letter["routing_key"]) == ("taskgate.tasks", "customer.upsert")


def test_a_dead_letter_is_replayed_once_its_cause_is_fixed(stack, gateway, client, monkeypatch, tmp_path):
    engine = gateway.extensions["taskgate"].engine
    identity = task_uuid(DEFAULT_NAMESPACE, "acme", "T-late")
    cause = Envelope("customer.upsert", "T-late", identity, "acme", {})
    early = vocabulary.result(cause, context="customers", outcome="customer.registered", status="succeeded")
    publish(stack, early)  # a result for a task the gateway does not know (yet)
    [letter] = wait_for(lambda: kept(engine), message="the dead letter to be kept")
    assert "UnknownTask" in letter["reason"]

    with Session(engine) as session, session.begin():
        accept_task(session, "acme", identity, upsert_task("T-late"))
    monkeypatch.setenv("TASKGATE_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    monkeypatch.setattr("taskgate.logs.configure", lambda level: None)

    listed = CliRunner().invoke(main, ["dead-letters", "list"])
    assert listed.exit_code == 0 and str(letter["id"]) in listed.output
    replayed = CliRunner().invoke(main, ["dead-letters", "replay", str(letter["id"])])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output.splitlines()[-1])["replayed"] == [str(letter["id"])]

    # accepting the task routed it as well, so it gets its own result besides the replayed one
    task = client.wait_for_results("T-late", 2)
    assert early.payload["result_id"] in [result["result_id"] for result in task["results"]]
    assert kept(engine) == []  # no longer pending replay
    again = CliRunner().invoke(main, ["dead-letters", "replay", str(letter["id"])])
    assert again.exit_code != 0 and "already replayed" in again.output


def test_a_dead_letter_no_database_would_store_as_is_is_kept_cleaned(stack, gateway):
    engine = gateway.extensions["taskgate"].engine
    with broker.connect(stack[1]) as connection:
        Producer(connection.default_channel).publish(
            b"garbage\x00body",
            exchange=topology.dead_letter,
            routing_key="taskgate.customers",
            content_type="application/octet-stream",
            message_id="x" * 200,  # AMQP allows 255; the column keeps 64
            headers={"x-taskgate-reason": "bad\x00reason", "x-task-id": "T" * 500},
        )
    [letter] = wait_for(lambda: kept(engine), message="the dead letter to be kept")
    assert letter["reason"] == "bad\ufffdreason"
    assert len(letter["message_id"]) == 64 and len(letter["task_id"]) == 128
    assert letter["body"] == "garbage\ufffdbody"
