"""Workshop position rules (pure: no I/O)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

POSITION_BUSY = "position_busy"


@dataclasses.dataclass(frozen=True)
class Booking:
    """A half-open interval [starts_at, ends_at) on a position."""

    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, starts_at: datetime, duration_minutes: int) -> Booking:
        start = starts_at.astimezone(UTC)
        return cls(start, start + timedelta(minutes=duration_minutes))

    def overlaps(self, other: Booking) -> bool:
        return self.starts_at < other.ends_at and other.starts_at < self.ends_at


def rejection(requested: Booking, position_bookings: Iterable[Booking]) -> str | None:
    """Why requested cannot be booked on a position with these active bookings, or None."""
    if any(requested.overlaps(booking) for booking in position_bookings):
        return POSITION_BUSY
    return None
