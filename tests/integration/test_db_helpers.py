"""The database helpers of the hot paths, on SQLite and PostgreSQL: insert_many_ignoring_duplicates
(rows in their order, duplicates left out, the primary keys of those inserted), insert_many (one
statement for a batch), read-only snapshots, and PostgreSQL's connect timeout."""

import socket
import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event, make_url, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from contexts.survey.tables import invitations
from messaging.db import insert_many, insert_many_ignoring_duplicates, is_unavailable, make_engine, read_only
from messaging.db.engines import CONNECT_TIMEOUT_SECONDS


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


def test_batches_are_inserted_in_their_order(engine):
    batches = [[invitation(f"T-{size}-{n}") for n in range(size)] for size in (2, 3, 20, 60)]
    for batch in batches:
        with engine.begin() as connection:
            assert insert_many_ignoring_duplicates(connection, invitations, batch) == {
                row["invitation_id"] for row in batch
            }
    if engine.dialect.name != "postgresql":
        return
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


def test_insert_many_writes_a_batch_in_its_order_in_one_statement(engine):
    """One statement for the whole batch (a multi-row INSERT, not one per row), NULLs included; a
    key twice fails the batch, and none of it is stored."""
    inserts = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: inserts.append(sql) if sql.startswith("INSERT") else None,
    )
    batch = [invitation(f"T-{n}", due_date=None if n % 2 else date(2030, 12, n + 1)) for n in range(5)]
    with engine.begin() as connection:
        insert_many(connection, invitations, batch)
    assert stored(engine) == {row["invitation_id"]: row for row in batch}
    [sql] = inserts
    assert sql.count("), (") == len(batch) - 1  # the batch's rows in one VALUES list
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            written = connection.exec_driver_sql("SELECT task_id FROM survey_invitations ORDER BY ctid")
            assert list(written.scalars()) == [row["task_id"] for row in batch]
    again = [invitation("T-9"), invitation("T-10", invitation_id=batch[0]["invitation_id"])]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        insert_many(connection, invitations, again)
    assert len(stored(engine)) == len(batch)


def test_a_read_only_transaction_reads_one_snapshot(engine):
    """What commits while a read-only transaction runs stays out of it: reading a task and then its
    results never shows a result of a status it did not read."""
    with engine.begin() as connection:
        insert_many(connection, invitations, [invitation("T-1")])
    with read_only(engine).connect() as reader, reader.begin():
        before = reader.execute(select(invitations.c.task_id)).scalars().all()
        with engine.begin() as writer:
            insert_many(writer, invitations, [invitation("T-2")])
        again = reader.execute(select(invitations.c.task_id)).scalars().all()
    assert before == again == ["T-1"]
    assert len(stored(engine)) == 2


def test_a_postgresql_server_that_does_not_answer_fails_the_connection_after_its_timeout(
    postgres_database,
):
    """A server that takes the connection and never answers (a dropped route, say) fails it as
    unavailable after the connect timeout, the URL's if it names one, else make_engine's."""
    seen = {}
    engine = make_engine(postgres_database.url)
    event.listen(engine, "do_connect", lambda _dialect, _record, _args, params: seen.update(params))
    with engine.connect():
        pass
    engine.dispose()
    assert seen["connect_timeout"] == CONNECT_TIMEOUT_SECONDS
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, and never says a word
        url = make_url(postgres_database.url).set(host="127.0.0.1", port=silent.getsockname()[1])
        url = url.update_query_dict({"connect_timeout": "2"})
        engine = make_engine(url.render_as_string(hide_password=False))
        with pytest.raises(OperationalError) as raised, engine.connect():
            pass
        engine.dispose()
    assert is_unavailable(raised.value)
