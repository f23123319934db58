"""The inbound edge: webhook-id replays, secret rotation, private callback URLs, secrets out of logs."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway import create_app, signatures
from gateway.clients import ClientError, add_client, rotate_secret
from gateway.tables import clients, tasks
from messaging.db import utcnow
from tests.conftest import make_settings
from tests.factories import register_client, signed, upsert_task, wait_for
from tests.integration.conftest import CALLBACK_URL

URL = "/v1/clients/acme/tasks"


@pytest.fixture
def app(database_url):
    app = create_app(make_settings(database_url))
    yield app
    app.extensions["taskgate"].engine.dispose()


@pytest.fixture
def engine(app):
    return app.extensions["taskgate"].engine


def count_tasks(engine):
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(tasks))


def test_a_replayed_webhook_id_is_answered_not_processed(app, engine):
    secret = register_client(engine)["signing_secret"]
    http = app.test_client()
    raw, headers = signed(secret, upsert_task("T-1"), webhook_id="msg_same")
    assert http.post(URL, data=raw, headers=headers).status_code == 202
    replay = http.post(URL, data=raw, headers=headers)  # the same request again
    assert replay.status_code == 200 and replay.get_json()["task_id"] == "T-1"
    assert count_tasks(engine) == 1


@pytest.mark.parametrize("first", ["T-1", "T-1-again"], ids=["after-a-new-task", "after-a-replay"])
def test_another_task_under_a_webhook_id_used_before_is_a_new_task(app, engine, first):
    """CONTRACT §3 answers by task_id alone: a client that reuses its webhook-ids (against
    Standard Webhooks' advice) still has every new task accepted, 409 only for a task_id reused
    with other content."""
    secret = register_client(engine)["signing_secret"]
    http = app.test_client()
    raw, headers = signed(secret, upsert_task("T-1"), webhook_id="msg_1")
    assert http.post(URL, data=raw, headers=headers).status_code == 202
    if first == "T-1-again":  # the same task under another webhook-id: 200, and that id remembered
        raw, headers = signed(secret, upsert_task("T-1"), webhook_id="msg_2")
        assert http.post(URL, data=raw, headers=headers).status_code == 200
    raw, headers = signed(secret, upsert_task("T-2"), webhook_id="msg_2" if first == "T-1-again" else "msg_1")
    assert http.post(URL, data=raw, headers=headers).status_code == 202
    raw, headers = signed(secret, upsert_task("T-2", name="Other"), webhook_id="msg_1")
    assert http.post(URL, data=raw, headers=headers).status_code == 409
    assert count_tasks(engine) == 2


def test_a_rotation_takes_effect_at_once_where_the_webhook_has_met_the_client(app, engine):
    """The webhook keeps the clients it has met; a request verified against a kept copy whose
    secrets changed since is verified again against the stored client."""
    old = register_client(engine)["signing_secret"]
    http = app.test_client()

    def post(secret, task_id):
        raw, headers = signed(secret, upsert_task(task_id), webhook_id=f"msg_{task_id}")
        return http.post(URL, data=raw, headers=headers).status_code

    assert post(old, "T-1") == 202
    with Session(engine) as session, session.begin():
        new = rotate_secret(session, "acme", timedelta(0))["signing_secret"]  # the old one ends now
    assert post(old, "T-2") == 401
    assert post(new, "T-3") == 202
    with Session(engine) as session, session.begin():
        newer = rotate_secret(session, "acme", timedelta(hours=1))["signing_secret"]
    assert [post(secret, task_id) for secret, task_id in ((newer, "T-4"), (new, "T-5"), (old, "T-6"))] == [
        202,
        202,
        401,
    ]
    with Session(engine) as session:
        assert set(session.scalars(select(tasks.c.task_id))) == {"T-1", "T-3", "T-4", "T-5"}


def test_an_overlong_webhook_id_is_refused_not_a_500(app, engine):
    secret = register_client(engine)["signing_secret"]
    raw, headers = signed(secret, upsert_task("T-1"), webhook_id="m" * 300)
    response = app.test_client().post(URL, data=raw, headers=headers)
    assert response.status_code == 401 and "webhook-id" in response.get_json()["detail"]


def test_after_a_rotation_both_secrets_verify_until_the_grace_period_ends(app, engine):
    old = register_client(engine)["signing_secret"]
    with Session(engine) as session, session.begin():
        new = rotate_secret(session, "acme", timedelta(hours=1))["signing_secret"]
    http = app.test_client()
    for number, secret in enumerate((old, new)):
        raw, headers = signed(secret, upsert_task(f"T-{number}"), webhook_id=f"msg_{number}")
        assert http.post(URL, data=raw, headers=headers).status_code == 202
    with Session(engine) as session, session.begin():
        session.execute(update(clients).values(previous_secret_expires_at=utcnow() - timedelta(seconds=1)))
    raw, headers = signed(old, upsert_task("T-9"), webhook_id="msg_9")
    assert http.post(URL, data=raw, headers=headers).status_code == 401


def test_rotating_an_unknown_client_is_an_error(engine):
    with pytest.raises(ClientError), Session(engine) as session:
        rotate_secret(session, "nobody", timedelta(hours=1))


def test_a_private_callback_url_is_refused_at_registration(engine):
    with pytest.raises(ClientError, match="non-public"), Session(engine) as session:
        add_client(session, "acme", "http://169.254.169.254/latest", allow_private=False)


def test_another_clients_delivery_is_invisible(app, engine):
    acme = register_client(engine)
    other = register_client(engine, "other")
    http = app.test_client()
    unknown = "/v1/clients/acme/deliveries/01234567-89ab-7def-8123-456789abcdef"
    assert http.get(unknown, headers={"Authorization": f"Bearer {acme['api_token']}"}).status_code == 404
    assert http.get(unknown, headers={"Authorization": f"Bearer {other['api_token']}"}).status_code == 401
    assert (
        http.get(
            "/v1/clients/acme/deliveries/not-a-uuid", headers={"Authorization": f"Bearer {acme['api_token']}"}
        ).status_code
        == 404
    )


@pytest.fixture
def endpoint(callbacks):
    callbacks.post(CALLBACK_URL, status=204)


def test_a_rotated_client_gets_callbacks_signed_with_both_secrets(
    gateway, credentials, client, callbacks, endpoint
):
    engine = gateway.extensions["taskgate"].engine
    with Session(engine) as session, session.begin():
        new = rotate_secret(session, "acme", timedelta(hours=1))["signing_secret"]
    client.credentials = {**credentials, "signing_secret": new}
    client.submit(upsert_task())
    task = wait_for(
        lambda: (
            (t := client.read("T-1001"))["deliveries"] and t["deliveries"][0]["status"] == "delivered" and t
        )
    )
    request = callbacks.calls[0].request
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (new, credentials["signing_secret"]):
        assert signatures.verify(
            [secret], request.headers, request.body, now=float(request.headers["webhook-timestamp"])
        )

    # and the delivery with its attempt log, through the API
    result_id = task["results"][0]["result_id"]
    detail = client.http.get(
        f"/v1/clients/acme/deliveries/{result_id}",
        headers={"Authorization": f"Bearer {credentials['api_token']}"},
    ).get_json()
    assert detail["status"] == "delivered" and detail["task_id"] == "T-1001"
    assert [attempt["status_code"] for attempt in detail["attempt_log"]] == [204]


def test_secrets_and_tokens_never_reach_the_logs(gateway, credentials, client, endpoint, caplog):
    caplog.set_level(logging.DEBUG)
    client.submit(upsert_task())
    client.wait_for_status("T-1001", "succeeded")
    raw, headers = signed("whsec_" + "A" * 44, upsert_task("T-2"))  # a wrong secret: 401
    client.http.post(URL, data=raw, headers=headers)
    client.http.get("/v1/clients/acme/tasks/T-1001", headers={"Authorization": "Bearer tg_wrong"})
    text = "\n".join(
        f"{record.getMessage()} {json.dumps(record.__dict__, default=str)}" for record in caplog.records
    )
    assert "T-1001" in text  # the logs are there...
    for secret in (
        credentials["signing_secret"],
        credentials["signing_secret"][6:],
        credentials["api_token"],
        "tg_wrong",
    ):
        assert secret not in text  # ...the secrets are not
