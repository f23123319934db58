import uuid

import pytest

from gateway import worker as gateway_worker
from messaging import vocabulary
from messaging.envelope import Envelope, InvalidEnvelope
from taskgate import registry


def task_envelope(**changes):
    fields = {
        "type": "customer.upsert",
        "task_id": "T-1",
        "task_uuid": uuid.uuid4(),
        "client_id": "acme",
        "payload": {"customer_id": "C-1"},
    }
    fields.update(changes)
    return Envelope(**fields)


def test_round_trip_through_the_body():
    envelope = task_envelope()
    assert Envelope.from_body(envelope.to_body()) == envelope


def test_a_body_of_an_earlier_release_naming_the_queues_that_handled_it_is_read():
    envelope = task_envelope()
    assert Envelope.from_body({**envelope.to_body(), "handled_by": ["taskgate.gateway.results"]}) == envelope


def test_message_ids_are_uuid7():
    assert task_envelope().message_id.version == 7


def test_a_caused_message_keeps_the_task_and_points_at_its_cause():
    cause = task_envelope()
    effect = cause.caused("customer.registered", {"version": 1})
    assert (effect.task_id, effect.task_uuid, effect.client_id) == (cause.task_id, cause.task_uuid, "acme")
    assert effect.causation_id == cause.message_id
    assert effect.message_id != cause.message_id


def test_headers_follow_the_contract():
    cause = task_envelope()
    assert cause.headers == {"x-task-id": "T-1", "x-task-uuid": str(cause.task_uuid), "x-client-id": "acme"}
    effect = cause.caused("customer.registered", {})
    assert effect.headers["x-causation-id"] == str(cause.message_id)


@pytest.mark.parametrize(
    "body",
    [
        "not an object",
        {},
        {**task_envelope().to_body(), "task_uuid": "not-a-uuid"},
        {**task_envelope().to_body(), "payload": []},
        {**task_envelope().to_body(), "type": ""},
        {**task_envelope().to_body(), "occurred_at": "noon"},
    ],
)
def test_unreadable_bodies_are_invalid(body):
    with pytest.raises(InvalidEnvelope):
        Envelope.from_body(body)


def test_routes():
    task = task_envelope()
    assert vocabulary.route(task) == ("taskgate.tasks", "customer.upsert")
    assert vocabulary.route(task.caused("customer.registered", {})) == (
        "taskgate.events",
        "customer.registered",
    )
    result = vocabulary.result(task, context="customers", outcome="customer.registered", status="succeeded")
    assert vocabulary.route(result) == ("taskgate.results", "customers.customer.registered")
    with pytest.raises(ValueError):
        vocabulary.route(task_envelope(type="unknown.thing"))


def test_a_result_is_identified_by_its_message_id():
    result = vocabulary.result(task_envelope(), context="customers", outcome="x", status="rejected")
    assert result.payload["result_id"] == str(result.message_id)
    with pytest.raises(ValueError):
        vocabulary.result(task_envelope(), context="customers", outcome="x", status="maybe")


def test_the_gateways_queue_takes_the_results_and_statuses_of_every_context():
    """The gateway's queue is bound to each context's results by name: a context missing from
    vocabulary.CONTEXTS would have its results go unrecorded."""
    assert set(registry.NAMES) - {gateway_worker.NAME} <= set(vocabulary.CONTEXTS)
    keys = {binding.routing_key for binding in gateway_worker.QUEUE.bindings}
    assert {f"{context}.#" for context in vocabulary.CONTEXTS} <= keys
    assert "#" not in keys
