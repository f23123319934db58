"""The callback dispatcher: leases due deliveries (or takes fresh ones handed over in memory),
attempts them on a small pool with a cap per client, and records every attempt."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Connection, Engine

from gateway.callbacks.attempts import AttemptRecorder
from gateway.callbacks.lease import (
    CHUNK_SIZE,
    GIVE_BACK,
    LEASE_MARGIN_SECONDS,
    LEASE_SLACK_SECONDS,
    Leases,
)
from gateway.callbacks.sender import CallbackSender, span_attributes
from messaging.after_commit import after_commit
from messaging.db import backend, utcnow
from messaging.group_commit import Ticket
from messaging.tracing import tracer
from messaging.wakeup import Wakeup

log = logging.getLogger(__name__)


class CallbackDispatcher:
    def __init__(
        self,
        engine: Engine,
        wakeup: Wakeup,
        *,
        timeout: float,
        schedule: tuple[float, ...],
        allow_private: bool = False,
        concurrency: int = 8,
        per_client: int = 2,
        idle_interval: float = 1.0,
        rng: random.Random | None = None,
        linger: float = 0.0,
    ):
        self.engine = engine
        self.wakeup = wakeup
        self.concurrency = concurrency
        self.per_client = per_client
        self.idle_interval = idle_interval
        self.linger = linger
        # An attempt ends by its deadline, one timeout after it starts, give or take the slack, and
        # starts within the margin: the lease outlasts every attempt of the chunk, so nobody else
        # takes the delivery meanwhile.
        self.lease = timedelta(seconds=LEASE_MARGIN_SECONDS + timeout + LEASE_SLACK_SECONDS)
        self._leases = Leases(per_client, shares_rows=backend(engine).shares_rows)
        self.sender = CallbackSender(timeout, allow_private)
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        # Whether the last lease left something behind that the end of a chunk may free.
        self._waiting = True
        self._released = 0  # chunks ended so far
        self._recorder = AttemptRecorder(engine, schedule, rng or random.Random())
        self._running: tuple[ThreadPoolExecutor, threading.Event] | None = None  # while run() runs

    def offer(self, fresh: list) -> tuple[dict, Callable[[Connection, set], None]]:
        """Of the deliveries a transaction is about to record, fresh those that may go at once: the
        ones this dispatcher takes, as many as it has room for (result_id -> the end of their lease,
        to be recorded with them), and the hand-over to call in that transaction with the
        result_ids it stored (a result recorded before is no new delivery). Those taken are
        attempted once it has committed, never if it does not, and spare this process leasing
        them back from the table; if it stored others, the lease loop looks after the commit."""
        with self._lock:
            running = self._running
            room = self.concurrency - self._in_flight.total()
            in_flight = Counter(self._in_flight)
        if running is None:
            return {}, lambda connection, stored: None  # a running dispatcher's lease loop finds them
        chunks: dict[str, list] = {}
        for row in fresh:
            chunk = chunks.get(row.client_id)
            if chunk is not None and len(chunk) < CHUNK_SIZE:
                chunk.append(row)
            elif chunk is None and room > 0 and in_flight[row.client_id] < self.per_client:
                chunks[row.client_id] = [row]
                room -= 1
        leased_at, until = time.monotonic(), utcnow() + self.lease

        def hand_over(connection: Connection, stored: set) -> None:
            taken = [[row for row in chunk if row.result_id in stored] for chunk in chunks.values()]
            taken = [chunk for chunk in taken if chunk]
            if taken:
                after_commit(connection, lambda: self._hand_over(taken, leased_at, until))
            if sum(map(len, taken)) < len(stored):
                after_commit(connection, self.wakeup.notify)

        return {row.result_id: until for chunk in chunks.values() for row in chunk}, hand_over

    def _hand_over(self, chunks: list[list], leased_at: float, until) -> None:
        """Attempt chunks offered in a transaction that has committed (leased at leased_at, by the
        monotonic clock, until until: the attempts' margin counts from the offer), those that still
        fit the caps: the lease loop may have taken the client's (or the pool's) last
        places since the offer looked. The others are given back to the table, due at once, for the
        lease loop to take when there is room. Were the dispatcher stopped meanwhile, they go out
        after their lease, from whichever dispatcher leases them then."""
        with self._lock:
            if self._running is None:
                return
            pool, stop = self._running
            fitting, left = self._count_in(chunks)
        for chunk in fitting:
            try:
                pool.submit(self._attempt_and_release, chunk, leased_at, stop)
            except RuntimeError:  # the pool is shutting down: the lease runs out, someone retries
                with self._lock:
                    self._in_flight[chunk[0].client_id] -= 1
        if left:
            self._give_back([row.result_id for chunk in left for row in chunk], until)

    def _count_in(self, chunks: list[list]) -> tuple[list[list], list[list]]:
        """Under self._lock: the chunks that fit the caps, counted in flight, and those that do not."""
        fitting, left = [], []
        for chunk in chunks:
            client_id = chunk[0].client_id
            room = self._in_flight.total() < self.concurrency
            if room and self._in_flight[client_id] < self.per_client:
                self._in_flight[client_id] += 1
                fitting.append(chunk)
            else:
                left.append(chunk)
        return fitting, left

    def _give_back(self, result_ids: list, until) -> None:
        """End this process's lease (until) of deliveries it will not attempt now."""
        try:
            with self.engine.begin() as connection:
                connection.execute(GIVE_BACK, {"leased": result_ids, "until": until, "now": utcnow()})
        except Exception:  # their lease runs out instead, and they go out a little later
            log.exception("giving back %d leased deliveries failed", len(result_ids))
        with self._lock:
            self._waiting = True
        self.wakeup.notify()

    def run(self, stop: threading.Event) -> None:
        """Lease and attempt due deliveries until stop; in-flight attempts (no more) finish before it
        returns."""
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="callback") as pool:
            with self._lock:
                self._running = (pool, stop)
            try:
                self._lease_until(pool, stop)
            finally:
                with self._lock:
                    self._running = None

    def _lease_until(self, pool: ThreadPoolExecutor, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                leased_at = time.monotonic()
                leased = self._lease_due()
                for chunk in leased:
                    pool.submit(self._attempt_and_release, chunk, leased_at, stop)
            except Exception:
                log.exception("callback dispatch failed; retrying")
                stop.wait(1.0)
                continue
            # A new result of this process wakes us, and so does the end of a chunk when the
            # last lease left something it may free (else the idle interval); under load (more
            # than one delivery in the last lease) what follows within the linger goes with it.
            if self.wakeup.wait(self.idle_interval) and sum(map(len, leased)) > 1:
                stop.wait(self.linger)

    def deliver_due(self, limit: int = 100) -> int:
        """Attempt due deliveries one after another in this thread (tests, tools); returns how many."""
        attempted = 0
        while attempted < limit and (leased := self._lease_due(1, chunk_size=1)):
            self._attempt_and_release(leased[0], time.monotonic())
            attempted += 1
        return attempted

    def _attempt_and_release(
        self, chunk: list, leased_at: float, stop: threading.Event | None = None
    ) -> None:
        """Attempt a leased chunk (one client's) in order, then free its place once every attempt
        is recorded. An attempt only starts while the lease surely outlasts it, and not once stop
        is set; what is left over (or follows a failure to record) goes back when its lease runs out.

        A thread does not wait for each record before the next attempt: the records go with the
        next group commit, and the thread waits for them all at the end of the chunk.
        """
        records: list[Ticket] = []
        try:
            for row in chunk:
                if time.monotonic() - leased_at > LEASE_MARGIN_SECONDS:
                    break
                if stop is not None and stop.is_set():
                    break
                if any(record.failed for record in records):
                    break
                try:
                    records.append(self._attempt(row))
                except Exception:
                    log.exception(
                        "callback attempt crashed",
                        extra={"task_id": row.task_id, "task_uuid": str(row.task_uuid)},
                    )
                    break
        finally:
            try:
                self._recorder.wait(records)
            except Exception:
                log.exception("recording callback attempts failed; their deliveries go again later")
            client_id = chunk[0].client_id
            with self._lock:
                self._in_flight[client_id] -= 1
                if self._in_flight[client_id] <= 0:
                    del self._in_flight[client_id]
                self._released += 1
                waiting = self._waiting
            if waiting:  # the chunk's end may free room, or a later result of its tasks
                self.wakeup.notify()

    def _lease_due(self, room: int | None = None, chunk_size: int = CHUNK_SIZE) -> list[list]:
        """Up to room chunks of the most overdue deliveries whose task has no earlier pending
        result: each chunk one client's, up to chunk_size long, at most per_client chunks in flight
        per client. Leased in one transaction for as long as one attempt can take plus the margin
        in which _attempt_and_release starts attempts; each chunk counts as in flight until then.

        It reads a window of the most overdue deliveries (unlocked: when nothing is due, that one
        statement is the lease), flagged when an earlier result holds them back, and takes those
        it chunks by a conditional update that skips what another dispatcher is taking. Only a
        full window that left room (its deliveries held back, taken elsewhere, or, at most once per
        LOOK_PAST_SECONDS, all of clients at their share) sends it on to all the due ones of the
        other clients, locked as they are read. It notes whether a chunk's end can free
        something (it left deliveries for lack of room, or saw some held back): only then does the
        chunk's end wake the lease loop. room defaults to what is free of concurrency."""
        with self._lock:
            in_flight = Counter(self._in_flight)
            if room is None:
                room = self.concurrency - in_flight.total()
            released = self._released
            if room <= 0:
                self._waiting = True
                return []
        busy = [client for client, count in in_flight.items() if count >= self.per_client]
        now = utcnow()
        limit = room * chunk_size * self.per_client
        wanted = {"now": now, "busy": busy, "limit": limit, "until": now + self.lease}
        with self.engine.begin() as connection:
            chunks, waiting = self._leases.take_due(connection, wanted, in_flight, room, chunk_size)
        with self._lock:
            # Counted again: an offer of this process may have taken places since the snapshot.
            chunks, left = self._count_in(chunks)
            self._waiting = waiting
            missed = waiting and self._released != released
        if left:
            self._give_back([row.result_id for chunk in left for row in chunk], wanted["until"])
        if missed:  # a chunk ended meanwhile, before it could know it should wake us
            self.wakeup.notify()
        return chunks

    def _attempt(self, row) -> Ticket:
        attributes = span_attributes(row) if tracer().enabled else {}
        with tracer().attempting(row.trace, attributes) as call:  # its log lines carry the trace
            attempt = self.sender.attempt(row, call["headers"])
            call["status_code"], call["error"] = attempt.status_code, attempt.error
            # Once recorded, a later result of the same task may be free to go: the chunk's end
            # wakes the lease loop if its last lease saw that result held back. (A result recorded
            # by another process meanwhile is leased there, or here at the next idle interval.)
            return self._recorder.submit(row, attempt)
