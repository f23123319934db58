"""What a dispatcher leases: the due deliveries, most overdue first, and how it takes them."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from gateway.tables import clients, deliveries, results, tasks

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


def due_query(for_update: bool, *, windowed: bool):
    """Due pending deliveries, most overdue first; built once, with the time, the clients to
    leave out and the limit as parameters.

    Windowed: up to DUE_WINDOW times limit of them, each flagged `held` when its task has an
    earlier pending result, and with the number the window held (`in_window`). Not windowed: up
    to limit of those not held back.
    """
    due = (
        select(deliveries.c.result_id)
        .where(
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= bindparam("now"),
            deliveries.c.client_id.not_in(bindparam("busy", expanding=True)),
        )
        .order_by(deliveries.c.next_attempt_at)
    )
    # Windowed: the most overdue first, straight from the (status, next_attempt_at) index; only
    # these are joined and checked for earlier results. Each row says how many the window held.
    if windowed:
        most_overdue = due.limit(bindparam("limit") * DUE_WINDOW).subquery()
        window = select(most_overdue.c.result_id, func.count().over().label("in_window")).subquery()
    else:
        window = due.subquery()
    # Held: an earlier result of the same task is still pending. Only the task's results are in
    # the subquery's FROM, each one's delivery status a scalar lookup by key, so PostgreSQL cannot
    # plan it as a scan of every pending delivery (with a join it did, whenever its statistics
    # still said few were pending, and the lease became the bottleneck under a backlog).
    earlier_result, earlier_delivery = aliased(results), aliased(deliveries)
    earlier_status = (
        select(earlier_delivery.c.status)
        .where(earlier_delivery.c.result_id == earlier_result.c.result_id)
        .scalar_subquery()
    )
    earlier_pending = exists().where(
        earlier_result.c.task_uuid == results.c.task_uuid,
        or_(
            earlier_result.c.occurred_at < results.c.occurred_at,
            and_(
                earlier_result.c.occurred_at == results.c.occurred_at,
                earlier_result.c.result_id < results.c.result_id,
            ),
        ),
        earlier_status == "pending",
    )
    query = (
        select(
            deliveries.c.result_id,
            deliveries.c.attempts,
            deliveries.c.replayed_after_attempts,
            deliveries.c.trace,
            results.c.context,
            results.c.outcome,
            results.c.status,
            results.c.result,
            tasks.c.task_id,
            tasks.c.task_uuid,
            tasks.c.received_at,
            clients.c.client_id,
            clients.c.callback_url,
            clients.c.signing_secret,
            clients.c.previous_signing_secret,
            clients.c.previous_secret_expires_at,
        )
        .join(window, window.c.result_id == deliveries.c.result_id)
        .join(results, results.c.result_id == deliveries.c.result_id)
        .join(tasks, tasks.c.task_uuid == results.c.task_uuid)
        .join(clients, clients.c.client_id == deliveries.c.client_id)
        # Again here, not only in the window: with FOR UPDATE SKIP LOCKED, PostgreSQL re-checks a
        # row another dispatcher leased meanwhile against these conditions only, and a delivery
        # just leased elsewhere must not be leased again.
        .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= bindparam("now"))
        .order_by(deliveries.c.next_attempt_at)
    )
    if windowed:
        # The window bounds it; in_window tells whether it was full.
        query = query.add_columns(earlier_pending.label("held"), window.c.in_window)
    else:
        query = query.where(~earlier_pending).limit(bindparam("limit"))
    return query.with_for_update(of=deliveries, skip_locked=True) if for_update else query


# Take the deliveries given as `leased` until `until`, those still due and not being leased by
# another dispatcher right now (SKIP LOCKED): a delivery read as due a moment ago may have been
# leased or attempted elsewhere since. Returns what may have changed since it was read.
TAKE = (
    update(deliveries)
    .where(
        deliveries.c.result_id.in_(
            select(deliveries.c.result_id)
            .where(
                deliveries.c.result_id.in_(bindparam("leased", expanding=True)),
                deliveries.c.status == "pending",
                deliveries.c.next_attempt_at <= bindparam("now"),
            )
            .with_for_update(skip_locked=True)
        )
    )
    .values(next_attempt_at=bindparam("until"))
    .returning(deliveries.c.result_id, deliveries.c.attempts, deliveries.c.replayed_after_attempts)
)


# End a lease this process holds (until) on deliveries it will not attempt after all: due now.
GIVE_BACK = (
    update(deliveries)
    .where(
        deliveries.c.result_id.in_(bindparam("leased", expanding=True)),
        deliveries.c.status == "pending",
        deliveries.c.next_attempt_at == bindparam("until"),
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
