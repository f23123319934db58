"""Prometheus metrics of the gateway at /metrics.

Counters and the latency histogram are kept per process; with PROMETHEUS_MULTIPROC_DIR set (as
gunicorn with several workers needs, and `taskgate worker` processes on the same host share) they
are summed over processes. Backlogs, parked tasks, dead letters and heartbeats are read from the
database at scrape time, so every gateway process reports the same figures.
"""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from gateway.overview import Overview, read_overview
from gateway.state import current_state
from messaging import vocabulary

log = logging.getLogger(__name__)

WAITING_REASONS = (vocabulary.UNKNOWN_CUSTOMER, vocabulary.CUSTOMER_OUTDATED, vocabulary.TARGET_UNDECIDED)

TASKS_RECEIVED = Counter(
    "taskgate_tasks_received_total",
    "Webhook requests by client, task type and response status",
    ["client_id", "type", "code"],
)
RESULTS_RECORDED = Counter(
    "taskgate_results_recorded_total", "Results recorded by the gateway", ["context", "status"]
)
DELIVERY_ATTEMPTS = Counter(
    "taskgate_delivery_attempts_total",
    "Callback attempts by outcome (delivered, retry, failed)",
    ["outcome"],
)
TASK_TO_CALLBACK_SECONDS = Histogram(
    "taskgate_task_to_callback_seconds",
    "Seconds from a task's webhook to the delivered callback of each of its results",
    ["context"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600),
)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    state = current_state()
    gauges = CollectorRegistry()
    gauges.register(OverviewCollector(lambda: _read(state)))
    return Response(generate_latest(registry) + generate_latest(gauges), mimetype=CONTENT_TYPE_LATEST)


def _read(state) -> Overview | None:
    try:
        with state.reader.connect() as connection:
            return read_overview(connection, state.overview_sources)
    except SQLAlchemyError as error:
        log.warning("overview metrics unavailable: %s", type(error).__name__)
        return None


class OverviewCollector:
    """Gauges read from the database when scraped."""

    def __init__(self, read):
        self.read = read

    def collect(self):
        overview = self.read()
        up = GaugeMetricFamily("taskgate_overview_up", "1 if the database could be read for these gauges")
        up.add_metric([], 0 if overview is None else 1)
        yield up
        if overview is None:
            return
        pending = GaugeMetricFamily(
            "taskgate_outbox_pending_messages", "Messages written but not yet published", labels=["outbox"]
        )
        oldest = GaugeMetricFamily(
            "taskgate_outbox_oldest_pending_seconds",
            "Age of the oldest unpublished message",
            labels=["outbox"],
        )
        for name, backlog in overview.outboxes.items():
            pending.add_metric([name], backlog.pending)
            oldest.add_metric([name], backlog.oldest_age_seconds(overview.read_at))
        yield pending
        yield oldest
        waiting = GaugeMetricFamily(
            "taskgate_tasks_waiting",
            "Tasks parked by their context until what they wait for happens, by reason",
            labels=["reason"],
        )
        for reason in WAITING_REASONS:
            waiting.add_metric([reason], overview.waiting_by_reason.get(reason, 0))
        yield waiting
        deliveries = GaugeMetricFamily(
            "taskgate_deliveries", "Result callbacks not delivered, by status", labels=["status"]
        )
        deliveries.add_metric(["pending"], overview.deliveries_pending)
        deliveries.add_metric(["failed"], overview.deliveries_failed)
        yield deliveries
        yield GaugeMetricFamily(
            "taskgate_dead_letters",
            "Dead-lettered messages kept and not replayed",
            value=overview.dead_letters,
        )
        beats = GaugeMetricFamily(
            "taskgate_process_last_beat_seconds",
            "Seconds since each worker process's last heartbeat",
            labels=["process", "role", "contexts"],
        )
        alive = GaugeMetricFamily("taskgate_processes_alive", "Worker processes with a fresh heartbeat")
        for process in overview.processes:
            beats.add_metric(
                [process.process_id, process.role, ",".join(process.contexts)], process.last_beat_seconds
            )
        alive.add_metric([], sum(process.alive for process in overview.processes))
        yield beats
        yield alive
