"""Wake-ups: a waiting loop learns about new work from its own process and, on PostgreSQL, from any."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from messaging.db import make_engine
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
