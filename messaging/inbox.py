"""The processed-message table: a consumer records each message id in the same transaction as
the message's effects, so a redelivered message is recognised and has no second effect."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, Uuid
from sqlalchemy.orm import Session

from messaging.db import UtcDateTime, insert_ignoring_duplicates, utcnow


def make_inbox_table(metadata: MetaData, owner: str) -> Table:
    return Table(
        f"{owner}_inbox",
        metadata,
        Column("message_id", Uuid, primary_key=True),
        Column("message_type", String(100), nullable=False),
        Column("processed_at", UtcDateTime, nullable=False),
    )


def first_delivery(session: Session, table: Table, message_id, message_type: str) -> bool:
    """Record message_id as processed; False if it already was (a redelivery)."""
    return insert_ignoring_duplicates(
        session,
        table,
        {"message_id": message_id, "message_type": message_type, "processed_at": utcnow()},
    )
