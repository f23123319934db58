"""The whole path in one process: webhook → customers context → result → signed callback.

Runs on SQLite + the in-process broker and on PostgreSQL + RabbitMQ; the client's endpoint is
stubbed with `responses`.
"""

import contextlib
import json
import logging
import uuid

from kombu import Queue, binding
from sqlalchemy import event, select

from gateway import signatures
from gateway import tables as gateway_tables
from messaging import broker, topology, vocabulary
from messaging.envelope import Envelope
from messaging.outbox import outbox_row
from tests.factories import signed, upsert_task, wait_for
from tests.integration.conftest import CALLBACK_URL


def submit(gateway, credentials, task, webhook_id="msg_1"):
    raw, headers = signed(credentials["signing_secret"], task, webhook_id=webhook_id)
    return gateway.test_client().post("/v1/clients/acme/tasks", data=raw, headers=headers)


def read(gateway, credentials, task_id="T-1001"):
    headers = {"Authorization": f"Bearer {credentials['api_token']}"}
    return gateway.test_client().get(f"/v1/clients/acme/tasks/{task_id}", headers=headers).get_json()


def delivered(gateway, credentials, task_id="T-1001"):
    task = read(gateway, credentials, task_id)
    return task if task["deliveries"] and task["deliveries"][0]["status"] == "delivered" else None


def test_an_upsert_comes_back_as_a_signed_callback(gateway, credentials, callbacks):
    callbacks.post(CALLBACK_URL, status=204)
    assert submit(gateway, credentials, upsert_task()).status_code == 202

    task = wait_for(lambda: delivered(gateway, credentials), message="the callback to be delivered")
    assert task["status"] == "succeeded"
    [result] = task["results"]
    assert (result["context"], result["outcome"], result["status"]) == (
        "customers",
        "customer.registered",
        "succeeded",
    )
    assert result["result"] == {"customer_id": "C-42", "version": 1}

    [call] = callbacks.calls
    request = call.request
    assert request.headers["webhook-id"] == result["result_id"]
    signatures.verify(
        [credentials["signing_secret"]],
        request.headers,
        request.body,
        now=float(request.headers["webhook-timestamp"]),
    )
    body = json.loads(request.body)
    assert body["type"] == "task.result"
    assert body["timestamp"].endswith("Z")
    assert body["data"] == {
        "result_id": result["result_id"],
        "task_id": "T-1001",
        "task_uuid": "e98a61d6-14d6-5dcc-99de-e4130e825881",
        "context": "customers",
        "outcome": "customer.registered",
        "status": "succeeded",
        "result": {"customer_id": "C-42", "version": 1},
    }


def test_customer_changes_are_published_as_versioned_events_with_the_email(
    stack, gateway, credentials, callbacks
):
    callbacks.post(CALLBACK_URL, status=204)
    events = Queue(
        "taskgate.test-customer-events", [binding(topology.events, "customer.*")], auto_delete=True
    )
    received = []
    with broker.connect(stack[1]) as connection, connection.Consumer([events], on_message=received.append):
        submit(gateway, credentials, upsert_task())
        submit(gateway, credentials, upsert_task("T-1002", email="ada@lovelace.org"), webhook_id="msg_2")
        wait_for(lambda: _drain(connection) or len(received) == 2, message="two customer events")
        for message in received:
            message.ack()
    first, second = (message.decode() for message in received)
    assert (first["type"], second["type"]) == ("customer.registered", "customer.updated")
    assert first["payload"] == {
        "customer_id": "C-42",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "version": 1,
        "seq": 1,  # its place in the customer's order of accepted tasks
    }
    assert second["payload"]["email"] == "ada@lovelace.org"
    assert (second["payload"]["version"], second["payload"]["seq"]) == (2, 2)
    assert received[1].headers["x-task-id"] == "T-1002"
    assert received[1].headers["x-causation-id"]


def _drain(connection):
    with contextlib.suppress(TimeoutError):
        connection.drain_events(timeout=0.1)


def test_a_replayed_task_yields_no_second_result(gateway, credentials, callbacks):
    callbacks.post(CALLBACK_URL, status=200)
    submit(gateway, credentials, upsert_task())
    wait_for(lambda: delivered(gateway, credentials))
    assert submit(gateway, credentials, upsert_task(), webhook_id="msg_2").status_code == 200
    # A later task goes through the same queues; once it is delivered, a duplicate would have been too.
    submit(gateway, credentials, upsert_task("T-1002", email="ada@lovelace.org"), webhook_id="msg_3")
    wait_for(lambda: delivered(gateway, credentials, "T-1002"))
    assert len(read(gateway, credentials)["results"]) == 1
    assert [json.loads(c.request.body)["data"]["task_id"] for c in callbacks.calls] == ["T-1001", "T-1002"]
    assert json.loads(callbacks.calls[1].request.body)["data"]["result"]["version"] == 2


def _called_back_upsert(gateway, credentials, callbacks) -> Envelope:
    """Submit T-1001 and wait for its callback; the task's message, to make more results of it."""
    callbacks.post(CALLBACK_URL, status=204)
    submit(gateway, credentials, upsert_task())
    task = wait_for(lambda: delivered(gateway, credentials))
    return Envelope(
        type="customer.upsert",
        task_id="T-1001",
        task_uuid=uuid.UUID(task["task_uuid"]),
        client_id="acme",
        payload={},
    )


def test_a_result_message_delivered_twice_is_recorded_and_called_back_once(
    stack, gateway, credentials, callbacks, caplog
):
    """A result's id is its message's id and the results table keeps each once: it is the gateway's
    inbox for results, which get no row in gateway_inbox. A copy in the same batch and one that
    comes after the first was recorded both change nothing, and the log says so."""
    caplog.set_level(logging.INFO)
    cause = _called_back_upsert(gateway, credentials, callbacks)
    again = vocabulary.result(
        cause, context="customers", outcome="customer.registered", status="succeeded", result={"again": 1}
    )
    row = outbox_row(again)

    def publish(copies: int) -> None:
        _publish(stack[1], [row] * copies)

    def two_delivered():
        deliveries = read(gateway, credentials)["deliveries"]
        return len(deliveries) == 2 and all(d["status"] == "delivered" for d in deliveries)

    publish(2)  # two copies at once: often one batch
    wait_for(two_delivered, message="the repeated result's callback")
    publish(1)  # and once more after the first was recorded, as a redelivery brings it
    # A later task goes through the same queues; once it is delivered, a repeat would have been too.
    submit(gateway, credentials, upsert_task("T-1002", email="ada@lovelace.org"), webhook_id="msg_2")
    wait_for(lambda: delivered(gateway, credentials, "T-1002"))
    results = read(gateway, credentials)["results"]
    assert sorted(result["result"].get("again", 0) for result in results) == [0, 1]
    assert [call.request.headers["webhook-id"] for call in callbacks.calls].count(str(again.message_id)) == 1
    with gateway.extensions["taskgate"].engine.connect() as connection:
        inbox = connection.scalars(select(gateway_tables.inbox.c.message_type)).all()
    assert vocabulary.TASK_RESULT not in inbox
    said = [
        record.getMessage()
        for record in caplog.records
        if record.__dict__.get("message_id") == str(again.message_id)
    ]
    assert sorted(said) == ["duplicate result ignored", "duplicate result ignored", "result recorded"]


def _publish(broker_url: str, rows: list[dict]) -> None:
    """Publish outbox rows straight to the broker, as a relay would."""
    with broker.connect(broker_url) as connection:
        producer = connection.Producer()
        for row in rows:
            producer.publish(
                row["body"],
                exchange=topology.EXCHANGES[row["exchange"]],
                routing_key=row["routing_key"],
                headers=row["headers"],
            )


def test_a_result_is_logged_recorded_once_when_its_batch_rolled_back_first(
    stack, gateway, credentials, callbacks, caplog
):
    """A result that comes with a message that fails (a status for a task nobody accepted) is
    recorded once, whether their batch failed first and they went one by one, and logged once."""
    caplog.set_level(logging.INFO)
    cause = _called_back_upsert(gateway, credentials, callbacks)
    late = vocabulary.result(
        cause, context="customers", outcome="customer.updated", status="succeeded", result={}
    )
    stranger = Envelope(
        type="survey.assign", task_id="T-404", task_uuid=uuid.uuid4(), client_id="acme", payload={}
    )
    unknown = vocabulary.task_status(stranger, context="survey", status=vocabulary.WAITING)
    _publish(stack[1], [outbox_row(late), outbox_row(unknown)])

    def both_delivered():
        deliveries = read(gateway, credentials)["deliveries"]
        return len(deliveries) == 2 and all(d["status"] == "delivered" for d in deliveries)

    wait_for(both_delivered, message="the late result's callback")
    said = [
        record.getMessage()
        for record in caplog.records
        if record.__dict__.get("message_id") == str(late.message_id)
    ]
    assert said == ["result recorded"]


def test_a_failed_callback_is_retried_with_the_same_webhook_id(gateway, credentials, callbacks):
    callbacks.post(CALLBACK_URL, status=503)
    callbacks.post(CALLBACK_URL, status=200)
    submit(gateway, credentials, upsert_task())
    task = wait_for(lambda: delivered(gateway, credentials))
    assert task["deliveries"][0]["attempts"] == 2
    assert task["deliveries"][0]["last_status_code"] == 200
    ids = {call.request.headers["webhook-id"] for call in callbacks.calls}
    assert ids == {task["results"][0]["result_id"]}


def test_a_callback_that_never_succeeds_ends_failed(gateway, credentials, callbacks):
    callbacks.post(CALLBACK_URL, status=500)
    submit(gateway, credentials, upsert_task())

    def failed():
        deliveries = read(gateway, credentials)["deliveries"]
        return deliveries and deliveries[0]["status"] == "failed" and deliveries[0]

    delivery = wait_for(failed, message="the delivery to fail")
    assert delivery["attempts"] == 3  # the schedule (0, 0.05, 0.05) allows three attempts
    assert delivery["last_status_code"] == 500
    assert delivery["next_attempt_at"] is None
    assert len(callbacks.calls) == 3


def test_a_fresh_result_is_handed_to_the_dispatcher_without_a_lease(gateway, credentials, callbacks):
    """The process that records a result attempts its callback at once: it is recorded leased to
    this process's dispatcher, which never leases it back from the table."""
    callbacks.post(CALLBACK_URL, status=204)
    leases = []
    event.listen(
        gateway.extensions["taskgate"].engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: (
            leases.append(sql)
            if sql.lstrip().startswith("UPDATE gateway_results SET next_attempt_at")
            else None
        ),
    )
    assert submit(gateway, credentials, upsert_task()).status_code == 202
    wait_for(lambda: delivered(gateway, credentials), message="the callback delivered")
    assert leases == []
