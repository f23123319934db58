"""The database helpers of the hot paths, on SQLite and PostgreSQL: insert_many_ignoring_duplicates
(rows in their order, duplicates left out, the primary keys of those inserted; on PostgreSQL one
SQL text whatever the batch's size), insert_many (one statement for a batch on PostgreSQL),
Precompiled statements and the connections of one-statement writes and reads."""

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, insert, literal, select
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from contexts.survey.tables import invitations, outbox
from gateway.tables import clients, deliveries
from messaging.db import (
    JsonDocument,
    Precompiled,
    accepting,
    insert_many,
    insert_many_ignoring_duplicates,
    make_engine,
    single_read,
)
from tests.factories import register_client


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def invitation(task_id: str, **overrides) -> dict:
    row = {
        "invitation_id": uuid.uuid4(),
        "client_id": "acme",
        "task_id": task_id,
        "customer_id": f"C-{task_id}",
        "survey_id": "SRV-1",
        "due_date": None,
        "email": f"{task_id}@example.com",
        "created_at": datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    }
    return {**row, **overrides}


def stored(engine) -> dict:
    with engine.connect() as connection:
        return {row.invitation_id: row._asdict() for row in connection.execute(select(invitations))}


def test_rows_are_stored_as_given_and_duplicates_are_left_out(engine):
    earlier = invitation("T-0")
    with engine.begin() as connection:
        assert insert_many_ignoring_duplicates(connection, invitations, [earlier]) == {
            earlier["invitation_id"]
        }
    rows = [invitation("T-1", due_date=date(2030, 12, 31)), invitation("T-2"), invitation("T-3")]
    again = invitation("T-4", invitation_id=rows[1]["invitation_id"])  # its key twice in the batch
    with engine.begin() as connection:
        made = insert_many_ignoring_duplicates(connection, invitations, [earlier, *rows, again])
    assert made == {row["invitation_id"] for row in rows}
    assert stored(engine) == {row["invitation_id"]: row for row in [earlier, *rows]}


def test_a_batch_of_any_size_is_one_sql_text_inserted_in_its_order(engine):
    sent = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: sent.append(sql))
    batches = [[invitation(f"T-{size}-{n}") for n in range(size)] for size in (2, 3, 20, 60)]
    for batch in batches:
        with engine.begin() as connection:
            assert insert_many_ignoring_duplicates(connection, invitations, batch) == {
                row["invitation_id"] for row in batch
            }
    inserts = {sql for sql in sent if "survey_invitations" in sql}
    if engine.dialect.name != "postgresql":
        return
    assert len(inserts) == 1, inserts  # a VALUES list has one text per number of rows
    with engine.connect() as connection:  # the order rows were written in, which locks follow
        written = connection.exec_driver_sql("SELECT task_id FROM survey_invitations ORDER BY ctid").scalars()
        assert list(written) == [row["task_id"] for batch in batches for row in batch]


def test_a_value_too_long_for_its_column_fails_the_batch_instead_of_being_cut_short(
    postgres_database,
):
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    try:
        too_long = invitation("T-2", survey_id="S" * 129)  # survey_id is VARCHAR(128)
        with pytest.raises(DataError, match="too long"), engine.begin() as connection:
            insert_many_ignoring_duplicates(connection, invitations, [invitation("T-1"), too_long])
        assert stored(engine) == {}
    finally:
        engine.dispose()


def test_one_statement_writes_and_reads_use_connections_kept_in_autocommit(postgres_database):
    """PostgreSQL: the webhook's write and the single reads run in autocommit on connections of
    their own, not on the engine's connections switched to autocommit at each checkout and back
    at each return (which costs about a fifth of the webhook's write)."""
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    try:
        register_client(engine)
        with accepting(engine) as connection:
            raw = connection.connection.driver_connection
            assert raw.autocommit
        with single_read(engine).connect() as connection:
            assert connection.connection.driver_connection is raw
            assert connection.execute(select(clients.c.client_id)).scalars().all() == ["acme"]
        assert raw.autocommit  # left as it was on its return to the pool
        with engine.connect() as connection:  # the engine's own are in transactions
            assert not connection.connection.driver_connection.autocommit
        engine.dispose()
        assert raw.closed  # disposed with the engine
    finally:
        engine.dispose()


def test_insert_many_writes_a_batch_in_its_order_in_one_statement(engine):
    """On PostgreSQL one statement for the whole batch (not one per row: executemany), NULLs
    included; a key twice fails the batch, and none of it is stored."""
    executed = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, _p, _ctx, many: executed.append(many) if sql.startswith("INSERT") else None,
    )
    batch = [invitation(f"T-{n}", due_date=None if n % 2 else date(2030, 12, n + 1)) for n in range(5)]
    with engine.begin() as connection:
        insert_many(connection, invitations, batch)
    assert stored(engine) == {row["invitation_id"]: row for row in batch}
    if engine.dialect.name == "postgresql":
        assert executed == [False]
        with engine.connect() as connection:
            written = connection.exec_driver_sql("SELECT task_id FROM survey_invitations ORDER BY ctid")
            assert list(written.scalars()) == [row["task_id"] for row in batch]
    again = [invitation("T-9"), invitation("T-10", invitation_id=batch[0]["invitation_id"])]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        insert_many(connection, invitations, again)
    assert len(stored(engine)) == len(batch)


def test_a_precompiled_statement_writes_what_the_statement_writes(engine):
    """Literals keep their values and parameters get their types' processing (JSON, UTC
    datetimes), as when SQLAlchemy executes the statement itself; on PostgreSQL in a session
    whose time zone is not UTC."""
    given = ("message_id", "routing_key", "body", "headers", "created_at")
    statement = insert(outbox).values(
        exchange=literal("taskgate.results"), **{name: bindparam(name) for name in given}
    )
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=9)))
    rows = [
        {
            "message_id": uuid.uuid4(),
            "routing_key": "survey.done",
            "body": {"a": [1, "b"]},
            "headers": {},
            "created_at": at,
        }
        for _ in range(2)
    ]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TIME ZONE 'Asia/Tokyo'")
        connection.execute(statement, rows[0])
        Precompiled(statement).execute(connection, rows[1])
    with engine.connect() as connection:
        stored = connection.execute(select(outbox).order_by(outbox.c.id)).mappings().all()
    assert [row["message_id"] for row in stored] == [row["message_id"] for row in rows]
    first, second = ({k: v for k, v in row.items() if k not in ("id", "message_id")} for row in stored)
    assert first == second
    assert second["exchange"] == "taskgate.results" and second["body"] == {"a": [1, "b"]}
    assert second["created_at"] == at and second["created_at"].tzinfo == UTC


def test_a_precompiled_statement_refuses_parameters_it_cannot_process(postgres_database):
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    statement = insert(outbox).values(
        exchange="x", routing_key="y", headers={}, created_at=bindparam("at"), message_id=bindparam("id")
    )
    try:
        with pytest.raises(StatementError, match="'body' is missing"), engine.begin() as connection:
            Precompiled(statement.values(body=bindparam("body"))).execute(connection, {"id": uuid.uuid4()})
        with pytest.raises(StatementError, match="'at'"), engine.begin() as connection:
            naive = datetime(2030, 1, 2)  # UtcDateTime takes only aware datetimes
            Precompiled(statement.values(body={})).execute(connection, {"id": uuid.uuid4(), "at": naive})
    finally:
        engine.dispose()


def test_a_precompiled_statement_is_sent_as_text_on_postgresql(postgres_database):
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    compiled = []
    event.listen(engine, "before_cursor_execute", lambda *args: compiled.append(args[4].compiled))
    try:
        with engine.connect() as connection:
            Precompiled(select(bindparam("n", type_=JsonDocument))).execute(connection, {"n": 1}).one()
        assert compiled == [None]  # nothing compiled by SQLAlchemy at execution
    finally:
        engine.dispose()


def test_statements_that_need_work_at_each_execution_are_not_precompiled():
    """Parameters rendered or values computed at execution, results the driver's values of which
    a type would process."""
    refused = {
        "plain named parameters": [
            select(clients).where(clients.c.client_id.in_(bindparam("ids", expanding=True))),
            select(clients).limit(bindparam("n", literal_execute=True)),
            select(bindparam("now", callable_=lambda: datetime.now(UTC))),
            insert(deliveries).values(result_id=bindparam("id")),  # deliveries.attempts: default=0
        ],
        "result processing": [select(deliveries.c.created_at)],
    }
    for reason, statements in refused.items():
        for statement in statements:
            with pytest.raises(ValueError, match=reason):
                assert Precompiled(statement).sql


def test_the_array_insert_refuses_rows_without_a_column_whose_default_is_python_side(postgres_database):
    """executemany (one row) fills such a default in; arrays would leave it NULL."""
    postgres_database.empty()
    engine = make_engine(postgres_database.url)
    rows = [
        {"result_id": uuid.uuid4(), "client_id": "acme", "status": "pending", "created_at": datetime.now(UTC)}
    ]
    try:
        with pytest.raises(ValueError, match="attempts"), engine.begin() as connection:
            insert_many(connection, deliveries, rows * 2)
    finally:
        engine.dispose()
