from datetime import UTC, datetime, timedelta

from contexts.maintenance.model import POSITION_BUSY, Booking, rejection


def booking(start: str, minutes: int = 60) -> Booking:
    return Booking.of(datetime.fromisoformat(start), minutes)


def test_a_free_position_is_booked():
    assert rejection(booking("2026-12-01T09:00:00Z"), []) is None


def test_an_overlapping_job_makes_the_position_busy():
    assert rejection(booking("2026-12-01T09:00:00Z"), [booking("2026-12-01T09:59:00Z")]) == POSITION_BUSY


def test_back_to_back_jobs_do_not_overlap():
    assert rejection(booking("2026-12-01T09:00:00Z"), [booking("2026-12-01T10:00:00Z")]) is None
    assert rejection(booking("2026-12-01T09:00:00Z"), [booking("2026-12-01T08:00:00Z")]) is None


def test_bookings_are_compared_in_utc():
    cet = booking("2026-12-01T10:30:00+01:00")
    assert cet.starts_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert cet.ends_at - cet.starts_at == timedelta(hours=1)
    assert rejection(cet, [booking("2026-12-01T09:00:00Z")]) == POSITION_BUSY
