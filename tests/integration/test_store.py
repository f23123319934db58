"""Accepting tasks against SQLite and PostgreSQL: one transaction, idempotent, race-safe."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import bindparam, event, func, make_url, select
from sqlalchemy.orm import Session

from gateway.clients import find_client, rotate_secret
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import TaskConflict, accept_task
from gateway.results import record_in_place, record_result, record_results
from gateway.tables import customer_order, outbox, results, tasks
from gateway.task_reads import find_task
from messaging import vocabulary
from messaging.db import make_engine
from messaging.envelope import Envelope
from tests.factories import add_done_tasks, register_client, rows_scanned, upsert_task


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    register_client(engine)
    yield engine
    engine.dispose()


def accept(engine, task):
    with Session(engine) as session, session.begin():
        return accept_task(session, "acme", task_uuid(DEFAULT_NAMESPACE, "acme", task["task_id"]), task)


def counts(engine):
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(tasks)), session.scalar(
            select(func.count()).select_from(outbox)
        )


def test_a_task_is_stored_with_its_routed_message(engine):
    acceptance = accept(engine, upsert_task())
    assert acceptance.created
    assert counts(engine) == (1, 1)
    with Session(engine) as session:
        message = session.execute(select(outbox)).one()
        stored = find_task(session, "acme", "T-1001")
    assert (message.exchange, message.routing_key) == ("taskgate.tasks", "customer.upsert")
    assert message.body["task_uuid"] == str(acceptance.task_uuid)
    assert message.body["payload"] == {
        "customer_id": "C-42",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "order": {"seq": 1, "upserts": 1},  # the customer's first task, an upsert
    }
    assert stored["status"] == "accepted"
    assert stored["task_uuid"] == acceptance.task_uuid


def test_a_new_task_of_a_current_sender_takes_three_statements(engine):
    """The place in the customer's order (taken only while the sender's secrets are the client's,
    in the same statement), the task and its outbox row: nothing is read first."""
    with engine.connect() as connection:
        sender = find_client(connection, "acme")
    sent = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: sent.append(sql.split()[0]))
    task = upsert_task()
    with Session(engine) as session, session.begin():
        identity = task_uuid(DEFAULT_NAMESPACE, "acme", task["task_id"])
        acceptance = accept_task(session, "acme", identity, task, sender=sender)
    assert acceptance.created
    assert [verb for verb in sent if verb.upper() != "BEGIN"] == ["INSERT"] * 3  # SQLite: BEGIN IMMEDIATE


def test_a_sender_whose_secrets_changed_since_takes_no_place_and_stores_nothing(engine):
    with engine.connect() as connection:
        sender = find_client(connection, "acme")
    with Session(engine) as session, session.begin():
        rotate_secret(session, "acme", timedelta(hours=1))
    task = upsert_task()
    with Session(engine) as session, session.begin():
        identity = task_uuid(DEFAULT_NAMESPACE, "acme", task["task_id"])
        acceptance = accept_task(session, "acme", identity, task, sender=sender)
    assert (acceptance.created, acceptance.sender_current) == (False, False)
    assert counts(engine) == (0, 0)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(customer_order)) == 0


def test_the_same_task_again_is_a_replay_that_routes_nothing(engine):
    accept(engine, upsert_task())
    replay = accept(engine, upsert_task())
    assert not replay.created
    assert counts(engine) == (1, 1)


def test_the_same_task_id_with_other_content_conflicts(engine):
    accept(engine, upsert_task())
    with pytest.raises(TaskConflict):
        accept(engine, upsert_task(email="someone@else.example"))
    assert counts(engine) == (1, 1)


def test_a_failed_transaction_leaves_neither_task_nor_message(engine):
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        accept_task(session, "acme", task_uuid(DEFAULT_NAMESPACE, "acme", "T-1"), upsert_task("T-1"))
        raise RuntimeError("crash before commit")
    assert counts(engine) == (0, 0)


def test_concurrent_duplicates_yield_one_task_and_one_message(engine):
    start = threading.Barrier(20)

    def submit(_):
        start.wait()
        return accept(engine, upsert_task()).created

    with ThreadPoolExecutor(max_workers=20) as pool:
        created = list(pool.map(submit, range(20)))
    assert created.count(True) == 1
    assert counts(engine) == (1, 1)


def test_a_second_primary_result_does_not_overturn_the_status(engine):
    acceptance = accept(engine, upsert_task())
    cause = Envelope("customer.upsert", "T-1001", acceptance.task_uuid, "acme", {})
    for status in ("failed", "succeeded"):
        with Session(engine) as session, session.begin():
            record_result(session, vocabulary.result(cause, context="customers", outcome="x", status=status))
    with Session(engine) as session:
        task = find_task(session, "acme", "T-1001")
    assert task["status"] == "failed"
    assert len(task["results"]) == 2


def test_results_recorded_together_have_the_effects_of_recording_them_one_by_one(engine):
    """Primary and secondary results of several tasks, a duplicate in the same call and one
    recorded before: every result once, one delivery each, the first primary result decides."""
    causes = []
    for number in range(4):
        task = upsert_task(f"T-{number}", customer_id=f"C-{number}")
        acceptance = accept(engine, task)
        causes.append(Envelope("customer.upsert", task["task_id"], acceptance.task_uuid, "acme", {}))

    def result(cause, status, context="customers"):
        return vocabulary.result(cause, context=context, outcome=f"{context}.{status}", status=status)

    earlier = result(causes[3], "succeeded")
    with Session(engine) as session, session.begin():
        record_result(session, earlier)
    batch = [
        result(causes[0], "succeeded"),
        result(causes[0], "failed"),  # a second primary result: recorded, decides nothing
        result(causes[1], "failed"),
        result(causes[2], "succeeded", context="survey"),  # not the primary context of an upsert
        earlier,  # recorded before: no second delivery
    ]
    batch.append(batch[2])  # the same message twice in one batch
    with Session(engine) as session, session.begin():
        assert record_results(session, batch) == []
    with Session(engine) as session:
        found = {n: find_task(session, "acme", f"T-{n}") for n in range(4)}
        delivered = session.scalar(select(func.count()).select_from(results))
    assert [found[n]["status"] for n in range(4)] == ["succeeded", "failed", "accepted", "succeeded"]
    assert [len(found[n]["results"]) for n in range(4)] == [2, 1, 1, 1]
    assert delivered == 5


def test_a_result_for_an_unknown_task_fails_the_whole_batch(engine):
    known = accept(engine, upsert_task("T-1"))
    cause = Envelope("customer.upsert", "T-1", known.task_uuid, "acme", {})
    stranger = Envelope("customer.upsert", "T-404", task_uuid(DEFAULT_NAMESPACE, "acme", "T-404"), "acme", {})
    batch = [
        vocabulary.result(envelope, context="customers", outcome="x", status="succeeded")
        for envelope in (cause, stranger)
    ]
    with pytest.raises(LookupError), Session(engine) as session, session.begin():
        record_results(session, batch)
    with Session(engine) as session:
        assert find_task(session, "acme", "T-1")["status"] == "accepted"


def test_a_context_transaction_records_the_results_of_known_tasks_and_leaves_the_rest(engine):
    """record_in_place, as a context's transaction runs it in a process that also runs the
    gateway: the results of tasks the gateway knows are recorded there; a result of an unknown
    task and any other message are left to the broker (and the gateway's consumer)."""
    known = accept(engine, upsert_task("T-1"))
    cause = Envelope("customer.upsert", "T-1", known.task_uuid, "acme", {})
    stranger = Envelope("customer.upsert", "T-404", task_uuid(DEFAULT_NAMESPACE, "acme", "T-404"), "acme", {})
    recorded, unknown = (
        vocabulary.result(envelope, context="customers", outcome="customer.registered", status="succeeded")
        for envelope in (cause, stranger)
    )
    event = cause.caused("customer.registered", {"customer_id": "C-42"})
    with Session(engine) as session, session.begin():
        assert record_in_place(session, [event, recorded, unknown]) == {recorded.message_id}
    with Session(engine) as session:
        task = find_task(session, "acme", "T-1")
        assert session.scalar(select(func.count()).select_from(results)) == 1
    assert task["status"] == "succeeded"
    assert [result["result_id"] for result in task["results"]] == [recorded.message_id]


def test_a_lookup_by_keys_reads_only_its_rows_however_the_table_grew_since_it_was_planned(
    postgres_database,
):
    """PostgreSQL: a statement that looks rows up by a list of keys is planned for the table as it
    is (make_engine's plan_cache_mode). Prepared, it would soon run a generic plan, and one made
    while the table was small scans all of it, on and on as the table grows (this test fails
    without the setting)."""

    postgres_database.empty()
    engine = make_engine(postgres_database.url, pool_size=1, max_overflow=0)  # one connection
    try:
        register_client(engine)
        with engine.begin() as connection:
            add_done_tasks(connection, "A", 200)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE gateway_tasks")  # as autovacuum would, early on
        lookup = select(tasks.c.task_uuid).where(tasks.c.task_uuid.in_(bindparam("uuids", expanding=True)))
        with engine.connect() as connection:
            for _ in range(20):  # psycopg prepares it after 5 runs, PostgreSQL goes generic after 5 more
                connection.execute(lookup, {"uuids": [uuid.uuid4(), uuid.uuid4()]}).all()
            connection.commit()
        with engine.begin() as connection:
            add_done_tasks(connection, "B", 20_000)
        with engine.begin() as connection:
            wanted = connection.exec_driver_sql("SELECT md5('tB7')::uuid").scalar_one()
            before = rows_scanned(connection, "gateway_tasks")
            assert connection.execute(lookup, {"uuids": [wanted, uuid.uuid4()]}).scalars().all() == [wanted]
            read = rows_scanned(connection, "gateway_tasks") - before
        assert read == 0, f"the lookup of 2 keys scanned {read} rows"
    finally:
        engine.dispose()


def test_the_options_a_database_url_gives_are_kept_beside_the_planning_setting(postgres_database):
    url = make_url(postgres_database.url).update_query_dict({"options": "-c statement_timeout=1234"})
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1234ms"
    finally:
        engine.dispose()
