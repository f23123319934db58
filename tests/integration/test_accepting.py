"""The webhook's group commits (gateway.accepting), on SQLite and PostgreSQL: requests that wait
while an accept is written share the next transaction; a request that fails its group fails only
itself."""

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, exc, select

from gateway.accepting import Accepting
from gateway.clients import find_client
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import TaskConflict
from gateway.tables import outbox, tasks
from messaging.db import is_unavailable, make_engine
from tests.factories import register_client, survey_task, upsert_task, wait_for


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    register_client(engine)
    yield engine
    engine.dispose()


class HeldFirstWrite:
    """Holds the first transaction's first statement until released, and counts commits."""

    def __init__(self, engine):
        self.release = threading.Event()
        self.commits = 0
        self.started = False
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "commit", self._commit)

    def _before(self, *args):
        if not self.started:
            self.started = True
            assert self.release.wait(10), "never released"

    def _commit(self, connection):
        self.commits += 1


class AwayForTheGroup(HeldFirstWrite):
    """HeldFirstWrite, then the database away for the first statement after the first commit."""

    def __init__(self, engine):
        super().__init__(engine)
        self.away = True
        event.listen(engine, "before_cursor_execute", self._away)

    def _away(self, *args):
        if self.commits == 1 and self.away:
            self.away = False
            raise exc.OperationalError("INSERT", None, sqlite3.OperationalError("database is locked"))


def sender_of(engine):
    with engine.connect() as connection:
        return find_client(connection, "acme")


def accept(accepting, sender, task):
    identity = task_uuid(DEFAULT_NAMESPACE, "acme", task["task_id"])
    return accepting.accept("acme", identity, task, sender=sender)


def accept_while_the_first_is_held(engine, requests, hold=HeldFirstWrite):
    """Accept requests[0], and the rest while its write is held; each one's outcome (or error)."""
    accepting, sender = Accepting(engine), sender_of(engine)
    held = hold(engine)
    with ThreadPoolExecutor(len(requests)) as pool:
        first = pool.submit(accept, accepting, sender, requests[0])
        wait_for(lambda: held.started)
        rest = []
        for request in requests[1:]:  # one after the other: they wait in the order they were sent
            rest.append(pool.submit(accept, accepting, sender, request))
            wait_for(lambda: len(accepting._group._waiting) == len(rest))
        held.release.set()
        futures = [first, *rest]
        outcomes = [future.exception(10) or future.result() for future in futures]
    return outcomes, held.commits


def test_requests_that_wait_meanwhile_are_accepted_in_one_transaction(engine):
    requests = [survey_task(f"T-{n}", customer_id=f"C-{n % 3}") for n in range(6)]
    outcomes, commits = accept_while_the_first_is_held(engine, requests)
    assert all(outcome.created for outcome in outcomes)
    assert commits == 2  # the first alone, the five that waited together
    with engine.connect() as connection:
        stored = connection.execute(select(tasks.c.task_id, tasks.c.customer_seq)).all()
        messages = connection.execute(select(outbox.c.body)).scalars().all()
    assert sorted(task_id for task_id, _ in stored) == [f"T-{n}" for n in range(6)]
    places = sorted((task_id[-1], seq) for task_id, seq in stored)
    # Each customer's places are 1, 2 in the order its tasks were sent (T-n, n = customer mod 3).
    assert places == [("0", 1), ("1", 1), ("2", 1), ("3", 2), ("4", 2), ("5", 2)]
    assert {message["task_id"] for message in messages} == {f"T-{n}" for n in range(6)}


def test_a_request_that_fails_its_group_fails_alone(engine):
    taken = survey_task("T-taken", customer_id="C-1")
    assert accept(Accepting(engine), sender_of(engine), taken).created
    reused = survey_task("T-taken", customer_id="C-1", survey_id="other")
    requests = [
        upsert_task("T-1"),
        reused,  # the task-id again, with other content
        survey_task("T-2", customer_id="C-2"),
    ]
    outcomes, _ = accept_while_the_first_is_held(engine, requests)
    assert outcomes[0].created and outcomes[2].created
    assert isinstance(outcomes[1], TaskConflict)
    with engine.connect() as connection:
        stored = set(connection.execute(select(tasks.c.task_id)).scalars())
    assert stored == {"T-taken", "T-1", "T-2"}


def test_a_database_that_is_away_fails_the_whole_group_at_once(engine):
    """Not one request's error: no request of the group is written again alone (each would wait
    for the database in turn before its 503)."""
    requests = [survey_task(f"T-{n}", customer_id=f"C-{n}") for n in range(4)]
    outcomes, commits = accept_while_the_first_is_held(engine, requests, hold=AwayForTheGroup)
    assert outcomes[0].created
    assert all(is_unavailable(outcome) for outcome in outcomes[1:])
    assert commits == 1
    with engine.connect() as connection:
        assert set(connection.execute(select(tasks.c.task_id)).scalars()) == {"T-0"}
