"""WSGI entry point: `gunicorn wsgi:app` (see gunicorn.conf.py)."""

import sys

from gateway import create_app
from gateway.config import Settings
from messaging import broker
from messaging.db import make_engine
from taskgate import tracing
from taskgate.registry import overview_sources
from taskgate.runtime import webhook_relay

settings = Settings.from_env()
if broker.is_volatile(settings.broker_url):
    # What this process accepts would be published where no worker listens, and lost. Exit status
    # 3 is gunicorn's "worker failed to boot": it stops gunicorn rather than starting another.
    print(
        "TASKGATE_BROKER_URL: the HTTP side runs here apart from the workers, which the in-process"
        " broker (memory://) cannot reach: set it to RabbitMQ (amqp://...), or run `taskgate serve`",
        file=sys.stderr,
    )
    raise SystemExit(3)
tracing.setup("webhook")  # when the OTEL_* environment asks for it (docs/observability.md)
engine = make_engine(settings.database_url)
tracing.instrument_engine(engine)
# Each worker process publishes the tasks it accepts itself, right after their commit.
relay = webhook_relay(settings, engine)
app = create_app(settings, engine=engine, publish=relay.offer, overview_sources=overview_sources())
tracing.instrument_app(app)
