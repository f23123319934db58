"""One side of a visit's reservation (appointment's desk, maintenance's workshop).

A side keeps a row per visit (its state: held, refused, confirmed, expired, released) and answers
each step from visits with VISIT_ANSWER: hold books the slot as held (counted like a booking) or
refuses with the rule's reason; confirm makes a held slot a booking, unless it expired (the side
is the authority on its holds); release gives up whatever is held, and leaves a row if it came
first, so a late hold holds nothing. Holds past their TTL are released by the hold_sweeper. Every
step is idempotent. The context supplies a Booking: how to hold, confirm and give up its slot.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Protocol

from sqlalchemy import (
    Column,
    Engine,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    func,
    insert,
    select,
    update,
)

from messaging import vocabulary
from messaging.after_commit import after_commit
from messaging.context import MAX_SECONDS, env_int
from messaging.db import JsonDocument, Transaction, UtcDateTime, backend, serialize_on, utcnow
from messaging.deadlines import DeadlineSweeper
from messaging.envelope import Envelope
from messaging.handling import Handler
from messaging.outbox import Publish
from messaging.wakeup import Wakeup

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 120


class Booking(Protocol):
    """How a context holds, confirms and gives up its slot for a visit."""

    def hold(self, session: Transaction, request: Envelope) -> tuple[object | None, str | None]:
        """Book the requested slot as held: (its id, None), or (None, the rule's reason)."""

    def confirm(self, session: Transaction, booking_id) -> None:
        """The held slot becomes an active booking."""

    def give_up(self, session: Transaction, booking_id) -> None:
        """The held or booked slot is free again."""


def make_holds_table(metadata: MetaData, context: str) -> Table:
    """What a side has done for each visit: ``<context>_visit_holds``."""
    return Table(
        f"{context}_visit_holds",
        metadata,
        Column("client_id", String(63), nullable=False),
        Column("visit_id", Uuid, nullable=False),
        Column("state", String(16), nullable=False),
        Column("booking_id", Uuid),
        Column("reason", String(64)),
        Column("expires_at", UtcDateTime),
        # The hold request (an envelope body): the answers of a later step are caused by it.
        Column("request", JsonDocument, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("client_id", "visit_id"),
        Index(f"ix_{context}_visit_holds_expiry", "state", "expires_at"),
    )


class ReservationSide:
    """The visit steps of one context (its name is the side's name in the answers)."""

    def __init__(self, context: str, holds: Table, booking: Booking, ttl: timedelta, wakeup: Wakeup):
        self.context = context
        self.holds = holds
        self.booking = booking
        self.ttl = ttl
        self.wakeup = wakeup  # the hold_sweeper's: it may sleep longer than a new hold lives

    def handlers(self) -> dict[str, Handler]:
        return {
            vocabulary.VISIT_HOLD: self.hold,
            vocabulary.VISIT_CONFIRM: self.confirm,
            vocabulary.VISIT_RELEASE: self.release,
        }

    def hold(self, session: Transaction, request: Envelope) -> list[Envelope]:
        row = self._row(session, request)
        if row is not None:  # held, refused or released before: the same answer again
            return [self._answer(request, row)]
        booking_id, reason = self.booking.hold(session, request)
        now = utcnow()
        row = {
            "client_id": request.client_id,
            "visit_id": uuid.UUID(request.payload["visit_id"]),
            "state": vocabulary.HELD if booking_id else vocabulary.REFUSED,
            "booking_id": booking_id,
            "reason": reason,
            "expires_at": now + self.ttl if booking_id else None,
            "request": request.to_body(),
            "updated_at": now,
        }
        session.execute(insert(self.holds), row)
        if booking_id:
            after_commit(session, self.wakeup.notify)
        return [self._answer(request, row)]

    def confirm(self, session: Transaction, step: Envelope) -> list[Envelope]:
        row = self._row(session, step)
        if row is None:  # visits confirms only what this side said it held
            raise LookupError(f"no hold for visit {step.payload['visit_id']}")
        if row["state"] == vocabulary.HELD and row["expires_at"] <= utcnow():
            return self._expire(session, step, row)  # the sweeper was about to
        if row["state"] == vocabulary.HELD:
            self.booking.confirm(session, row["booking_id"])
            row = self._set(session, row, vocabulary.CONFIRMED)
        return [self._answer(step, row)]

    def release(self, session: Transaction, step: Envelope) -> list[Envelope]:
        row = self._row(session, step)
        if row is None:  # the hold has not come yet: it will find this row and hold nothing
            row = {
                "client_id": step.client_id,
                "visit_id": uuid.UUID(step.payload["visit_id"]),
                "state": vocabulary.RELEASED,
                "request": step.to_body(),
                "updated_at": utcnow(),
            }
            session.execute(insert(self.holds), row)
        elif row["state"] != vocabulary.RELEASED:
            if row["state"] in (vocabulary.HELD, vocabulary.CONFIRMED):
                self.booking.give_up(session, row["booking_id"])
            row = self._set(session, row, vocabulary.RELEASED)
        return [self._answer(step, row)]

    def expire_due(self, session: Transaction, limit: int = 100) -> list[Envelope]:
        """Release the holds whose expiry has passed; their answers (expired)."""
        query = (
            select(self.holds)
            .where(self.holds.c.state == vocabulary.HELD, self.holds.c.expires_at <= utcnow())
            .order_by(self.holds.c.expires_at)
            .limit(limit)
        )
        due = session.execute(backend(session).skipping_locked(query)).all()
        answers = []
        for row in due:
            answers += self._expire(session, Envelope.from_body(row.request), row._asdict())
        return answers

    def seconds_to_next_expiry(self, session: Transaction) -> float | None:
        following = session.scalar(
            select(func.min(self.holds.c.expires_at)).where(self.holds.c.state == vocabulary.HELD)
        )
        return None if following is None else max(0.0, (following - utcnow()).total_seconds())

    def _expire(self, session: Transaction, cause: Envelope, row: dict) -> list[Envelope]:
        self.booking.give_up(session, row["booking_id"])
        row = self._set(session, row, vocabulary.EXPIRED)
        log.info("hold expired", extra={**cause.log_fields, "context": self.context})
        return [self._answer(cause, row)]

    def _row(self, session: Transaction, step: Envelope) -> dict | None:
        """The visit's row, locked: one step of a visit at a time. The advisory lock also orders
        two steps that find no row yet (a hold and an early release)."""
        client_id, visit_id = step.client_id, uuid.UUID(step.payload["visit_id"])
        serialize_on(session, self.context, "visit", client_id, str(visit_id))
        row = session.execute(
            select(self.holds)
            .where(self.holds.c.client_id == client_id, self.holds.c.visit_id == visit_id)
            .with_for_update()
        ).one_or_none()
        return None if row is None else row._asdict()

    def _set(self, session: Transaction, row: dict, state: str) -> dict:
        session.execute(
            update(self.holds)
            .where(self.holds.c.client_id == row["client_id"], self.holds.c.visit_id == row["visit_id"])
            .values(state=state, updated_at=utcnow())
        )
        return {**row, "state": state}

    def _answer(self, cause: Envelope, row: dict) -> Envelope:
        """What this side says of the visit: its row's state (a confirm of an expired or released
        hold reads expired or released), with the reason of a refusal and the booking's id."""
        payload = {"visit_id": str(row["visit_id"]), "side": self.context, "step": row["state"]}
        if row["state"] == vocabulary.REFUSED:
            payload["reason"] = row["reason"]
        if row["state"] in (vocabulary.HELD, vocabulary.CONFIRMED):
            payload["booking_id"] = str(row["booking_id"])
        return cause.caused(vocabulary.VISIT_ANSWER, payload)


def hold_sweeper(engine: Engine, side: ReservationSide, outbox: Table, publish: Publish) -> DeadlineSweeper:
    """Releases a side's holds once they expire; sleeps until the next expiry (or a new hold)."""
    return DeadlineSweeper(
        engine,
        outbox,
        publish,
        settle=side.expire_due,
        next_deadline=side.seconds_to_next_expiry,
        name=f"{side.context} hold sweep",
        wakeup=side.wakeup,
    )


def ttl(environ) -> timedelta:
    """How long a hold lives unconfirmed: TASKGATE_RESERVATION_TTL_SECONDS."""
    return timedelta(
        seconds=env_int(environ, "TASKGATE_RESERVATION_TTL_SECONDS", DEFAULT_TTL_SECONDS, 1, MAX_SECONDS)
    )
