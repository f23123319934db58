"""Prometheus metrics of the gateway. Multi-process safe when PROMETHEUS_MULTIPROC_DIR is set
(as gunicorn with several workers needs)."""

from __future__ import annotations

import os

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)

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

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
