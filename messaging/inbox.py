"""The processed-message table: a consumer records each message id in the same transaction as
the message's effects, so a redelivered message is recognised and has no second effect."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, Uuid

from messaging.db import (
    Transaction,
    UtcDateTime,
    insert_ignoring_duplicates,
    insert_many_ignoring_duplicates,
    utcnow,
)


def make_inbox_table(metadata: MetaData, owner: str) -> Table:
    return Table(
        f"{owner}_inbox",
        metadata,
        Column("message_id", Uuid, primary_key=True),
        Column("message_type", String(100), nullable=False),
        Column("processed_at", UtcDateTime, nullable=False),
    )


def first_delivery(session: Transaction, table: Table, message_id, message_type: str) -> bool:
    """Record message_id as processed; False if it already was (a redelivery)."""
    return insert_ignoring_duplicates(
        session,
        table,
        {"message_id": message_id, "message_type": message_type, "processed_at": utcnow()},
    )


def first_deliveries(
    session: Transaction,
    table: Table,
    messages: list[tuple[object, str]],
    own_inbox: frozenset[str] = frozenset(),
) -> list[bool]:
    """first_delivery for many (message_id, message_type) in one statement: for each, in order,
    whether this is its first delivery (a message id twice in the list is first only once). A type
    in own_inbox gets no row and counts as first: its handler tells repeats itself."""
    now = utcnow()
    recorded = [
        {"message_id": message_id, "message_type": kind, "processed_at": now}
        for message_id, kind in messages
        if kind not in own_inbox
    ]
    inserted = insert_many_ignoring_duplicates(session, table, recorded) if recorded else set()
    firsts = []
    for message_id, kind in messages:
        firsts.append(kind in own_inbox or message_id in inserted)
        inserted.discard(message_id)
    return firsts
