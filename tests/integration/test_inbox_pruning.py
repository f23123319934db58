"""A context forgets the messages it processed once they are days old (the inbox would otherwise
grow by a row per message for ever), and remembers the younger ones."""

import threading
import uuid
from datetime import timedelta

from sqlalchemy import insert, select

from contexts.customers.tables import inbox
from messaging.db import make_engine, utcnow
from messaging.inbox import InboxPruner, prune
from tests.factories import wait_for

DAYS_AGO = (10, 9, 8, 1, 0)


def processed(engine, days_ago=DAYS_AGO):
    now = utcnow()
    rows = [
        {
            "message_id": uuid.uuid4(),
            "message_type": "customer.upsert",
            "processed_at": now - timedelta(days=days),
        }
        for days in days_ago
    ]
    with engine.begin() as connection:
        connection.execute(insert(inbox), rows)


def days_ago_kept(engine) -> list[int]:
    with engine.connect() as connection:
        kept = connection.scalars(select(inbox.c.processed_at)).all()
    return sorted(round((utcnow() - at) / timedelta(days=1)) for at in kept)


def test_rows_older_than_kept_are_pruned_in_batches_and_the_younger_stay(database_url):
    engine = make_engine(database_url)
    try:
        processed(engine)
        assert prune(engine, inbox, timedelta(days=7), batch=2) == 3  # two transactions, then one
        assert days_ago_kept(engine) == [0, 1]
        assert prune(engine, inbox, timedelta(days=7)) == 0
    finally:
        engine.dispose()


def test_the_pruner_prunes_each_inbox_it_is_given_until_stopped(database_url):
    engine = make_engine(database_url)
    stop = threading.Event()
    pruner = InboxPruner(engine, [inbox], timedelta(days=7), first_after=0)
    thread = threading.Thread(target=pruner.run, args=(stop,), daemon=True)
    try:
        processed(engine)
        thread.start()
        wait_for(lambda: days_ago_kept(engine) == [0, 1], message="the old rows pruned")
    finally:
        stop.set()
        thread.join(5)
        engine.dispose()
    assert not thread.is_alive()
