"""WSGI entry point: `gunicorn wsgi:app` (see gunicorn.conf.py)."""

import logging

from gateway import create_app
from gateway.config import Settings
from messaging import broker
from messaging.db import make_engine
from taskgate import tracing
from taskgate.registry import overview_sources
from taskgate.runtime import webhook_relay

settings = Settings.from_env()
tracing.setup("webhook")  # when the OTEL_* environment asks for it (docs/observability.md)
engine = make_engine(settings.database_url)
tracing.instrument_engine(engine)
if broker.is_volatile(settings.broker_url):
    # An in-process broker here would be this process's own, which no worker reads: the tasks stay
    # in the outbox instead, for `taskgate serve` on the same database to sweep and publish.
    relay = None
    logging.getLogger("taskgate").warning(
        "no TASKGATE_BROKER_URL: the tasks accepted here wait in the outbox for `taskgate serve` on "
        "the same database; workers apart need RabbitMQ"
    )
else:
    # Each worker process publishes the tasks it accepts itself, right after their commit.
    relay = webhook_relay(settings, engine)
app = create_app(settings, engine=engine, publish=relay and relay.offer, overview_sources=overview_sources())
tracing.instrument_app(app)
