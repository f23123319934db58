"""Backpressure: over a backlog limit the webhook answers 503 with Retry-After, and takes tasks
again by itself once the backlog has drained (below 80 % of the limit)."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
import responses
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway import create_app
from gateway.backpressure import UNFINISHED_WINDOW, Backpressure
from gateway.callbacks import CallbackDispatcher
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.results import record_result
from gateway.tables import outbox, results, tasks
from messaging import broker, vocabulary
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope
from messaging.relay import OutboxRelay
from messaging.wakeup import Wakeup
from taskgate.runtime import declare_topology
from tests.conftest import make_settings
from tests.factories import add_done_tasks, register_client, rows_scanned, signed, upsert_task


def make_app(database_url, **limits):
    app = create_app(make_settings(database_url, **limits))
    app.extensions["taskgate"].backpressure.ttl = 0  # look at the backlog on every request
    return app


class Sender:
    def __init__(self, app):
        self.http = app.test_client()
        self.secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
        self.numbers = itertools.count()

    def send(self):
        number = next(self.numbers)
        raw, headers = signed(self.secret, upsert_task(task_id=f"T-{number}"), webhook_id=f"msg_{number}")
        return self.http.post("/v1/clients/acme/tasks", data=raw, headers=headers)


@pytest.fixture
def relay(database_url):
    """The gateway's outbox relay, run by hand: each call publishes up to `batch` messages."""
    declare_topology("memory://")
    engine = make_engine(database_url)
    with broker.connect("memory://") as connection:
        yield OutboxRelay(engine, outbox, connection, Wakeup(), batch_size=1)
    engine.dispose()


def test_an_outbox_backlog_over_the_limit_refuses_tasks_until_it_drains(database_url, relay):
    app = make_app(database_url, max_outbox_backlog=5)
    sender = Sender(app)
    assert [sender.send().status_code for _ in range(6)] == [202] * 6  # 6th: 5 waiting, not over 5

    refused = sender.send()
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert refused.mimetype == "application/problem+json"
    assert "outbox backlog over 5" in refused.get_json()["detail"]

    relay.relay_batch()  # 5 left: at the limit, but refusing goes on until below 80 % of it
    relay.relay_batch()  # 4 left: 80 %
    assert sender.send().status_code == 503
    relay.relay_batch()  # 3 left
    assert sender.send().status_code == 202
    app.extensions["taskgate"].engine.dispose()


def test_undelivered_callbacks_over_the_limit_refuse_tasks(database_url):
    app = make_app(database_url, max_undelivered_callbacks=2, max_outbox_backlog=0)
    engine = app.extensions["taskgate"].engine
    sender = Sender(app)
    for number in range(3):  # three results waiting for their callback
        identity = task_uuid(app.extensions["taskgate"].settings.namespace, "acme", f"R-{number}")
        cause = Envelope("customer.upsert", f"R-{number}", identity, "acme", {})
        result = vocabulary.result(
            cause, context="customers", outcome="customer.registered", status="succeeded"
        )
        with Session(engine) as session, session.begin():
            accept_task(session, "acme", identity, upsert_task(task_id=f"R-{number}"))
            record_result(session, result)
    assert sender.send().status_code == 503

    dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), allow_private=True)
    with responses.RequestsMock() as endpoint:  # it refuses, and with one attempt each fails for good
        endpoint.post("http://client.test/callbacks", status=500)
        while dispatcher.deliver_due():
            pass
    assert sender.send().status_code == 202
    engine.dispose()


def test_tasks_not_yet_decided_over_the_limit_refuse_tasks_until_they_are(database_url):
    """Wherever undecided tasks wait (here: in a broker queue no context drains), over the limit
    new ones are refused; as their results come in, tasks are taken again."""
    app = make_app(database_url, max_unfinished_tasks=3, max_outbox_backlog=0)
    engine = app.extensions["taskgate"].engine
    sender = Sender(app)
    assert [sender.send().status_code for _ in range(4)] == [202] * 4  # 4th: 3 undecided, not over 3
    refused = sender.send()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "unfinished backlog over 3" in refused.get_json()["detail"]

    def decide(number):
        identity = task_uuid(app.extensions["taskgate"].settings.namespace, "acme", f"T-{number}")
        cause = Envelope("customer.upsert", f"T-{number}", identity, "acme", {})
        with Session(engine) as session, session.begin():
            record_result(
                session,
                vocabulary.result(
                    cause, context="customers", outcome="customer.registered", status="succeeded"
                ),
            )

    decide(0)  # 3 undecided: at the limit, but refusing goes on until below 80 % of it
    assert sender.send().status_code == 503
    decide(1)  # 2 undecided
    assert sender.send().status_code == 202
    engine.dispose()


def test_tasks_undecided_for_long_no_longer_hold_up_new_ones(database_url):
    app = make_app(database_url, max_unfinished_tasks=2, max_outbox_backlog=0)
    engine = app.extensions["taskgate"].engine
    sender = Sender(app)
    assert [sender.send().status_code for _ in range(3)] == [202] * 3
    assert sender.send().status_code == 503
    with Session(engine) as session, session.begin():  # stuck ones, e.g. their message dead-lettered
        session.execute(update(tasks).values(received_at=utcnow() - UNFINISHED_WINDOW - timedelta(seconds=1)))
    assert sender.send().status_code == 202
    engine.dispose()


def test_limits_of_zero_turn_backpressure_off(database_url):
    app = make_app(database_url, max_outbox_backlog=0, max_undelivered_callbacks=0, max_unfinished_tasks=0)
    sender = Sender(app)
    assert {sender.send().status_code for _ in range(5)} == {202}
    assert not app.extensions["taskgate"].backpressure.enabled
    app.extensions["taskgate"].engine.dispose()


def test_the_backlog_counts_read_few_rows_however_many_tasks_are_done(postgres_database):
    """PostgreSQL: the counts look for undecided tasks and pending deliveries by status, and such
    rows are few among the done ones. Run as a prepared statement, "status = $1" got a generic plan
    while the tables were small (a scan that stops at the limit), kept as they grew: a scan of
    every done task and delivery, each time the backlog was counted."""

    postgres_database.empty()
    engine = make_engine(postgres_database.url, pool_size=1, max_overflow=0)  # one connection
    try:
        register_client(engine)
        with engine.begin() as connection:
            add_done_tasks(connection, "A", 200, delivered=True)
            connection.exec_driver_sql("ANALYZE")  # statistics of the early days
        limits = {"max_outbox": 100, "max_undelivered": 100, "max_unfinished": 100}
        counts = Backpressure(engine, [outbox], **limits)._counts
        since = {"since": utcnow() - UNFINISHED_WINDOW}
        with engine.begin() as connection:
            for _ in range(20):  # psycopg prepares it after 5 runs, PostgreSQL goes generic after 5 more
                connection.execute(counts, since).one()
            add_done_tasks(connection, "B", 20_000, delivered=True)
        with engine.begin() as connection:
            before = rows_scanned(connection, "gateway_tasks", "gateway_results")
            backlog = connection.execute(counts, since).one()
            read = rows_scanned(connection, "gateway_tasks", "gateway_results") - before
        assert tuple(backlog) == (0, 0, 0)
        assert read == 0, f"counting the backlog scanned {read} rows"
    finally:
        engine.dispose()


def undelivered(app, count: int) -> None:
    """count tasks of acme whose result waits for its callback (a pending delivery)."""
    state = app.extensions["taskgate"]
    for number in range(count):
        identity = task_uuid(state.settings.namespace, "acme", f"R-{number}")
        cause = Envelope("customer.upsert", f"R-{number}", identity, "acme", {})
        result = vocabulary.result(
            cause, context="customers", outcome="customer.registered", status="succeeded"
        )
        with Session(state.engine) as session, session.begin():
            accept_task(session, "acme", identity, upsert_task(task_id=f"R-{number}"))
            record_result(session, result)


@pytest.mark.parametrize(
    "limits", [{"max_undelivered_per_client": 2}, {"max_undelivered_callbacks": 2}], ids=["client", "global"]
)
def test_a_task_sent_again_under_a_new_webhook_id_is_answered_while_new_ones_are_refused(
    database_url, limits
):
    """CONTRACT §3: the same task with the same content again is a 200; it is not a new task."""
    app = make_app(database_url, max_outbox_backlog=0, **limits)
    sender = Sender(app)
    raw, headers = signed(sender.secret, upsert_task(task_id="T-first"), webhook_id="msg_first")
    assert sender.http.post("/v1/clients/acme/tasks", data=raw, headers=headers).status_code == 202
    undelivered(app, 3)
    assert sender.send().status_code in (429, 503)  # a new task
    raw, headers = signed(sender.secret, upsert_task(task_id="T-first"), webhook_id="msg_retry")
    again = sender.http.post("/v1/clients/acme/tasks", data=raw, headers=headers)
    assert again.status_code == 200
    assert again.get_json()["task_id"] == "T-first"
    app.extensions["taskgate"].engine.dispose()


def test_only_the_limit_that_was_exceeded_refuses_until_below_80_percent(database_url):
    """The undelivered callbacks, at 90 % of their limit but never over it, do not keep the
    refusal the outbox's backlog began going once that backlog is gone."""
    app = make_app(database_url, max_outbox_backlog=2, max_undelivered_callbacks=10, max_unfinished_tasks=0)
    state = app.extensions["taskgate"]
    sender = Sender(app)
    undelivered(app, 9)
    with state.engine.begin() as connection:
        connection.execute(update(outbox).values(published_at=utcnow()))
    codes = [sender.send().status_code for _ in range(4)]  # nobody publishes this app's outbox
    assert codes[-1] == 503
    with state.engine.begin() as connection:  # the relay catches up
        connection.execute(update(outbox).values(published_at=utcnow()))
    assert sender.send().status_code == 202
    state.engine.dispose()


def test_each_limit_exceeded_keeps_refusing_until_its_own_backlog_is_below_80_percent(database_url):
    """Two limits over at once: the outbox draining does not end the refusal the undelivered
    callbacks began, while they stay above 80 % of theirs."""
    app = make_app(database_url, max_outbox_backlog=2, max_undelivered_callbacks=10, max_unfinished_tasks=0)
    state = app.extensions["taskgate"]
    backpressure = state.backpressure
    register_client(state.engine)
    undelivered(app, 11)
    with state.engine.begin() as connection:
        connection.execute(update(outbox).values(published_at=utcnow()))
    assert "undelivered" in backpressure.reason_to_refuse()
    with Session(state.engine) as session, session.begin():  # the outbox goes over too
        for number in range(3):
            task = upsert_task(task_id=f"O-{number}")
            accept_task(session, "acme", task_uuid(state.settings.namespace, "acme", f"O-{number}"), task)
    assert backpressure.reason_to_refuse() is not None
    with state.engine.begin() as connection:  # 2 callbacks delivered (9 of 10), the outbox drains
        delivered = connection.execute(select(results.c.result_id).limit(2)).scalars().all()
        connection.execute(
            update(results).where(results.c.result_id.in_(delivered)).values(delivery_status="delivered")
        )
        connection.execute(update(outbox).values(published_at=utcnow()))
    assert "undelivered" in backpressure.reason_to_refuse()
    state.engine.dispose()


def test_a_task_id_reused_with_other_content_is_409_while_new_tasks_are_refused(database_url):
    app = make_app(database_url, max_outbox_backlog=0, max_undelivered_per_client=2)
    sender = Sender(app)
    raw, headers = signed(sender.secret, upsert_task(task_id="T-first"), webhook_id="msg_first")
    assert sender.http.post("/v1/clients/acme/tasks", data=raw, headers=headers).status_code == 202
    undelivered(app, 3)
    other = upsert_task(task_id="T-first")
    other["payload"]["name"] = "Someone Else"
    raw, headers = signed(sender.secret, other, webhook_id="msg_other")
    assert sender.http.post("/v1/clients/acme/tasks", data=raw, headers=headers).status_code == 409
    app.extensions["taskgate"].engine.dispose()


def test_one_request_counts_the_backlogs_while_the_others_go_by_the_last_answer(database_url):
    """While one request's count waits on the database (slow to answer, or to fail, as when it is
    unreachable), the others neither wait for it nor count again: they go by the last answer at
    once, instead of each meeting the database's timeout in turn."""
    engine = make_engine(database_url)
    backpressure = Backpressure(engine, [outbox], max_outbox=10, max_undelivered=10, ttl=0)
    counting, release, counts, failures = threading.Event(), threading.Event(), [], []

    def count_until_released():
        counts.append(1)
        counting.set()
        release.wait(10)
        raise OperationalError("SELECT", {}, Exception("connection timeout expired"))

    def first_request():
        try:
            backpressure.reason_to_refuse()
        except OperationalError as error:
            failures.append(error)

    backpressure._check = count_until_released
    first = threading.Thread(target=first_request)
    first.start()
    assert counting.wait(10)
    answers = []
    others = threading.Thread(
        target=lambda: answers.extend(backpressure.reason_to_refuse() for _ in range(5))
    )
    others.start()
    others.join(5)
    answered_meanwhile = not others.is_alive()
    release.set()
    first.join(10)
    others.join(10)
    engine.dispose()
    assert answered_meanwhile and answers == [None] * 5
    assert len(counts) == 1 and len(failures) == 1  # the request that counted met the failure
