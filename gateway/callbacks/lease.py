"""What a dispatcher leases: the due deliveries, most overdue first, and how it takes them."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, exists, func, or_, select, true, update
from sqlalchemy.orm import aliased

from gateway.clients import CLIENT_COLUMNS
from gateway.tables import clients, results, tasks

# Attempts of a leased chunk start within this many seconds of the lease.
LEASE_MARGIN_SECONDS = 30
# What an attempt may take beyond its deadline: looking up the callback host (which the deadline
# cannot cut short), then recording the attempt.
LEASE_SLACK_SECONDS = 10
# A callback thread takes up to this many due deliveries of one client per lease and attempts them
# one after another on its keep-alive connection: one lease transaction for several deliveries.
CHUNK_SIZE = 8

# A lease first looks only at this many times `limit` of the most overdue deliveries, so that
# under a backlog its cost does not grow with the backlog (PostgreSQL would otherwise check every
# due delivery for an earlier pending result, then sort them all). If that window is full and too
# few in it are free to go (e.g. most are held back by an earlier result), it looks at all of them.
DUE_WINDOW = 2
# A full window that left room only because its clients are at their share is looked past at most
# this often (seconds): that look reads those clients' whole backlog to pass it, and the others'
# due deliveries wait no longer than this behind it.
LOOK_PAST_SECONDS = 1.0


# What an attempt needs of a result and its delivery.
ATTEMPTED = [
    "result_id",
    "task_uuid",
    "client_id",
    "context",
    "outcome",
    "status",
    "result",
    "occurred_at",
    "attempts",
    "replayed_after_attempts",
    "trace",
    "next_attempt_at",
]


def due_query(for_update: bool, *, windowed: bool):
    """Due pending deliveries, most overdue first; built once, with the time, the clients to
    leave out and the limit as parameters.

    Windowed: up to DUE_WINDOW times limit of them, each flagged `held` when its task has an
    earlier pending result, and with the number the window held (`in_window`). Not windowed: up
    to limit of those not held back.
    """
    due = [
        results.c.delivery_status == "pending",
        results.c.next_attempt_at <= bindparam("now"),
        results.c.client_id.not_in(bindparam("busy", expanding=True)),
    ]
    if windowed:
        # The most overdue first, straight from the (delivery_status, next_attempt_at) index; only
        # these are joined and checked for earlier results. Each row says how many the window held.
        most_overdue = (
            select(*(results.c[name] for name in ATTEMPTED))
            .where(*due)
            .order_by(results.c.next_attempt_at)
            .limit(bindparam("limit") * DUE_WINDOW)
            .subquery()
        )
        # Its rows were due as the window read them: the query's own conditions are the window's.
        source, still_due = select(most_overdue, func.count().over().label("in_window")).subquery(), []
    else:
        source, still_due = results, due
    held = pending_result_of(
        source.c.task_uuid,
        lambda earlier: or_(
            earlier.c.occurred_at < source.c.occurred_at,
            and_(earlier.c.occurred_at == source.c.occurred_at, earlier.c.result_id < source.c.result_id),
        ),
    )
    query = (
        select(
            *(source.c[name] for name in ATTEMPTED),
            tasks.c.task_id,
            tasks.c.received_at,
            *CLIENT_COLUMNS[1:],  # client_id is the result's
        )
        .join(tasks, tasks.c.task_uuid == source.c.task_uuid)
        .join(clients, clients.c.client_id == source.c.client_id)
        .where(*still_due)
        .order_by(source.c.next_attempt_at)
    )
    if windowed:  # the window bounds it; in_window tells whether it was full
        return query.add_columns(held.label("held"), source.c.in_window)
    query = query.where(~held).limit(bindparam("limit"))
    return query.with_for_update(of=results, skip_locked=True) if for_update else query


def pending_result_of(task_uuid, which=lambda result: true()):
    """Whether the task has a result (which(result) of them) whose delivery is pending.

    Only the task's results are in the subquery's FROM, each one's delivery status a scalar lookup
    by key, so PostgreSQL cannot plan it as a scan of every pending delivery (by the due index it
    did, whenever its statistics still said few were pending: under a backlog, the lease then read
    every pending delivery for each one it leased)."""
    result, looked_up = aliased(results), aliased(results)
    status = select(looked_up.c.delivery_status).where(looked_up.c.result_id == result.c.result_id)
    return exists().where(
        result.c.task_uuid == task_uuid, which(result), status.scalar_subquery() == "pending"
    )


# Take the deliveries given as `leased` until `until`, those still due and not being leased by
# another dispatcher right now (SKIP LOCKED): a delivery read as due a moment ago may have been
# leased or attempted elsewhere since. Returns what may have changed since it was read.
TAKE = (
    update(results)
    .where(
        results.c.result_id.in_(
            select(results.c.result_id)
            .where(
                results.c.result_id.in_(bindparam("leased", expanding=True)),
                results.c.delivery_status == "pending",
                results.c.next_attempt_at <= bindparam("now"),
            )
            .with_for_update(skip_locked=True)
        )
    )
    .values(next_attempt_at=bindparam("until"))
    .returning(results.c.result_id, results.c.attempts, results.c.replayed_after_attempts)
)


# End a lease this process holds (until) on deliveries it will not attempt now: due now.
GIVE_BACK = (
    update(results)
    .where(
        results.c.result_id.in_(bindparam("leased", expanding=True)),
        results.c.delivery_status == "pending",
        results.c.next_attempt_at == bindparam("until"),
    )
    .values(next_attempt_at=bindparam("now"))
)


def take(
    connection, due: list, in_flight: Counter, per_client: int, room: int, chunk_size: int, wanted: dict
) -> tuple[list[list], int]:
    """Chunk the due deliveries, each chunk one client's, at most per_client chunks in flight per
    client and room in all (each new chunk counted in in_flight), and take them (TAKE with wanted's
    time and lease end): the chunks of those taken, each row as it was taken, and how many chunked
    rows were not (taken or changed elsewhere meanwhile)."""
    chunks: list[list] = []
    open_chunks: dict[str, list[list]] = {}
    for row in due:
        mine = open_chunks.setdefault(row.client_id, [])
        if in_flight[row.client_id] < per_client and len(chunks) < room:
            in_flight[row.client_id] += 1
            mine.append([row])
            chunks.append(mine[-1])
        elif mine and len(shortest := min(mine, key=len)) < chunk_size:
            shortest.append(row)
    if not chunks:
        return [], 0
    leased = [row.result_id for chunk in chunks for row in chunk]
    fresh = {row.result_id: row for row in connection.execute(TAKE, {**wanted, "leased": leased})}
    taken = []
    for chunk in chunks:
        rows = [
            SimpleNamespace(**{**row._asdict(), **fresh[row.result_id]._asdict()})
            for row in chunk
            if row.result_id in fresh
        ]
        if rows:
            taken.append(rows)
        else:  # all of it taken elsewhere: its place is free again
            in_flight[chunk[0].client_id] -= 1
    return taken, len(leased) - len(fresh)


class Leases:
    """How a dispatcher takes its due deliveries in a lease's transaction: the window of the most
    overdue first, and, where that leaves room, a look past it."""

    def __init__(self, per_client: int, *, shares_rows: bool):
        self.per_client = per_client
        self._due_window = due_query(for_update=False, windowed=True)
        # PostgreSQL: other dispatchers may hold (and so hide) some of the due rows for a moment.
        self._due_all = due_query(for_update=shares_rows, windowed=False)
        self._looked_past_at = float("-inf")  # when a lease last looked past clients at their share

    def take_due(
        self, connection, wanted: dict, in_flight: Counter, room: int, chunk_size: int
    ) -> tuple[list[list], bool]:
        """The chunks taken (take, counted in in_flight), and whether the lease left something a
        chunk's end may free (deliveries left for lack of room, or held back)."""
        limit = wanted["limit"]
        window = connection.execute(self._due_window, wanted).all()
        due = [row for row in window if not row.held]
        waiting = bool(wanted["busy"]) or len(due) < len(window)
        chunks, missed = take(connection, due[:limit], in_flight, self.per_client, room, chunk_size, wanted)
        taken = sum(map(len, chunks))
        waiting = waiting or len(due) > limit or taken < len(due)
        full = window and window[0].in_window >= limit * DUE_WINDOW
        if full and len(chunks) < room and (len(due) < limit or missed or self._may_look_past()):
            # A full window that left room: its deliveries held back, taken elsewhere, or all of
            # clients now at their share (one client's backlog must not hide the others', for
            # longer than LOOK_PAST_SECONDS). What lies beyond is only found by looking at
            # everything due of the clients with room left, leaving out what this lease holds.
            capped = [client for client, count in in_flight.items() if count >= self.per_client]
            mine = {row.result_id for chunk in chunks for row in chunk}
            beyond = connection.execute(self._due_all, {**wanted, "busy": capped})
            rest = [row for row in beyond if row.result_id not in mine][: limit - taken]
            more, _ = take(
                connection, rest, in_flight, self.per_client, room - len(chunks), chunk_size, wanted
            )
            chunks += more
            waiting = True
        return chunks, waiting

    def _may_look_past(self) -> bool:
        """At most once per LOOK_PAST_SECONDS (only the lease loop's thread asks)."""
        now = time.monotonic()
        if now - self._looked_past_at < LOOK_PAST_SECONDS:
            return False
        self._looked_past_at = now
        return True
