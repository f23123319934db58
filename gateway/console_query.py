"""What the operator console's overview reads from its query string: what it does not understand
is left out, never an error."""

from __future__ import annotations

from gateway.tasks import TASK_STATUSES
from gateway.timeline import TaskFilter

MAX_LIMIT = 500


def overview_filter(args) -> TaskFilter:
    """The overview's filter from the query string; what is not understood is left out, never an error."""
    status = args.get("status")
    try:
        limit = int(args.get("limit", 50))
    except ValueError:
        limit = 50
    return TaskFilter(
        client_id=text(args.get("client"), 63),
        status=status if status in TASK_STATUSES else None,
        search=text(args.get("q"), 128),
        limit=min(max(limit, 1), MAX_LIMIT),
    )


def text(value: str | None, length: int) -> str | None:
    # PostgreSQL refuses NUL in text; no id contains one anyway.
    return (value or "").replace("\x00", "").strip()[:length] or None
