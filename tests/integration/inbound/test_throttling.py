"""Throttling and refusals: failed authentication is throttled per source and per client, a 401
never tells whether a client exists, and one client's backlog or pace refuses only that client."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from gateway import clients as clients_module
from gateway.clients import rotate_secret
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.results import record_result
from messaging import vocabulary
from messaging.envelope import Envelope
from tests.factories import register_client, signed, upsert_task
from tests.integration.inbound.support import TOKEN, URL, assert_problem, post

# --- authentication -----------------------------------------------------------------------------------


def test_a_401_does_not_tell_whether_the_client_exists(app, credentials):
    http = app.test_client()
    wrong = "whsec_" + "A" * 43 + "="
    for variant in (
        {},  # a wrong signature
        {"timestamp": 1},  # an old one
    ):
        known = assert_problem(post(http, wrong, upsert_task(), **variant), 401)
        unknown = assert_problem(
            post(http, wrong, upsert_task(), url="/v1/clients/nobody/tasks", **variant), 401
        )
        assert known == unknown
    missing = [http.post(url, json=upsert_task()) for url in (URL, "/v1/clients/nobody/tasks")]
    assert missing[0].get_json() == missing[1].get_json()


def test_no_metric_label_is_made_for_an_unauthenticated_client(app, credentials):
    register_client(app.extensions["taskgate"].engine, "unsigned-only")
    http = app.test_client()
    wrong = "whsec_" + "A" * 43 + "="
    for client_id in ("made-up-client", "unsigned-only"):
        assert post(http, wrong, upsert_task(), url=f"/v1/clients/{client_id}/tasks").status_code == 401
    assert post(http, credentials["signing_secret"], upsert_task()).status_code == 202
    labels = {
        sample.labels.get("client_id")
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if metric.name == "taskgate_tasks_received"
    }
    assert "acme" in labels
    assert not labels & {"made-up-client", "unsigned-only"}


def test_failed_signatures_from_one_source_are_throttled(make_app):
    app = make_app(auth_failures_per_source="3/minute", auth_failures_per_client="100/minute")
    secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
    http, wrong = app.test_client(), "whsec_" + "A" * 43 + "="
    assert [post(http, wrong, upsert_task()).status_code for _ in range(3)] == [401] * 3
    refused = post(http, wrong, upsert_task())  # the source is throttled
    assert_problem(refused, 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # A right one goes all the same: nobody can lock a client out by failing in its name.
    assert post(http, secret, upsert_task(task_id="T-right")).status_code == 202
    assert post(http, wrong, upsert_task(), source="192.0.2.2").status_code == 401  # another source


def test_failed_signatures_for_one_client_are_throttled_whatever_the_source(make_app):
    app = make_app(auth_failures_per_source="100/minute", auth_failures_per_client="3/minute")
    engine = app.extensions["taskgate"].engine
    acme = register_client(engine)["signing_secret"]
    other = register_client(engine, "other")["signing_secret"]
    http, wrong = app.test_client(), "whsec_" + "A" * 43 + "="
    for number in range(3):
        assert post(http, wrong, upsert_task(), source=f"198.51.100.{number}").status_code == 401
    assert_problem(post(http, wrong, upsert_task(), source="203.0.113.9"), 429)
    assert post(http, acme, upsert_task(), source="203.0.113.9").status_code == 202  # acme itself goes on
    other_task = post(http, other, upsert_task(), url="/v1/clients/other/tasks", source="203.0.113.9")
    assert other_task.status_code == 202
    # A client that does not exist is throttled all the same (nothing tells it apart).
    for number in range(3):
        post(http, wrong, upsert_task(), url="/v1/clients/nobody/tasks", source=f"198.51.100.{number}")
    assert_problem(post(http, wrong, upsert_task(), url="/v1/clients/nobody/tasks"), 429)


def test_a_throttled_client_id_still_takes_its_client_unread_so_far_or_with_a_rotated_secret(
    make_app, monkeypatch
):
    """Wrong API tokens (which read no client into the webhook's memory) throttle acme's id: acme's
    signed task still goes, read for the check; and after a rotation, so does one signed with the
    new secret (the client read again, at most once per RECENT_SECONDS, here every time)."""
    app = make_app(auth_failures_per_source="100/minute", auth_failures_per_client="3/minute")
    engine = app.extensions["taskgate"].engine
    secret = register_client(engine)["signing_secret"]
    http = app.test_client()
    for _ in range(3):
        assert http.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert_problem(post(http, "whsec_" + "A" * 43 + "=", upsert_task()), 429)
    assert post(http, secret, upsert_task(task_id="T-unread")).status_code == 202
    monkeypatch.setattr(clients_module, "RECENT_SECONDS", 0.0)
    with Session(engine) as session, session.begin():
        rotated = rotate_secret(session, "acme", timedelta(0))["signing_secret"]
    assert post(http, rotated, upsert_task(task_id="T-rotated")).status_code == 202


def test_wrong_api_tokens_are_throttled(make_app):
    app = make_app(auth_failures_per_source="3/minute", auth_failures_per_client="100/minute")
    token = register_client(app.extensions["taskgate"].engine)["api_token"]
    http = app.test_client()
    for _ in range(3):
        assert http.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 401
    refused = http.get(URL, headers={"Authorization": "Bearer wrong"})
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert http.get(URL, headers={"Authorization": f"Bearer {token}"}).status_code == 200  # the client's
    other_source = {"REMOTE_ADDR": "192.0.2.77"}
    assert (
        http.get(URL, headers={"Authorization": f"Bearer {token}"}, environ_base=other_source).status_code
        == 200
    )


def test_failed_console_sign_ins_and_bearers_are_throttled(make_app):
    app = make_app(auth_failures_per_source="3/minute")
    http = app.test_client()
    for _ in range(2):
        assert http.post("/console/login", data={"token": "guess"}).status_code == 401
    assert http.get("/console/", headers={"Authorization": "Bearer guess"}).status_code == 401
    for refused in (
        http.post("/console/login", data={"token": TOKEN}),
        http.get("/console/", headers={"Authorization": f"Bearer {TOKEN}"}),
    ):
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    signed_in = http.post("/console/login", data={"token": TOKEN}, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert signed_in.status_code == 303


def test_behind_a_trusted_proxy_the_throttle_counts_the_forwarded_address(make_app):
    app = make_app(auth_failures_per_source="2/minute", proxy_hops=1)
    secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
    http, wrong = app.test_client(), "whsec_" + "A" * 43 + "="

    def via_proxy(secret_, client_address):
        raw, headers = signed(secret_, upsert_task())
        headers["X-Forwarded-For"] = client_address
        return http.post(URL, data=raw, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.2"})

    assert [via_proxy(wrong, "198.51.100.7").status_code for _ in range(2)] == [401, 401]
    assert via_proxy(wrong, "198.51.100.7").status_code == 429
    assert via_proxy(wrong, "198.51.100.8").status_code == 401  # another client behind the same proxy
    assert via_proxy(secret, "198.51.100.8").status_code == 202


# --- one client's trouble is its own ----------------------------------------------------------------------


def undelivered(app, client_id: str, count: int) -> None:
    """count results of client_id waiting for their callback."""
    engine, namespace = app.extensions["taskgate"].engine, app.extensions["taskgate"].settings.namespace
    for number in range(count):
        identity = task_uuid(namespace, client_id, f"R-{number}")
        cause = Envelope("customer.upsert", f"R-{number}", identity, client_id, {})
        result = vocabulary.result(
            cause, context="customers", outcome="customer.registered", status="succeeded"
        )
        with Session(engine) as session, session.begin():
            accept_task(session, client_id, identity, upsert_task(task_id=f"R-{number}"))
            record_result(session, result)


def test_a_client_over_its_share_of_undelivered_callbacks_gets_429_and_others_go_on(make_app):
    app = make_app(max_undelivered_per_client=2, max_outbox_backlog=0)
    engine = app.extensions["taskgate"].engine
    acme = register_client(engine)["signing_secret"]
    other = register_client(engine, "other")["signing_secret"]
    undelivered(app, "acme", 3)
    http = app.test_client()
    refused = post(http, acme, upsert_task(task_id="T-new"))
    assert "undelivered" in assert_problem(refused, 429)["detail"]
    assert refused.headers["Retry-After"] == "5"
    assert post(http, other, upsert_task(), url="/v1/clients/other/tasks").status_code == 202


def test_a_replay_is_answered_even_while_its_client_is_refused(make_app):
    app = make_app(max_undelivered_per_client=2, max_outbox_backlog=0)
    app.extensions["taskgate"].backpressure.ttl = 0
    secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
    http = app.test_client()
    assert post(http, secret, upsert_task(task_id="T-first"), webhook_id="msg_first").status_code == 202
    undelivered(app, "acme", 3)
    assert post(http, secret, upsert_task(task_id="T-first"), webhook_id="msg_first").status_code == 200
    assert post(http, secret, upsert_task(task_id="T-next"), webhook_id="msg_next").status_code == 429


def test_a_client_over_its_rate_limit_gets_429(make_app):
    app = make_app(client_rate_limit="2/minute")
    engine = app.extensions["taskgate"].engine
    acme = register_client(engine)["signing_secret"]
    other = register_client(engine, "other")["signing_secret"]
    http = app.test_client()
    statuses = [
        post(http, acme, upsert_task(task_id=f"T-{n}"), webhook_id=f"m-{n}").status_code for n in range(3)
    ]
    assert statuses == [202, 202, 429]
    assert post(http, other, upsert_task(), url="/v1/clients/other/tasks").status_code == 202
