"""Calendar rules (pure: no I/O). Times are aware datetimes; weeks and months are taken in UTC."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

RESOURCE_BUSY = "resource_busy"
CUSTOMER_BUSY = "customer_busy"
WEEKLY_LIMIT = "weekly_limit"
MONTHLY_LIMIT = "monthly_limit"


@dataclasses.dataclass(frozen=True)
class Slot:
    """A half-open interval [starts_at, ends_at): one that ends as the next starts does not overlap it."""

    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, starts_at: datetime, duration_minutes: int) -> Slot:
        start = starts_at.astimezone(UTC)
        return cls(start, start + timedelta(minutes=duration_minutes))

    def overlaps(self, other: Slot) -> bool:
        return self.starts_at < other.ends_at and other.starts_at < self.ends_at


@dataclasses.dataclass(frozen=True)
class Limits:
    weekly: int = 40
    monthly: int = 160


def iso_week(moment: datetime) -> Slot:
    """The ISO week (Monday 00:00 to Monday 00:00, UTC) that moment falls in."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = day - timedelta(days=day.weekday())
    return Slot(monday, monday + timedelta(days=7))


def calendar_month(moment: datetime) -> Slot:
    """The calendar month (UTC) that moment falls in."""
    first = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return Slot(first, following)


def window(requested: Slot) -> Slot:
    """Every active slot that can matter to a decision on requested lies within this window."""
    week, month = iso_week(requested.starts_at), calendar_month(requested.starts_at)
    return Slot(
        min(week.starts_at, month.starts_at, requested.starts_at),
        max(week.ends_at, month.ends_at, requested.ends_at),
    )


def rejection(
    requested: Slot,
    resource_slots: Iterable[Slot],
    customer_slots: Iterable[Slot],
    limits: Limits,
) -> str | None:
    """Why requested cannot be booked, or None if it can.

    resource_slots: the resource's active appointments within window(requested);
    customer_slots: the customer's active appointments overlapping requested.
    An appointment counts toward the week and month in which it starts.
    """
    resource_slots = list(resource_slots)
    if any(requested.overlaps(slot) for slot in resource_slots):
        return RESOURCE_BUSY
    if any(requested.overlaps(slot) for slot in customer_slots):
        return CUSTOMER_BUSY
    week, month = iso_week(requested.starts_at), calendar_month(requested.starts_at)
    if sum(week.starts_at <= slot.starts_at < week.ends_at for slot in resource_slots) >= limits.weekly:
        return WEEKLY_LIMIT
    if sum(month.starts_at <= slot.starts_at < month.ends_at for slot in resource_slots) >= limits.monthly:
        return MONTHLY_LIMIT
    return None
