"""Read-only transactions: on SQLite they neither wait for nor hold the write lock."""

from __future__ import annotations

import threading

from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select
from sqlalchemy.orm import Session

from messaging.db import make_engine, read_only

metadata = MetaData()
rows = Table("read_only_rows", metadata, Column("id", Integer, primary_key=True))


def test_a_reader_sees_the_last_commit_while_a_writer_holds_the_lock(database_url):
    engine = make_engine(database_url)
    metadata.create_all(engine)
    try:
        with Session(engine) as session, session.begin():
            session.execute(insert(rows).values(id=1))
        seen = []

        def read():
            with Session(read_only(engine)) as session:
                seen.append(session.scalar(select(func.count()).select_from(rows)))

        with Session(engine) as writer, writer.begin():
            writer.execute(insert(rows).values(id=2))  # holds the write lock, not committed
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            reader.join(20)  # a reader queued behind the writer would still be waiting here
            assert seen == [1]
        with Session(read_only(engine)) as session:
            assert session.scalar(select(func.count()).select_from(rows)) == 2
    finally:
        metadata.drop_all(engine)
        engine.dispose()
