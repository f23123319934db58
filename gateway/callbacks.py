"""Delivering results to the client's callback URL: signed POSTs, retried on a schedule.

Due times live in the database, so retries survive restarts. A dispatcher leases a delivery by
moving its next_attempt_at past the attempt's timeout before posting, so another dispatcher (or
this one after a crash) takes it up again only if the attempt never got recorded.

Attempts run on a small pool with a cap per client, so one client's dead endpoint cannot hold up
another client's deliveries. Results of one task go out in the order they occurred: a delivery
waits while an earlier result of its task is still pending.
"""

from __future__ import annotations

import dataclasses
import http.cookiejar
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from sqlalchemy import Engine, and_, bindparam, exc, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from gateway import callback_http, signatures
from gateway.clients import Client
from gateway.metrics import DELIVERY_ATTEMPTS, TASK_TO_CALLBACK_SECONDS
from gateway.tables import clients, deliveries, delivery_attempts, results, tasks
from gateway.urls import UnsafeURL, resolve_callback_target
from messaging.after_commit import after_commit
from messaging.db import Among, insert_many, is_postgresql, utcnow
from messaging.group_commit import GroupCommit, Ticket
from messaging.wakeup import Wakeup

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 4096
# Attempts of a leased chunk start within this many seconds of the lease.
LEASE_MARGIN_SECONDS = 30
# What an attempt may take beyond its deadline: looking up the callback host (which the deadline
# cannot cut short), then recording the attempt.
LEASE_SLACK_SECONDS = 10
# A callback thread takes up to this many due deliveries of one client per lease and attempts them
# one after another on its keep-alive connection: one lease transaction for several deliveries.
CHUNK_SIZE = 8
MAX_RETRY_AFTER_SECONDS = 24 * 3600


def callback_body(row, now: datetime) -> bytes:
    body = {
        "type": "task.result",
        "timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "result_id": str(row.result_id),
            "task_id": row.task_id,
            "task_uuid": str(row.task_uuid),
            "context": row.context,
            "outcome": row.outcome,
            "status": row.status,
            "result": row.result,
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def next_delay(schedule: tuple[float, ...], attempts_made: int, rng: random.Random) -> float | None:
    """Seconds until the next attempt after attempts_made attempts (of this round: a replay starts a
    new one), with ±20% jitter; None when the schedule is spent."""
    if attempts_made >= len(schedule):
        return None
    base = schedule[attempts_made]
    return base * rng.uniform(0.8, 1.2)


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
        self.timeout = timeout
        self.schedule = schedule
        self.allow_private = allow_private
        self.concurrency = concurrency
        self.per_client = per_client
        self.idle_interval = idle_interval
        self.linger = linger
        self.rng = rng or random.Random()
        # An attempt ends by its deadline, one timeout after it starts, give or take the slack, and
        # starts within the margin: the lease outlasts every attempt of the chunk, so nobody else
        # takes the delivery meanwhile.
        self.lease = timedelta(seconds=LEASE_MARGIN_SECONDS + timeout + LEASE_SLACK_SECONDS)
        # PostgreSQL: other dispatchers may hold (and so hide) some of the due rows for a moment.
        self._competing = is_postgresql(engine)
        self._due_window = _due_query(for_update=self._competing, windowed=True)
        self._due_all = _due_query(for_update=self._competing, windowed=False)
        self._sessions = threading.local()
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        # Whether the last lease left something behind that the end of a chunk may free.
        self._waiting = True
        self._released = 0  # chunks ended so far
        self._recorder = GroupCommit(self._write_attempts)
        self._running: tuple[ThreadPoolExecutor, threading.Event] | None = None  # while run() runs

    def offer(self, connection, fresh: list, recorded: int) -> dict:
        """Deliveries being recorded in connection's transaction (recorded of them in all, fresh
        those that may go at once) that this dispatcher takes at once, as many as it has room
        for: result_id -> the end of their lease, to be recorded with them. They are attempted
        once that transaction has committed, never if it does not, and spare this process leasing
        them back from the table; if it leaves some, the lease loop looks for them after the commit."""
        with self._lock:
            running = self._running
            room = self.concurrency - self._in_flight.total()
            in_flight = Counter(self._in_flight)
        if running is None:
            return {}  # the lease loop of a running dispatcher finds them
        chunks: dict[str, list] = {}
        for row in fresh:
            chunk = chunks.get(row.client_id)
            if chunk is not None and len(chunk) < CHUNK_SIZE:
                chunk.append(row)
            elif chunk is None and room > 0 and in_flight[row.client_id] < self.per_client:
                chunks[row.client_id] = [row]
                room -= 1
        if chunks:
            after_commit(connection, lambda: self._hand_over(list(chunks.values())))
        until = utcnow() + self.lease
        taken = {row.result_id: until for chunk in chunks.values() for row in chunk}
        if len(taken) < recorded:
            after_commit(connection, self.wakeup.notify)
        return taken

    def _hand_over(self, chunks: list[list]) -> None:
        """Attempt chunks offered in a transaction that has committed. Were the dispatcher stopped
        meanwhile, they go out after their lease, from whichever dispatcher leases them then."""
        leased_at = time.monotonic()
        with self._lock:
            if self._running is None:
                return
            pool, stop = self._running
            for chunk in chunks:
                self._in_flight[chunk[0].client_id] += 1
        for chunk in chunks:
            try:
                pool.submit(self._attempt_and_release, chunk, leased_at, stop)
            except RuntimeError:  # the pool is shutting down: the lease runs out, someone retries
                with self._lock:
                    self._in_flight[chunk[0].client_id] -= 1

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

        It first looks at a window of the most overdue deliveries, which come flagged when an
        earlier result holds them back; only a window full of deliveries, too few of them free to
        go, sends it on to all the due ones. It notes whether a chunk's end can free something
        (it left deliveries for lack of room, or saw some held back): only then does the chunk's
        end wake the lease loop. room defaults to what is free of concurrency."""
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
        chunks: list[list] = []
        open_chunks: dict[str, list[list]] = {}
        with self.engine.begin() as connection:
            wanted = {"now": now, "busy": busy, "limit": room * chunk_size * self.per_client}
            window = connection.execute(self._due_window, wanted).all()
            due = [row for row in window if not row.held]
            waiting = bool(busy) or len(due) < len(window)
            # How many rows the window held before SKIP LOCKED left out those another dispatcher
            # is leasing; none came back: nothing is due, or (PostgreSQL) all of it is being leased
            # elsewhere right now, and what lies beyond is only found by looking at everything.
            size = wanted["limit"] * DUE_WINDOW
            in_window = window[0].in_window if window else (size if self._competing else 0)
            if in_window >= size and len(due) < wanted["limit"]:
                due = connection.execute(self._due_all, wanted).all()
                waiting = True
            for row in due[: wanted["limit"]]:
                mine = open_chunks.setdefault(row.client_id, [])
                if in_flight[row.client_id] < self.per_client and len(chunks) < room:
                    in_flight[row.client_id] += 1
                    mine.append([row])
                    chunks.append(mine[-1])
                elif mine and len(shortest := min(mine, key=len)) < chunk_size:
                    shortest.append(row)
                else:
                    waiting = True  # no room for it now
            waiting = waiting or len(due) > wanted["limit"]
            if chunks:
                leased = [row.result_id for chunk in chunks for row in chunk]
                connection.execute(_LEASE, {"leased": leased, "until": now + self.lease})
        with self._lock:
            for chunk in chunks:
                self._in_flight[chunk[0].client_id] += 1
            self._waiting = waiting
            missed = waiting and self._released != released
        if missed:  # a chunk ended meanwhile, before it could know it should wake us
            self.wakeup.notify()
        return chunks

    def _http(self) -> requests.Session:
        if not hasattr(self._sessions, "http"):
            session = requests.Session()
            session.mount("http://", callback_http.CallbackAdapter())
            session.mount("https://", callback_http.CallbackAdapter())
            read_environment_once(session)
            self._sessions.http = session
        return self._sessions.http

    def _post(
        self, url: str, addresses: list[str], body: bytes, headers: dict[str, str]
    ) -> requests.Response:
        """POST body to url on this thread's keep-alive connection, not following redirects; to the
        first of the addresses checked for url (none: private targets are allowed, nothing to pin).

        Without proxies from the environment (see read_environment_once) the request goes straight
        to the session's adapter: what Session.post adds costs more than the rest of the client
        side (merging cookies, which callbacks neither send nor keep, hooks and settings).
        """
        session = self._http()
        address = addresses[0] if addresses else None
        if session.trust_env:  # proxies, applied per URL by requests
            # A proxy connects to the host by its name, so the connection cannot be pinned to the
            # checked address: the operator's proxy must keep callbacks out of the internal network.
            if address and requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url)):
                address = None
            with callback_http.pinned(address):
                return session.post(
                    url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False, stream=True
                )
        prepared = requests.PreparedRequest()
        prepared.prepare(method="POST", url=url, headers={**session.headers, **headers}, data=body)
        adapter = session.get_adapter(prepared.url)
        with callback_http.pinned(address):
            return adapter.send(
                prepared, stream=True, timeout=self.timeout, verify=session.verify, cert=None, proxies={}
            )

    def _attempt(self, row) -> Ticket:
        now = utcnow()
        client = Client(
            row.client_id,
            row.callback_url,
            row.signing_secret,
            row.previous_signing_secret,
            row.previous_secret_expires_at,
        )
        body = callback_body(row, now)
        headers = signatures.signed_headers(
            client.secrets(now), str(row.result_id), int(now.timestamp()), body
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "taskgate"
        attempt = Attempt(attempted_at=now)
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            # Looked up once per attempt, and the connection goes to an address checked here.
            addresses = resolve_callback_target(row.callback_url, allow_private=self.allow_private)
            with (
                callback_http.deadline(deadline),
                self._post(row.callback_url, addresses, body, headers) as response,
            ):
                attempt.status_code = response.status_code
                attempt.retry_after = response.headers.get("Retry-After")
                attempt.response_body = _read_some(response)
        except UnsafeURL as error:
            attempt.error = str(error)
        except requests.RequestException as error:
            if time.monotonic() >= deadline:  # whatever broke off, the deadline did
                attempt.error = f"the attempt took longer than {self.timeout:g} s"
            else:
                attempt.error = _redact(f"{type(error).__name__}: {error}", row.callback_url)[:1000]
        except Exception as error:  # whatever happened, the attempt is recorded and the schedule moves on
            log.exception(
                "callback attempt broke", extra={"task_id": row.task_id, "task_uuid": str(row.task_uuid)}
            )
            attempt.error = f"{type(error).__name__}: {error}"[:1000]
        attempt.duration_ms = int((time.monotonic() - started) * 1000)
        return self._record(row, attempt)

    def _record(self, row, attempt: Attempt) -> Ticket:
        """Hand the attempt to the group commit; the ticket says when it is recorded."""
        attempts = row.attempts + 1
        attempt.error = _storable(attempt.error) if attempt.error else None
        fields = {"task_id": row.task_id, "task_uuid": str(row.task_uuid), "result_id": str(row.result_id)}
        detail = {"status_code": attempt.status_code, "error": attempt.error}
        if attempt.delivered:
            delivered_at = utcnow()
            values = {"status": "delivered", "delivered_at": delivered_at, "next_attempt_at": None}
            outcome = "delivered"
            TASK_TO_CALLBACK_SECONDS.labels(row.context).observe(
                max(0.0, (delivered_at - row.received_at).total_seconds())
            )
            log.info("callback delivered", extra={**fields, **detail})
        else:
            round_attempts = attempts - row.replayed_after_attempts
            delay = (
                None if attempt.status_code == 410 else next_delay(self.schedule, round_attempts, self.rng)
            )
            if delay is None:
                values = {"status": "failed", "next_attempt_at": None}
                outcome = "failed"
                log.warning("callback failed for good", extra={**fields, **detail})
            else:
                delay = max(delay, retry_after_seconds(attempt.retry_after, utcnow()) or 0)
                values = {"next_attempt_at": utcnow() + timedelta(seconds=delay)}
                outcome = "retry"
                log.info("callback attempt failed; retrying in %.1f s", delay, extra={**fields, **detail})
        DELIVERY_ATTEMPTS.labels(outcome).inc()
        # Once recorded, a later result of the same task may be free to go: the chunk's end wakes
        # the lease loop if its last lease saw that result held back. (A result recorded by
        # another process meanwhile is leased there, or here at the next idle interval.)
        return self._recorder.submit_nowait((row, attempt, attempts, values))

    def _write_attempts(self, recorded: list[tuple]) -> None:
        """Attempts of several callback threads, recorded in one transaction (GroupCommit).

        Pooled connections are not pinged before use, so one the server dropped since its last use
        fails the first statement; the pool then replaces it, and the attempts are written on a
        fresh connection (only then: once a statement went through, a failure is not retried, as
        the outcome of a COMMIT that lost its connection is unknown).
        """
        try:
            self._write_attempts_once(recorded)
        except StaleConnection:
            self._write_attempts_once(recorded)

    def _write_attempts_once(self, recorded: list[tuple]) -> None:
        with self.engine.begin() as connection:
            try:
                insert_many(
                    connection,
                    delivery_attempts,
                    [
                        {
                            "result_id": row.result_id,
                            "attempted_at": attempt.attempted_at,
                            "duration_ms": attempt.duration_ms,
                            "status_code": attempt.status_code,
                            "error": attempt.error,
                            "response_body": attempt.response_body,
                        }
                        for row, attempt, _, _ in recorded
                    ],
                )
            except exc.DBAPIError as error:
                if error.connection_invalidated:
                    raise StaleConnection from error
                raise
            # Each only if nobody else recorded an attempt meanwhile (e.g. after our lease ran out).
            connection.execute(
                _RECORD_ATTEMPT,
                [
                    {
                        "key": row.result_id,
                        "seen_attempts": row.attempts,
                        **{
                            f"new_{column}": value
                            for column, value in {
                                "status": "pending",
                                "delivered_at": None,
                                **values,
                                "attempts": attempts,
                                "last_status_code": attempt.status_code,
                                "last_error": attempt.error,
                            }.items()
                        },
                    }
                    for row, attempt, attempts, values in recorded
                ],
            )


# A lease first looks only at this many times `limit` of the most overdue deliveries, so that
# under a backlog its cost does not grow with the backlog (PostgreSQL would otherwise check every
# due delivery for an earlier pending result, then sort them all). If that window is full and too
# few in it are free to go (e.g. most are held back by an earlier result), it looks at all of them.
DUE_WINDOW = 2


def _due_query(for_update: bool, *, windowed: bool):
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
            Among(deliveries.c.client_id, "busy", negate=True),
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
    # plan it as a scan of every pending delivery: with a join it did, whenever its statistics
    # still said few were pending (a backlog grows faster than autovacuum analyses), at some
    # 3 ms per row leased, which made the lease the bottleneck of an overloaded pipeline.
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
        # The window bounds it. Its held-back rows are locked with the rest for the lease's
        # moment, which hides them from other dispatchers meanwhile: in_window tells those that
        # their window was full all the same.
        query = query.add_columns(earlier_pending.label("held"), window.c.in_window)
    else:
        query = query.where(~earlier_pending).limit(bindparam("limit"))
    return query.with_for_update(of=deliveries, skip_locked=True) if for_update else query


_LEASE = (
    update(deliveries)
    .where(Among(deliveries.c.result_id, "leased"))
    .values(next_attempt_at=bindparam("until"))
)

_RECORD_ATTEMPT = (
    update(deliveries)
    .where(
        deliveries.c.result_id == bindparam("key"),
        deliveries.c.status == "pending",
        deliveries.c.attempts == bindparam("seen_attempts"),
    )
    .values(
        {
            column: bindparam(f"new_{column}")
            for column in (
                "status",
                "delivered_at",
                "next_attempt_at",
                "attempts",
                "last_status_code",
                "last_error",
            )
        }
    )
)


class StaleConnection(Exception):
    """The first statement of a transaction met a connection the server had dropped."""


@dataclasses.dataclass
class Attempt:
    attempted_at: datetime
    status_code: int | None = None
    retry_after: str | None = None
    response_body: str | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


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
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def read_environment_once(session: requests.Session, environ=None) -> None:
    """Apply to session what requests would otherwise look up in the environment on every request
    (trust_env), which costs more than the rest of an attempt's client side: the CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Proxy settings are left to requests, which applies
    no_proxy per URL (no_proxy alone needs none of that); .netrc credentials are never sent to
    callback URLs, and cookies are never kept."""
    environ = os.environ if environ is None else environ
    # Whatever requests reads from the environment, it neither keeps an endpoint's cookies (a
    # callback is a signed message, not a browsing session) nor adds .netrc credentials.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.auth = _as_is
    proxies = (name for name, value in environ.items() if value and name.lower().endswith("_proxy"))
    if any(name.lower() != "no_proxy" for name in proxies):
        return
    session.trust_env = False
    bundle = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle


def _as_is(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """No authentication: as a session's auth, it keeps requests from adding .netrc credentials."""
    return request


def _read_some(response: requests.Response) -> str:
    """Up to RESPONSE_BODY_LIMIT bytes of the answer (the attempt's deadline bounds the reading)."""
    body = next(response.iter_content(chunk_size=RESPONSE_BODY_LIMIT), b"")
    return _storable(body.decode("utf-8", errors="replace"))


def _storable(text: str) -> str:
    """No database stores NUL in text."""
    return text.replace("\x00", "\ufffd")


def _redact(text: str, url: str) -> str:
    """text without the URL's query or credentials, which may hold secrets."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.password):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
