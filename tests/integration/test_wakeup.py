"""Wake-ups and who publishes the webhook's messages: nothing listens on the database any more."""

from __future__ import annotations

import threading

from sqlalchemy import text

from messaging.db import make_engine
from messaging.wakeup import Wakeup
from tests.factories import wait_for


def test_a_notify_wakes_the_waiter_and_a_close_wakes_it_for_good():
    wakeup = Wakeup()
    woken: list[bool] = []

    def wait_twice():
        woken.append(wakeup.wait(60))
        woken.append(wakeup.wait(60))

    thread = threading.Thread(target=wait_twice, daemon=True)
    thread.start()
    wakeup.notify()
    wait_for(lambda: len(woken) == 1, timeout=30, message="the notify to wake the waiter")
    wakeup.close()
    thread.join(30)
    assert woken == [True, True]
    assert not Wakeup().wait(0)


def test_no_outbox_notifies_on_postgresql(postgres_database):
    """Every writer offers its relay what it committed (the webhook's process runs its own), and
    rows left behind are swept: a NOTIFY would wake every listening connection for nothing."""
    engine = make_engine(postgres_database.url)
    try:
        with engine.connect() as connection:
            notifying = connection.scalars(
                text("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE '%notify_relay'")
            ).all()
    finally:
        engine.dispose()
    assert notifying == []
