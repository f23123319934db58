"""The client's side of the walking skeleton, used against every deployment shape."""

from __future__ import annotations

import json
import time

import requests

from gateway import signatures
from tests.factories import signed, upsert_task, wait_for


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
    [callback] = receiver.requests
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
