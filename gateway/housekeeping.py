"""Periodic clean-up the gateway worker does: forget webhook-ids older than any valid replay."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gateway.intake import forget_webhook_ids
from messaging.db import utcnow

log = logging.getLogger(__name__)


def run_housekeeping(
    engine: Engine, tolerance_seconds: int, stop: threading.Event, interval: float = 60.0
) -> None:
    # A request older than the tolerance is refused by its timestamp, so its webhook-id need not be
    # kept beyond twice the tolerance (allowing for clocks running ahead).
    keep = timedelta(seconds=2 * tolerance_seconds)
    while not stop.wait(interval):
        try:
            with Session(engine) as session, session.begin():
                forgotten = forget_webhook_ids(session, utcnow() - keep)
            if forgotten:
                log.debug("forgot %d webhook-ids", forgotten)
        except Exception:
            log.exception("housekeeping failed; trying again later")
