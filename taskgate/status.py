"""`taskgate status`: is the database there, is the broker there, which worker processes are alive,
and what is waiting where. For an operator's terminal (and scripts: --json, exit status)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Settings
from gateway.overview import Overview, read_overview
from messaging import broker
from messaging.db import is_unavailable
from taskgate import database
from taskgate.registry import overview_sources


@dataclasses.dataclass
class Status:
    database: str
    broker: str
    overview: Overview | None

    @property
    def healthy(self) -> bool:
        if self.database != "ok" or self.broker != "ok" or self.overview is None:
            return False
        processes = self.overview.processes
        return bool(processes) and all(process.alive for process in processes)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"healthy": self.healthy, "database": self.database, "broker": self.broker}
        if self.overview is not None:
            overview = self.overview
            document |= {
                "processes": [
                    {
                        "process_id": p.process_id,
                        "role": p.role,
                        "contexts": list(p.contexts),
                        "alive": p.alive,
                        "started_at": p.started_at.isoformat(),
                        "last_beat_seconds": round(p.last_beat_seconds, 1),
                        "threads_down": list(p.threads_down),
                    }
                    for p in overview.processes
                ],
                "outboxes": {
                    name: {
                        "pending": backlog.pending,
                        "oldest_pending_seconds": round(backlog.oldest_age_seconds(overview.read_at), 1),
                    }
                    for name, backlog in overview.outboxes.items()
                },
                "tasks_waiting": overview.waiting_tasks,
                "tasks_waiting_by_reason": overview.waiting_by_reason,
                "deliveries": {"pending": overview.deliveries_pending, "failed": overview.deliveries_failed},
                "dead_letters": overview.dead_letters,
            }
        return document


def read_status(settings: Settings, engine: Engine) -> Status:
    broker_state = "ok" if broker.is_reachable(settings.broker_url, timeout=2.0) else "down"
    try:
        if not database.is_current(engine):
            return Status("not migrated (taskgate db upgrade)", broker_state, None)
        with engine.connect() as connection:
            overview = read_overview(connection, overview_sources())
    except SQLAlchemyError as error:
        if not is_unavailable(error):
            raise
        return Status("down", broker_state, None)
    return Status("ok", broker_state, overview)


def render(status: Status) -> list[str]:
    """The status as lines for a terminal."""
    lines = [
        f"{'healthy' if status.healthy else 'NOT HEALTHY'}",
        f"  database  {status.database}",
        f"  broker    {status.broker}",
    ]
    overview = status.overview
    if overview is None:
        return lines
    lines.append("processes")
    if not overview.processes:
        lines.append("  none: start `taskgate serve`, or `taskgate worker --context ...` for each context")
    for process in overview.processes:
        state = "alive" if process.alive else "STALE"
        if process.threads_down:
            state = f"DEGRADED ({', '.join(process.threads_down)} down)"
        lines.append(
            f"  {process.process_id:<34} {process.role:<7} {','.join(process.contexts):<48} "
            f"{state}, last beat {process.last_beat_seconds:.0f} s ago"
        )
    lines.append("outboxes (unpublished messages)")
    for name, backlog in overview.outboxes.items():
        age = backlog.oldest_age_seconds(overview.read_at)
        lines.append(
            f"  {name:<12} {backlog.pending:>7}" + (f"   oldest {age:.1f} s" if backlog.pending else "")
        )
    lines += [
        f"tasks waiting  {overview.waiting_tasks}"
        + "".join(f"  ({count} {reason})" for reason, count in sorted(overview.waiting_by_reason.items())),
        f"callbacks pending {overview.deliveries_pending}, failed {overview.deliveries_failed}"
        + ("  (taskgate deliveries retry --client C --failed)" if overview.deliveries_failed else ""),
        f"dead letters {overview.dead_letters}"
        + ("  (taskgate dead-letters list)" if overview.dead_letters else ""),
    ]
    return lines
