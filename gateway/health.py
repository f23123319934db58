"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import text

from gateway.state import current_state
from messaging import broker
from messaging.db import is_unavailable, read_only

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    state = current_state()
    checks = {
        "database": _database_ok(state.engine),
        "broker": broker.is_reachable(state.settings.broker_url),
    }
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {k: "ok" if v else "down" for k, v in checks.items()},
    }
    return body, 200 if ready else 503


def _database_ok(engine) -> bool:
    try:
        with read_only(engine).connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception as error:
        if is_unavailable(error):
            return False
        raise
