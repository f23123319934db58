from datetime import datetime, timedelta, timezone

import pytest

from contexts.appointment.model import (
    CUSTOMER_BUSY,
    MONTHLY_LIMIT,
    RESOURCE_BUSY,
    WEEKLY_LIMIT,
    Limits,
    Slot,
    calendar_month,
    iso_week,
    rejection,
    window,
)

CET = timezone(timedelta(hours=1))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def slot(start: str, minutes: int = 60) -> Slot:
    return Slot.of(at(start), minutes)


def test_slots_are_normalised_to_utc():
    assert slot("2026-12-01T10:00:00+01:00") == slot("2026-12-01T09:00:00+00:00")


@pytest.mark.parametrize(
    ("other", "overlaps"),
    [
        ("2026-12-01T08:00:00Z", False),  # ends exactly when ours starts
        ("2026-12-01T10:00:00Z", False),  # starts exactly when ours ends
        ("2026-12-01T08:30:00Z", True),
        ("2026-12-01T09:59:00Z", True),
        ("2026-12-01T09:00:00Z", True),
    ],
)
def test_overlap_is_half_open(other, overlaps):
    ours = slot("2026-12-01T09:00:00Z")
    assert ours.overlaps(slot(other)) is overlaps
    assert slot(other).overlaps(ours) is overlaps


def test_overlap_across_time_zones():
    assert slot("2026-12-01T10:30:00+01:00").overlaps(slot("2026-12-01T09:00:00Z"))
    assert not slot("2026-12-01T11:00:00+01:00").overlaps(slot("2026-12-01T09:00:00Z"))


def test_iso_week_runs_monday_to_monday_in_utc():
    week = iso_week(at("2026-12-06T23:30:00Z"))  # a Sunday
    assert week == Slot(at("2026-11-30T00:00:00+00:00"), at("2026-12-07T00:00:00+00:00"))
    # Monday 00:30 in CET is still Sunday in UTC: the previous week
    assert iso_week(at("2026-12-07T00:30:00+01:00")) == week


def test_iso_week_across_a_year_boundary():
    assert iso_week(at("2027-01-01T12:00:00Z")).starts_at == at("2026-12-28T00:00:00+00:00")


def test_calendar_month_in_utc_including_december():
    assert calendar_month(at("2026-12-31T23:59:00Z")) == Slot(
        at("2026-12-01T00:00:00+00:00"), at("2027-01-01T00:00:00+00:00")
    )
    assert calendar_month(at("2027-01-01T00:30:00+01:00")).starts_at == at("2026-12-01T00:00:00+00:00")


def test_window_covers_week_month_and_slot():
    requested = slot("2026-12-31T23:00:00Z", 120)  # week spans into January; slot too
    span = window(requested)
    assert span.starts_at == at("2026-12-01T00:00:00+00:00")
    assert span.ends_at == at("2027-01-04T00:00:00+00:00")


def test_free_slot_is_accepted():
    assert rejection(slot("2026-12-01T09:00:00Z"), [slot("2026-12-01T10:00:00Z")], [], Limits()) is None


def test_resource_busy_comes_before_customer_busy():
    requested = slot("2026-12-01T09:00:00Z")
    busy = [slot("2026-12-01T09:30:00Z")]
    assert rejection(requested, busy, busy, Limits()) == RESOURCE_BUSY
    assert rejection(requested, [], busy, Limits()) == CUSTOMER_BUSY


def test_weekly_limit_counts_the_resources_appointments_starting_that_week():
    requested = slot("2026-12-02T09:00:00Z")
    same_week = [slot(f"2026-12-0{day}T12:00:00Z") for day in (1, 3)]
    previous_week = [slot("2026-11-29T12:00:00Z")]
    assert rejection(requested, same_week + previous_week, [], Limits(weekly=2)) == WEEKLY_LIMIT
    assert rejection(requested, same_week[:1] + previous_week, [], Limits(weekly=2)) is None


def test_monthly_limit_counts_the_calendar_month():
    requested = slot("2026-12-15T09:00:00Z")
    december = [slot(f"2026-12-{day:02d}T12:00:00Z") for day in (1, 8, 22)]
    november = [slot("2026-11-30T12:00:00Z")]
    assert rejection(requested, december + november, [], Limits(monthly=3)) == MONTHLY_LIMIT
    assert rejection(requested, december[:2] + november, [], Limits(monthly=3)) is None


def test_weekly_limit_is_checked_before_monthly():
    requested = slot("2026-12-02T09:00:00Z")
    assert (
        rejection(requested, [slot("2026-12-01T12:00:00Z")], [], Limits(weekly=1, monthly=1)) == WEEKLY_LIMIT
    )
