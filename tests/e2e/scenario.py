"""The client's side of the walking skeleton, used against every deployment shape."""

from __future__ import annotations

import json
import time

import requests

from gateway import signatures
from tests.factories import (
    cancel_task,
    maintenance_task,
    schedule_task,
    signed,
    survey_task,
    upsert_task,
    wait_for,
)


def upsert_comes_back_signed(base_url: str, credentials: dict, receiver) -> None:
    """POST a signed customer.upsert; expect 202, a signed callback tagged with the task-id, and
    a GET showing the task succeeded with its delivery delivered."""
    client_id = credentials["client_id"]
    raw, headers = signed(credentials["signing_secret"], upsert_task(), webhook_id="msg_e2e_1")
    response = requests.post(
        f"{base_url}/v1/clients/{client_id}/tasks", data=raw, headers=headers, timeout=10
    )
    assert response.status_code == 202, response.text
    assert response.json()["task_uuid"] == "e98a61d6-14d6-5dcc-99de-e4130e825881"

    wait_for(lambda: receiver.requests, timeout=30, message="the result callback")
    [callback] = [r for r in receiver.requests if json.loads(r["body"])["data"]["task_id"] == "T-1001"]
    webhook_id = signatures.verify(
        [credentials["signing_secret"]], callback["headers"], callback["body"], now=time.time()
    )
    data = json.loads(callback["body"])["data"]
    assert (data["task_id"], data["outcome"], data["status"]) == (
        "T-1001",
        "customer.registered",
        "succeeded",
    )
    assert webhook_id == data["result_id"]

    auth = {"Authorization": f"Bearer {credentials['api_token']}"}
    url = f"{base_url}/v1/clients/{client_id}/tasks/T-1001"

    def delivered():
        task = requests.get(url, headers=auth, timeout=10).json()
        return task["deliveries"] and task["deliveries"][0]["status"] == "delivered" and task

    task = wait_for(delivered, timeout=30, message="the delivery to be recorded")
    assert task["status"] == "succeeded"
    assert [result["result_id"] for result in task["results"]] == [data["result_id"]]

    again = requests.post(f"{base_url}/v1/clients/{client_id}/tasks", data=raw, headers=headers, timeout=10)
    assert again.status_code == 200
    assert again.json()["status"] == "succeeded"


def every_task_type_and_the_cancel_cascade(base_url: str, credentials: dict, receiver) -> None:
    """After upsert_comes_back_signed: a survey, an appointment, a linked maintenance job, then the
    appointment's cancel, whose two results (appointment and maintenance) arrive as two callbacks."""
    client_id, secret = credentials["client_id"], credentials["signing_secret"]
    sent = [
        survey_task("S-1"),
        schedule_task("A-1", "2026-12-01T09:00:00+01:00"),
        maintenance_task("M-1", "2026-12-01T10:00:00Z", appointment_task_id="A-1"),
    ]
    for number, task in enumerate(sent):
        raw, headers = signed(secret, task, webhook_id=f"msg_e2e_{task['task_id']}_{number}")
        response = requests.post(
            f"{base_url}/v1/clients/{client_id}/tasks", data=raw, headers=headers, timeout=10
        )
        assert response.status_code == 202, response.text

    def outcomes():
        return {(body["data"]["task_id"], body["data"]["outcome"]) for body in receiver.bodies()}

    wait_for(
        lambda: (
            {("S-1", "survey.assigned"), ("A-1", "appointment.scheduled"), ("M-1", "maintenance.scheduled")}
            <= outcomes()
        ),
        timeout=30,
        message="survey, appointment and maintenance results",
    )
    raw, headers = signed(secret, cancel_task("X-1", "A-1"), webhook_id="msg_e2e_cancel")
    assert requests.post(f"{base_url}/v1/clients/{client_id}/tasks", data=raw, headers=headers, timeout=10).ok

    wait_for(
        lambda: {("X-1", "appointment.canceled"), ("X-1", "maintenance.canceled")} <= outcomes(),
        timeout=30,
        message="both results of the cancel",
    )
    cancel_callbacks = [r for r in receiver.requests if json.loads(r["body"])["data"]["task_id"] == "X-1"]
    assert len(cancel_callbacks) == 2
    for callback in cancel_callbacks:
        assert signatures.verify([secret], callback["headers"], callback["body"], now=time.time())
    assert len({callback["headers"]["webhook-id"] for callback in cancel_callbacks}) == 2

    auth = {"Authorization": f"Bearer {credentials['api_token']}"}
    task = requests.get(f"{base_url}/v1/clients/{client_id}/tasks/X-1", headers=auth, timeout=10).json()
    assert task["status"] == "succeeded"
    assert sorted(result["context"] for result in task["results"]) == ["appointment", "maintenance"]


def a_chunked_body_over_the_limit_is_refused(base_url: str) -> None:
    """No Content-Length to check up front: the limit must hold while the body streams in."""

    def chunks():
        for _ in range(100):
            yield b"x" * 1024  # 100 KiB in all, over the 64 KiB limit

    response = requests.post(
        f"{base_url}/v1/clients/acme/tasks",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
