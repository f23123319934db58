"""The dispatcher's lease: chunks per client, deliveries held back by earlier results of their task,
one look at what is due, wake-ups, and the attempt records (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, make_url, select, text, update
from sqlalchemy.orm import Session

from gateway.callbacks import CallbackDispatcher
from gateway.callbacks import lease as lease_module
from gateway.callbacks.lease import CHUNK_SIZE
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.results import record_result
from gateway.tables import delivery_attempts, results
from messaging import after_commit, vocabulary
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope
from messaging.wakeup import Wakeup
from tests.factories import register_client, upsert_task
from tests.integration.delivery_support import delivery, results_for
from tests.receiver import Receiver


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_one_lease_hands_a_thread_a_chunk_of_one_clients_deliveries(engine):
    """Per client at most per_client chunks, each leased in one transaction; with them the
    clients' whole backlogs go out."""
    register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
    register_client(engine, "other", callback_url="http://127.0.0.1:9/unused")
    acme = [r for n in range(5) for r in results_for(engine, "acme", f"A-{n}")]
    other = [r for n in range(2) for r in results_for(engine, "other", f"O-{n}")]
    dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), per_client=1)
    chunks = dispatcher._lease_due(room=4)
    assert sorted(len(chunk) for chunk in chunks) == [2, 5]
    for chunk in chunks:
        assert {row.result_id for row in chunk} in ({*acme}, {*other})
    with Session(engine) as session:
        leased = session.scalars(select(results.c.next_attempt_at)).all()
    assert len(set(leased)) == 1 and leased[0] > chunks[0][0].received_at  # leased, all alike
    assert dispatcher._lease_due(room=4) == []  # every client is at its share; nothing is due anyway


class Submitted(list):
    """A stand-in for the dispatcher's pool: what it would have attempted."""

    def submit(self, function, chunk, *arguments):
        self.append(chunk)


def offered_while_two_are_due(engine):
    """acme with two deliveries due, and a fresh result of acme being recorded and offered to a
    running dispatcher (per client 2): the dispatcher, its pool, the offer's after-commit work
    (the hand-over), and the fresh delivery's result_id."""
    register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
    for number in range(2):  # two deliveries due (retries coming due, say)
        results_for(engine, "acme", f"T-{number}")
    dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), per_client=2)
    pool = Submitted()
    dispatcher._running = (pool, threading.Event())  # as run() sets it
    identity = task_uuid(DEFAULT_NAMESPACE, "acme", "T-new")
    with Session(engine) as session, session.begin():
        accept_task(session, "acme", identity, upsert_task("T-new"))
    cause = Envelope("customer.upsert", "T-new", identity, "acme", {})
    fresh = vocabulary.result(cause, context="customers", outcome="customer.registered", status="succeeded")
    with engine.begin() as connection:  # a context's transaction records it, offered at once
        after_commit.begin(connection)
        record_result(connection, fresh, offer=dispatcher.offer)
        committed = after_commit.registered(connection)
    return dispatcher, pool, committed, uuid.UUID(fresh.payload["result_id"])


def test_a_fresh_delivery_offered_as_the_lease_loop_fills_its_clients_places_is_given_back(engine):
    """The offer looks at the client's places inside the recording transaction; by its commit the
    lease loop may have taken them. The hand-over then keeps the client within its share and
    gives the delivery back, due at once, instead of attempting one too many."""
    dispatcher, pool, committed, result_id = offered_while_two_are_due(engine)
    for chunk in dispatcher._lease_due():  # meanwhile the lease loop takes acme's two places
        pool.submit(None, chunk)
    for callback in committed:  # then the recording thread hands the offer over
        callback()
    assert dispatcher._in_flight["acme"] == 2
    assert len(pool) == 2 and result_id not in {row.result_id for chunk in pool for row in chunk}
    given_back = delivery(engine, result_id)
    assert (given_back.status, given_back.attempts) == ("pending", 0)
    assert given_back.next_attempt_at <= utcnow()  # due again, for the lease loop when there is room


def test_a_lease_that_a_hand_over_overtakes_keeps_the_client_within_its_share(engine, monkeypatch):
    """The other way round: the lease loop counts the client's places before its transaction, the
    offer is handed over meanwhile; what the lease took beyond the share is given back."""
    dispatcher, pool, committed, result_id = offered_while_two_are_due(engine)
    take = lease_module.take

    def handed_over_meanwhile(*arguments):
        for callback in committed:
            callback()
        return take(*arguments)

    monkeypatch.setattr(lease_module, "take", handed_over_meanwhile)
    for chunk in dispatcher._lease_due():
        pool.submit(None, chunk)
    assert dispatcher._in_flight["acme"] == 2
    assert result_id in {row.result_id for chunk in pool for row in chunk}  # the fresh one went
    assert [delivery(engine, row.result_id).attempts for chunk in pool for row in chunk] == [0, 0]
    assert sum(delivery(engine, r).next_attempt_at <= utcnow() for r in leased_rows(engine)) == 1


def leased_rows(engine):
    with Session(engine) as session:
        return session.scalars(select(results.c.result_id)).all()


def test_a_chunk_stops_at_a_failure_to_record_and_leaves_the_rest_leased(engine, monkeypatch):
    with Receiver(lambda request, number: 200) as receiver:
        register_client(engine, callback_url=receiver.url)
        made = [r for n in range(3) for r in results_for(engine, "acme", f"T-{n}")]
        dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), allow_private=True)
        [chunk] = dispatcher._lease_due(room=1)

        def database_away(items):
            raise OSError("database away")

        monkeypatch.setattr(dispatcher._recorder._group, "_write", database_away)
        dispatcher._attempt_and_release(chunk, leased_at=time.monotonic())
    assert len(receiver.requests) == 1  # the first attempt went out, then the chunk stopped
    assert all(delivery(engine, r).status == "pending" for r in made)
    assert not dispatcher._in_flight  # every chunk's place freed


def test_deliveries_held_back_by_earlier_results_do_not_starve_the_rest(engine):
    """The lease looks at the most overdue deliveries first; when those are all held back (their
    task's first result is waiting for a retry), it still finds the due ones behind them."""
    register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
    register_client(engine, "other", callback_url="http://127.0.0.1:9/unused")
    held_back = [results_for(engine, "acme", f"A-{n}", count=2) for n in range(6)]
    (free,) = results_for(engine, "other", "O-1")
    now = utcnow()
    with Session(engine) as session, session.begin():

        def due_at(result_id, when):
            session.execute(
                update(results).where(results.c.result_id == result_id).values(next_attempt_at=when)
            )

        # Each acme task's first result waits for a retry; its second is overdue, but must wait.
        for number, (first, second) in enumerate(held_back):
            due_at(first, now + timedelta(hours=1))
            due_at(second, now - timedelta(hours=1) + timedelta(seconds=number))
        due_at(free, now - timedelta(minutes=1))  # the least overdue of all
    dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), per_client=1)
    # room 1, chunks of 1: the window holds 2 deliveries, all of them held back.
    chunks = dispatcher._lease_due(room=1, chunk_size=1)
    assert [[row.result_id for row in chunk] for chunk in chunks] == [[free]]


def test_one_clients_backlog_does_not_hide_another_clients_due_delivery(engine):
    """A client with more deliveries due than the lease's window holds, one of its chunks still in
    flight: the lease gives it its last place, and the room left goes to another client's due
    delivery behind that backlog (one client's failing endpoint holds only its own places)."""
    register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
    register_client(engine, "other", callback_url="http://127.0.0.1:9/unused")
    backlog = [results_for(engine, "acme", f"A-{n}")[0] for n in range(10)]
    (behind,) = results_for(engine, "other", "O-1")
    now = utcnow()
    with Session(engine) as session, session.begin():
        for number, result_id in enumerate(backlog):  # retries that came due together, say
            session.execute(
                update(results)
                .where(results.c.result_id == result_id)
                .values(next_attempt_at=now - timedelta(hours=1) + timedelta(seconds=number))
            )
    dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), per_client=2)
    dispatcher._in_flight["acme"] = 1  # its other chunk is being attempted
    # room 2, chunks of 1: the window holds 8 deliveries, all acme's.
    chunks = dispatcher._lease_due(room=2, chunk_size=1)
    assert sorted(chunk[0].client_id for chunk in chunks) == ["acme", "other"]
    assert [row.result_id for chunk in chunks for row in chunk if row.client_id == "other"] == [behind]
    assert dispatcher._in_flight == {"acme": 2, "other": 1}
    # That look reads acme's whole backlog to pass it: the next lease right after does not look
    # again (at most once per LOOK_PAST_SECONDS), it takes acme's place and nothing more.
    dispatcher._in_flight.clear()
    dispatcher._in_flight["acme"] = 1
    seen = statements_of(engine)
    [chunk] = dispatcher._lease_due(room=2, chunk_size=1)
    assert chunk[0].client_id == "acme"
    assert sum(statement.lstrip().upper().startswith("SELECT") for statement in seen) == 1


def statements_of(engine):
    """The SQL statements engine executes from now on (a list that grows)."""
    seen = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def test_a_lease_with_few_deliveries_due_looks_once(engine):
    """The window holds everything that is due: no second look at all due deliveries."""
    register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
    made = results_for(engine, "acme", "A-1")
    dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,))
    seen = statements_of(engine)
    [[row]] = dispatcher._lease_due()
    assert row.result_id == made[0]
    assert sum(statement.lstrip().upper().startswith("SELECT") for statement in seen) == 1


def test_a_lease_under_a_backlog_looks_once(engine):
    """A full window with enough deliveries free to go: no second look at all due deliveries,
    however few of them one lease can take (one chunk of 8 here, of a window of 32)."""
    register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
    for number in range(40):
        results_for(engine, "acme", f"A-{number}")
    dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,))
    seen = statements_of(engine)
    [chunk] = dispatcher._lease_due(room=1)
    assert len(chunk) == CHUNK_SIZE
    assert sum(statement.lstrip().upper().startswith("SELECT") for statement in seen) == 1


def test_a_chunks_end_wakes_the_lease_loop_only_when_it_can_free_something(engine):
    register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
    register_client(engine, "other", callback_url="http://127.0.0.1:9/unused")
    wakeup = Wakeup()
    dispatcher = CallbackDispatcher(engine, wakeup, timeout=1, schedule=(0, 60), allow_private=True)

    def attempt_all(chunks):
        for chunk in chunks:
            dispatcher._attempt_and_release(chunk, time.monotonic())

    # Nothing left behind: the end of the chunk frees nothing the lease loop is waiting for.
    results_for(engine, "acme", "A-1")
    attempt_all(dispatcher._lease_due())
    assert not wakeup.wait(0)
    # No room for the other client's delivery: the end of the chunk wakes the loop.
    results_for(engine, "acme", "A-2")
    results_for(engine, "other", "O-2")
    attempt_all(dispatcher._lease_due(room=1))
    assert wakeup.wait(0)
    attempt_all(dispatcher._lease_due())  # the one left behind
    assert not wakeup.wait(0)
    # A second result of a task is held back by its first: the end of the first's chunk wakes.
    first, _second = results_for(engine, "acme", "A-3", count=2)
    [chunk] = dispatcher._lease_due()
    assert [row.result_id for row in chunk] == [first]
    attempt_all([chunk])
    assert wakeup.wait(0)


def test_a_lease_finds_due_deliveries_behind_those_another_dispatcher_is_leasing(postgres_database):
    """PostgreSQL: while another dispatcher's lease holds the most overdue deliveries (SKIP LOCKED
    hides them), a lease still finds the due ones behind them."""
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    try:
        register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
        register_client(engine, "other", callback_url="http://127.0.0.1:9/unused")
        register_client(engine, "third", callback_url="http://127.0.0.1:9/unused")
        now = utcnow()
        made = {}
        for age, client in enumerate(("third", "other", "acme")):  # acme's the most overdue
            (made[client],) = results_for(engine, client, f"{client}-1")
            with Session(engine) as session, session.begin():
                session.execute(
                    update(results)
                    .where(results.c.result_id == made[client])
                    .values(next_attempt_at=now - timedelta(minutes=age))
                )
        dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), per_client=1)
        with engine.begin() as elsewhere:  # room 1, chunks of 1: the window is acme's and other's
            elsewhere.execute(
                select(results.c.result_id)
                .where(results.c.result_id.in_([made["acme"], made["other"]]))
                .with_for_update()
            )
            chunks = dispatcher._lease_due(room=1, chunk_size=1)
        assert [[row.result_id for row in chunk] for chunk in chunks] == [[made["third"]]]
    finally:
        engine.dispose()


def test_the_lease_checks_each_delivery_for_earlier_results_by_its_task_whatever_the_statistics(
    postgres_database,
):
    """PostgreSQL, with planner statistics taken while few deliveries were pending (a backlog grows
    faster than autovacuum analyses): the check for an earlier pending result of the same task
    looks at that task's results, not at every pending delivery, for each delivery leased."""
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    try:
        register_client(engine, "acme", callback_url="http://127.0.0.1:9/unused")
        results_for(engine, "acme", "A-0")
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
        backlog = [  # one pending delivery per task, overdue
            """INSERT INTO gateway_tasks (task_uuid, client_id, task_id, type, customer_id, payload,
                   content_sha256, status, received_at, updated_at)
               SELECT md5('t' || n)::uuid, 'acme', 'B-' || n, 'customer.upsert', 'C-1', '{}', '',
                   'succeeded', now(), now() FROM generate_series(1, 1500) AS n""",
            """INSERT INTO gateway_results (result_id, task_uuid, context, outcome, status, result,
                   occurred_at, client_id, delivery_status, attempts, next_attempt_at, created_at)
               SELECT md5('r' || n)::uuid, md5('t' || n)::uuid, 'customers', 'x', 'succeeded', '{}',
                   now(), 'acme', 'pending', 0, now() - interval '1 minute', now()
               FROM generate_series(1, 1500) AS n""",
        ]
        with engine.begin() as connection:
            for statement in backlog:
                connection.exec_driver_sql(statement)
        sent = []
        event.listen(engine, "before_cursor_execute", lambda _c, _cur, *sql, **_: sent.append(sql[:2]))
        CallbackDispatcher(engine, Wakeup(), timeout=1, schedule=(0,), per_client=8)._lease_due()
        window, parameters = next(sql for sql in sent if sql[0].lstrip().upper().startswith("SELECT"))
        with engine.begin() as connection:
            explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {window}"
            [[plan]] = connection.exec_driver_sql(explain, parameters).one()

        def rows_per_loop_in_subplans(node, in_subplan=False):
            """Rows each step of the subplans read per loop: those it passed on and those it dropped."""
            in_subplan = in_subplan or node.get("Parent Relationship") == "SubPlan"
            below = node.get("Plans", [])
            read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            own = [read + node.get("Rows Removed by Index Recheck", 0)] if in_subplan else []
            return own + [rows for child in below for rows in rows_per_loop_in_subplans(child, in_subplan)]

        examined = rows_per_loop_in_subplans(plan["Plan"])
        assert examined, "the lease's held check runs as a subplan per delivery"
        assert max(examined) <= 2, f"the held check read {max(examined)} rows per delivery"
    finally:
        engine.dispose()


def test_an_attempt_is_recorded_although_the_server_dropped_the_pooled_connection(postgres_database):
    """Connections are not pinged before use: the record meets the dropped one, and is written on
    a fresh connection rather than lost (the attempt went out)."""
    postgres_database.empty()
    url = make_url(postgres_database.url).update_query_dict({"application_name": "dispatcher-under-test"})
    engine = make_engine(url.render_as_string(hide_password=False))
    admin = make_engine(postgres_database.url)

    def drop_the_dispatchers_connections(request, number):
        with admin.connect() as connection:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'dispatcher-under-test'"
            )
        return 204

    try:
        with Receiver(drop_the_dispatchers_connections) as receiver:
            register_client(engine, callback_url=receiver.url)
            (made,) = results_for(engine, "acme", "T-1")
            dispatcher = CallbackDispatcher(engine, Wakeup(), timeout=5, schedule=(0,), allow_private=True)
            assert dispatcher.deliver_due() == 1
        assert len(receiver.requests) == 1
        assert delivery(engine, made).status == "delivered"
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(delivery_attempts)) == 1
    finally:
        admin.dispose()
        engine.dispose()
