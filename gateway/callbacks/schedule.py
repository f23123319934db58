"""When a callback is attempted again: the retry schedule with jitter, and Retry-After."""

from __future__ import annotations

import random
from datetime import datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 24 * 3600


def next_delay(schedule: tuple[float, ...], attempts_made: int, rng: random.Random) -> float | None:
    """Seconds until the next attempt after attempts_made attempts (of this round: a replay starts a
    new one), with ±20% jitter; None when the schedule is spent."""
    if attempts_made >= len(schedule):
        return None
    return schedule[attempts_made] * rng.uniform(0.8, 1.2)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header (seconds or HTTP date) asks for, within sane bounds."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):  # OverflowError: a year or zone
            return None  # out of range
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
