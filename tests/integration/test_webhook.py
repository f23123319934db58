"""POST /v1/clients/{client_id}/tasks per CONTRACT §3, on SQLite and PostgreSQL."""

import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder, run_wsgi_app

from gateway import create_app
from gateway import webhook as webhook_module
from gateway.tables import outbox, tasks
from messaging.db.sqlite import _writer_lock
from messaging.outbox import Offered
from tests.backends import sqlite_url
from tests.conftest import make_settings
from tests.factories import register_client, signed, upsert_task

URL = "/v1/clients/acme/tasks"


@pytest.fixture
def app(database_url):
    app = create_app(make_settings(database_url))
    yield app
    app.extensions["taskgate"].engine.dispose()


@pytest.fixture
def secret(app):
    return register_client(app.extensions["taskgate"].engine)["signing_secret"]


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, secret, body, url=URL, **options):
    raw, headers = signed(secret, body, **options)
    return client.post(url, data=raw, headers=headers)


def assert_problem(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"] and problem["type"]
    assert "Traceback" not in response.get_data(as_text=True)
    return problem


def stored(app):
    with Session(app.extensions["taskgate"].engine) as session:
        return session.scalar(select(func.count()).select_from(tasks)), session.scalar(
            select(func.count()).select_from(outbox)
        )


def test_a_signed_valid_task_is_accepted(app, client, secret):
    response = post(client, secret, upsert_task())
    assert response.status_code == 202
    assert response.headers["Location"] == "/v1/clients/acme/tasks/T-1001"
    assert response.get_json() == {
        "task_id": "T-1001",
        "task_uuid": "e98a61d6-14d6-5dcc-99de-e4130e825881",
        "status": "accepted",
        "links": {"self": "/v1/clients/acme/tasks/T-1001"},
    }
    assert stored(app) == (1, 1)


def test_the_same_task_again_is_200_with_the_current_representation(app, client, secret):
    post(client, secret, upsert_task())
    response = post(client, secret, upsert_task(), webhook_id="msg_2")
    assert response.status_code == 200
    body = response.get_json()
    assert body["task_uuid"] == "e98a61d6-14d6-5dcc-99de-e4130e825881"
    assert body["status"] == "accepted"
    assert body["results"] == [] and body["deliveries"] == []
    assert stored(app) == (1, 1)


def test_the_same_task_id_with_other_content_is_409(app, client, secret):
    post(client, secret, upsert_task())
    response = post(client, secret, upsert_task(name="Someone Else"), webhook_id="msg_2")
    assert_problem(response, 409)
    assert stored(app) == (1, 1)


def test_malformed_json_is_400(client, secret):
    assert_problem(post(client, secret, b'{"task_id": '), 400)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda headers: headers.pop("webhook-signature"),
        lambda headers: headers.update({"webhook-signature": "v1,AAAA"}),
        lambda headers: headers.update({"webhook-timestamp": str(int(time.time()) - 301)}),
    ],
    ids=["missing", "wrong", "expired"],
)
def test_a_bad_signature_is_401(app, client, secret, tamper):
    raw, headers = signed(secret, upsert_task())
    tamper(headers)
    assert_problem(client.post(URL, data=raw, headers=headers), 401)
    assert stored(app) == (0, 0)


def test_an_unknown_client_is_401(client, secret):
    assert_problem(post(client, secret, upsert_task(), url="/v1/clients/nobody/tasks"), 401)


def test_another_clients_signature_is_401(app, client, secret):
    other = register_client(app.extensions["taskgate"].engine, "other")["signing_secret"]
    assert_problem(post(client, other, upsert_task()), 401)


def test_a_body_over_the_limit_is_413(app, client, secret):
    task = upsert_task(name="x" * 70_000)
    assert_problem(post(client, secret, task), 413)
    assert stored(app) == (0, 0)


def test_a_body_that_is_not_json_is_415(client, secret):
    raw, headers = signed(secret, upsert_task())
    headers["Content-Type"] = "text/plain"
    assert_problem(client.post(URL, data=raw, headers=headers), 415)


def test_an_invalid_task_is_422_naming_each_field(app, client, secret):
    task = upsert_task(email="nope")
    task["task_id"] = "??"
    problem = assert_problem(post(client, secret, task), 422)
    assert set(problem["errors"]) == {"task_id", "payload.email"}
    assert all(isinstance(messages, list) and messages for messages in problem["errors"].values())
    assert stored(app) == (0, 0)


def test_storage_down_is_503_with_retry_after(tmp_path):
    app = create_app(make_settings(f"sqlite:///{tmp_path}/missing-dir/taskgate.db"))
    response = app.test_client().post(URL, data=json.dumps(upsert_task()), content_type="application/json")
    problem = assert_problem(response, 503)
    assert response.headers["Retry-After"].isdigit()
    assert "storage" in problem["detail"]


def test_broker_down_is_503_with_retry_after(database_url):
    app = create_app(make_settings(database_url, broker_url="amqp://guest:guest@127.0.0.1:1//"))
    secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
    response = post(app.test_client(), secret, upsert_task())
    problem = assert_problem(response, 503)
    assert response.headers["Retry-After"].isdigit()
    assert "broker" in problem["detail"]
    assert stored(app) == (0, 0)
    app.extensions["taskgate"].engine.dispose()


def test_the_202_waits_until_the_tasks_messages_are_published(database_url):
    """A client that sends its next task after this 202 has it published after this one, whichever
    webhook process takes it: the order of acceptance holds on the broker."""
    said = []

    def publish(rows):
        published = Offered(threading.Event(), time.monotonic())
        threading.Timer(0.2, lambda: (said.append("published"), published.done.set())).start()
        return published

    app = create_app(make_settings(database_url), publish=publish)
    secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
    assert post(app.test_client(), secret, upsert_task()).status_code == 202
    said.append("answered")
    assert said == ["published", "answered"]
    app.extensions["taskgate"].engine.dispose()


def test_a_warning_that_a_tasks_messages_are_not_published_yet_names_the_task(
    database_url, monkeypatch, caplog
):
    app = create_app(make_settings(database_url), publish=lambda rows: Offered(threading.Event(), 0.0))
    secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
    monkeypatch.setattr(webhook_module, "PUBLISH_WAIT_SECONDS", 0.01)
    with caplog.at_level(logging.WARNING, logger="gateway.webhook"):
        assert post(app.test_client(), secret, upsert_task()).status_code == 202
    [record] = [record for record in caplog.records if "not published" in record.getMessage()]
    assert (record.task_id, record.task_uuid) == ("T-1001", "e98a61d6-14d6-5dcc-99de-e4130e825881")
    app.extensions["taskgate"].engine.dispose()


def post_chunked(app, raw: bytes, headers: dict) -> str:
    """POST raw as gunicorn hands on a chunked request (no Content-Length, the input terminated by
    the server); the status line."""
    environ = EnvironBuilder(
        path=URL,
        method="POST",
        input_stream=io.BytesIO(raw),
        headers={**headers, "Transfer-Encoding": "chunked"},
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True
    _, status, _ = run_wsgi_app(app, environ)
    return status


@pytest.mark.parametrize(("padding", "status"), [(0, "202"), (70 * 1024, "413")], ids=["within", "over"])
def test_a_chunked_body_is_held_to_the_limit_too(app, secret, padding, status):
    raw = json.dumps(upsert_task()).encode()
    raw = raw[:-1] + b" " * padding + b"}"  # valid JSON either way
    _, headers = signed(secret, raw)
    assert post_chunked(app, raw, headers).startswith(status)
    assert stored(app) == ((1, 1) if status == "202" else (0, 0))


def test_twenty_concurrent_duplicates_are_one_task_and_one_routed_event(app, secret):
    start = threading.Barrier(20)

    def submit(number):
        raw, headers = signed(secret, upsert_task(), webhook_id=f"msg_{number}")
        start.wait()
        return app.test_client().post(URL, data=raw, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = sorted(pool.map(submit, range(20)))
    assert codes == [200] * 19 + [202]
    assert stored(app) == (1, 1)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**upsert_task(), "type": ["customer.upsert"]}, 422, "type"),
        (b"[" * 20_000 + b"]" * 20_000, 400, None),
        (
            b'{"task_id": "T-1", "type": "customer.upsert", "customer_id": "C-\\ud800", "payload": {}}',
            422,
            "customer_id",
        ),
        (upsert_task(name="Ada\x00Lovelace"), 422, "payload.name"),
        (
            {**upsert_task(), "payload": {"name": "Ada", "email": "ada@example.com", "\x00": 1}},
            422,
            "payload",
        ),
        (
            b'{"task_id": "T-1", "type": "customer.upsert", "customer_id": "C-1", "payload": {"n": NaN}}',
            400,
            None,
        ),
    ],
    ids=["type-not-a-string", "deeply-nested", "lone-surrogate", "nul-in-value", "nul-in-key", "nan"],
)
def test_crafted_bodies_get_a_clear_4xx_never_a_500(app, client, secret, body, status, field):
    """Malformed JSON (NaN is not JSON) is 400; well-formed JSON whose text no database stores is
    an invalid task, 422 naming the field (CONTRACT §3)."""
    problem = assert_problem(post(client, secret, body), status)
    if field is not None:
        assert field in problem["errors"]
    assert stored(app) == (0, 0)


def test_a_signature_that_is_not_ascii_is_401(client, secret):
    raw, headers = signed(secret, upsert_task())
    headers["webhook-signature"] = "v1,é"
    assert_problem(client.post(URL, data=raw, headers=headers), 401)


def test_a_signature_is_checked_against_the_timestamp_as_sent(client, secret):
    raw, headers = signed(secret, upsert_task())
    headers["webhook-timestamp"] = "0" + headers["webhook-timestamp"]  # same number, other text
    assert_problem(client.post(URL, data=raw, headers=headers), 401)


def test_a_client_id_outside_the_contract_is_401_without_a_query(client, secret):
    assert_problem(post(client, secret, upsert_task(), url="/v1/clients/a%00b/tasks"), 401)


def test_a_database_locked_longer_than_the_writers_wait_is_a_503(tmp_path, monkeypatch):
    app = create_app(make_settings(sqlite_url(tmp_path)))  # SQLite's single writer
    engine = app.extensions["taskgate"].engine
    secret = register_client(engine)["signing_secret"]
    monkeypatch.setattr(_writer_lock(str(engine.url)), "timeout", 0.2)
    holding, done = threading.Event(), threading.Event()

    def hold_the_write_lock():
        with engine.begin():  # BEGIN IMMEDIATE: this process's writer, until done
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert holding.wait(10)
        response = post(app.test_client(), secret, upsert_task())
    finally:
        done.set()
        holder.join(10)
        engine.dispose()
    assert_problem(response, 503)
    assert response.headers["Retry-After"]
