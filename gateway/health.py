"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import Blueprint
from sqlalchemy import exc, select

from gateway.state import current_state
from gateway.tables import clients
from messaging import broker
from messaging.db import read_only

log = logging.getLogger(__name__)

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
    """Whether the database answers with the gateway's tables: not a file SQLite made empty (a data
    directory other than the workers'), nor one that is not a database, nor one never migrated."""
    try:
        with read_only(engine).connect() as connection:
            connection.execute(select(clients.c.client_id).limit(1))
        return True
    except (exc.DBAPIError, exc.TimeoutError) as error:  # TimeoutError: no pooled connection free
        log.warning(
            "readiness: the database is not usable (%s)", type(getattr(error, "orig", error)).__name__
        )
        return False
