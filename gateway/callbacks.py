"""Delivering results to the client's callback URL: signed POSTs, retried on a schedule.

Due times live in the database, so retries survive restarts. A dispatcher leases a delivery by
moving its next_attempt_at past the attempt's timeout before posting, so another dispatcher (or
this one after a crash) takes it up again only if the attempt never got recorded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from gateway import signatures
from gateway.metrics import DELIVERY_ATTEMPTS
from gateway.tables import clients, deliveries, delivery_attempts, results, tasks
from messaging.db import is_postgresql, utcnow
from messaging.wakeup import Wakeup

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 4096
LEASE_MARGIN_SECONDS = 30
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
    """Seconds until the next attempt after attempts_made attempts, with ±20% jitter; None when spent."""
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
        http: requests.Session | None = None,
        batch_size: int = 20,
        idle_interval: float = 1.0,
        rng: random.Random | None = None,
    ):
        self.engine = engine
        self.wakeup = wakeup
        self.timeout = timeout
        self.schedule = schedule
        self.http = http or requests.Session()
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.rng = rng or random.Random()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                sent = self.deliver_due()
            except Exception:
                log.exception("callback dispatch failed; retrying")
                stop.wait(1.0)
                continue
            if sent < self.batch_size:
                self.wakeup.wait(self.idle_interval)

    def deliver_due(self) -> int:
        """Attempt due deliveries (up to batch_size), one lease at a time; returns how many."""
        attempted = 0
        while attempted < self.batch_size and (row := self._lease_next()) is not None:
            self._attempt(row)
            attempted += 1
        return attempted

    def _lease_next(self):
        """The most overdue delivery, leased for as long as one attempt can take."""
        now = utcnow()
        query = (
            select(
                deliveries.c.result_id,
                deliveries.c.attempts,
                results.c.context,
                results.c.outcome,
                results.c.status,
                results.c.result,
                tasks.c.task_id,
                tasks.c.task_uuid,
                clients.c.client_id,
                clients.c.callback_url,
                clients.c.signing_secret,
            )
            .join(results, results.c.result_id == deliveries.c.result_id)
            .join(tasks, tasks.c.task_uuid == results.c.task_uuid)
            .join(clients, clients.c.client_id == deliveries.c.client_id)
            .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at)
            .limit(1)
        )
        if is_postgresql(self.engine):
            query = query.with_for_update(of=deliveries, skip_locked=True)
        with Session(self.engine) as session, session.begin():
            row = session.execute(query).one_or_none()
            if row is not None:
                session.execute(
                    update(deliveries)
                    .where(deliveries.c.result_id == row.result_id)
                    .values(next_attempt_at=now + timedelta(seconds=self.timeout + LEASE_MARGIN_SECONDS))
                )
        return row

    def _attempt(self, row) -> None:
        now = utcnow()
        body = callback_body(row, now)
        headers = signatures.signed_headers(
            row.signing_secret, str(row.result_id), int(now.timestamp()), body
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "taskgate"
        attempt = Attempt(attempted_at=now)
        started = time.monotonic()
        try:
            with self.http.post(
                row.callback_url,
                data=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                attempt.status_code = response.status_code
                attempt.retry_after = response.headers.get("Retry-After")
                # Read no more than we keep: a client cannot hold the dispatcher with a huge body.
                attempt.response_body = response.raw.read(RESPONSE_BODY_LIMIT, decode_content=True).decode(
                    "utf-8", errors="replace"
                )
        except requests.RequestException as error:
            attempt.error = _redact(f"{type(error).__name__}: {error}", row.callback_url)[:1000]
        attempt.duration_ms = int((time.monotonic() - started) * 1000)
        self._record(row, attempt)

    def _record(self, row, attempt: Attempt) -> None:
        attempts = row.attempts + 1
        fields = {"task_id": row.task_id, "task_uuid": str(row.task_uuid), "result_id": str(row.result_id)}
        detail = {"status_code": attempt.status_code, "error": attempt.error}
        if attempt.delivered:
            values = {"status": "delivered", "delivered_at": utcnow(), "next_attempt_at": None}
            outcome = "delivered"
            log.info("callback delivered", extra={**fields, **detail})
        else:
            delay = None if attempt.status_code == 410 else next_delay(self.schedule, attempts, self.rng)
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
        with Session(self.engine) as session, session.begin():
            session.execute(
                insert(delivery_attempts).values(
                    result_id=row.result_id,
                    attempted_at=attempt.attempted_at,
                    duration_ms=attempt.duration_ms,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    response_body=attempt.response_body,
                )
            )
            # Only if nobody else recorded an attempt meanwhile (e.g. after our lease ran out).
            session.execute(
                update(deliveries)
                .where(
                    deliveries.c.result_id == row.result_id,
                    deliveries.c.status == "pending",
                    deliveries.c.attempts == row.attempts,
                )
                .values(
                    attempts=attempts,
                    last_status_code=attempt.status_code,
                    last_error=attempt.error,
                    **values,
                )
            )


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
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _redact(text: str, url: str) -> str:
    """text without the URL's query or credentials, which may hold secrets."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.password):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
