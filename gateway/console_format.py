"""How the operator console writes times and durations: UTC clock times, ages, short durations."""

from __future__ import annotations

from datetime import datetime

from messaging.db import utcnow


def clock(moment: datetime | None, precise: bool = False) -> str:
    if moment is None:
        return "—"
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if precise else "%Y-%m-%d %H:%M:%S")
    return (text[:-3] if precise else text) + " UTC"


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago (or, for a future moment, how soon): 4 s ago, 3 min from now."""
    if moment is None:
        return "—"
    seconds = ((now or utcnow()) - moment).total_seconds()
    return f"{duration(abs(seconds))} {'ago' if seconds >= 0 else 'from now'}"


def duration(seconds: float) -> str:
    """4 s, 3 min, 2 h, 5 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"
