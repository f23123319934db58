"""Wake-ups: a waiting loop learns about new work from its own process and, on PostgreSQL, from any."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.tables import outbox as gateway_outbox
from messaging.db import make_engine
from messaging.envelope import Envelope
from messaging.outbox import add_to_outbox, relay_wakeup
from messaging.wakeup import PostgresWakeup, make_wakeup
from tests.factories import wait_for

CHANNEL = "taskgate_test_wakeup"


def listening(wakeup):
    """Wait until wakeup listens (PostgreSQL), then forget the look-once wake-up that starting gives."""
    wakeup.wait(0)
    if isinstance(wakeup, PostgresWakeup):
        wait_for(wakeup.listening.is_set, timeout=30, message="LISTEN")
        wakeup.wait(0)
    return wakeup


def test_a_commit_elsewhere_and_a_notify_here_both_wake_the_waiter(database_url):
    engine = make_engine(database_url)
    wakeup = listening(make_wakeup(engine, CHANNEL))
    # Another process holds its own; in one process (SQLite) the writer shares the waiter's.
    writer = make_wakeup(engine, CHANNEL) if isinstance(wakeup, PostgresWakeup) else wakeup
    woken: list[bool] = []

    def wait_twice():
        woken.append(wakeup.wait(60))
        woken.append(wakeup.wait(60))

    thread = threading.Thread(target=wait_twice, daemon=True)
    try:
        thread.start()
        with Session(engine) as session, session.begin():
            writer.notify(session)  # on PostgreSQL it reaches the waiter through the database only
        wait_for(lambda: len(woken) == 1, timeout=30, message="the commit to wake the waiter")
        wakeup.notify()  # e.g. a finished callback attempt: must not wait for the next NOTIFY
        thread.join(30)
        assert woken == [True, True]
    finally:
        wakeup.close()
        wakeup.release()
        engine.dispose()


def test_on_postgresql_an_insert_into_the_gateways_outbox_wakes_its_relay_without_a_notify(postgres_database):
    """The webhook writes the gateway's outbox from other processes: its trigger notifies the relay."""
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    message = Envelope("survey.assign", "S-1", uuid.uuid4(), "acme", {"customer_id": "C-1", "survey_id": "X"})
    wakeup = listening(relay_wakeup(engine, gateway_outbox))
    try:
        with Session(engine) as session, session.begin():
            add_to_outbox(session, gateway_outbox, [message])
            wakeup.notify(session)  # sends nothing: the table's trigger does, at commit
        assert wakeup.wait(30), "an insert into the gateway's outbox did not wake its relay"
    finally:
        wakeup.close()
        wakeup.release()
        engine.dispose()


def test_only_the_gateways_outbox_notifies_on_postgresql(postgres_database):
    """A context's outbox is written by its own process, which wakes its relay in memory: a NOTIFY
    would wake every listening connection of the database for nothing."""
    engine = make_engine(postgres_database.url)
    try:
        with engine.connect() as connection:
            notifying = connection.scalars(
                text("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE '%notify_relay'")
            ).all()
    finally:
        engine.dispose()
    assert notifying == ["gateway_outbox"]
