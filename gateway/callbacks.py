"""Delivering results to the client's callback URL: signed POSTs, retried on a schedule.

Due times live in the database, so retries survive restarts. A dispatcher leases a delivery by
moving its next_attempt_at past the attempt's timeout before posting, so another dispatcher (or
this one after a crash) takes it up again only if the attempt never got recorded.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta

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
        """Attempt every due delivery (up to batch_size); returns how many were attempted."""
        due = self._lease_due()
        for row in due:
            self._attempt(row)
        return len(due)

    def _lease_due(self) -> list:
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
            .limit(self.batch_size)
        )
        if is_postgresql(self.engine):
            query = query.with_for_update(of=deliveries, skip_locked=True)
        lease_until = now + timedelta(seconds=self.timeout + 30)
        with Session(self.engine) as session, session.begin():
            rows = session.execute(query).all()
            if rows:
                session.execute(
                    update(deliveries)
                    .where(deliveries.c.result_id.in_([row.result_id for row in rows]))
                    .values(next_attempt_at=lease_until)
                )
        return rows

    def _attempt(self, row) -> None:
        now = utcnow()
        body = callback_body(row, now)
        headers = signatures.signed_headers(
            row.signing_secret, str(row.result_id), int(now.timestamp()), body
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "taskgate"
        status_code = error = response_body = None
        started = time.monotonic()
        try:
            response = self.http.post(
                row.callback_url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
            status_code = response.status_code
            response_body = response.text[:RESPONSE_BODY_LIMIT]
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
        duration_ms = int((time.monotonic() - started) * 1000)
        delivered = status_code is not None and 200 <= status_code < 300
        self._record(row, now, duration_ms, status_code, error, response_body, delivered)

    def _record(self, row, attempted_at, duration_ms, status_code, error, response_body, delivered) -> None:
        attempts = row.attempts + 1
        fields = {"task_id": row.task_id, "task_uuid": str(row.task_uuid), "result_id": str(row.result_id)}
        if delivered:
            values = {"status": "delivered", "delivered_at": utcnow(), "next_attempt_at": None}
            outcome = "delivered"
            log.info("callback delivered", extra={**fields, "status_code": status_code})
        else:
            delay = next_delay(self.schedule, attempts, self.rng)
            if delay is None:
                values = {"status": "failed", "next_attempt_at": None}
                outcome = "failed"
                log.warning(
                    "callback failed for good", extra={**fields, "status_code": status_code, "error": error}
                )
            else:
                values = {"next_attempt_at": utcnow() + timedelta(seconds=delay)}
                outcome = "retry"
                log.info(
                    "callback attempt failed; will retry",
                    extra={**fields, "status_code": status_code, "error": error},
                )
        DELIVERY_ATTEMPTS.labels(outcome).inc()
        with Session(self.engine) as session, session.begin():
            session.execute(
                insert(delivery_attempts).values(
                    result_id=row.result_id,
                    attempted_at=attempted_at,
                    duration_ms=duration_ms,
                    status_code=status_code,
                    error=error,
                    response_body=response_body,
                )
            )
            session.execute(
                update(deliveries)
                .where(deliveries.c.result_id == row.result_id)
                .values(attempts=attempts, last_status_code=status_code, last_error=error, **values)
            )
