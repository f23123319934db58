"""WSGI entry point: `gunicorn wsgi:app` (see gunicorn.conf.py)."""

from gateway import create_app
from gateway.config import Settings
from messaging.db import make_engine
from taskgate import tracing
from taskgate.registry import overview_sources
from taskgate.runtime import webhook_relay

settings = Settings.from_env()
tracing.setup("webhook")  # when the OTEL_* environment asks for it (docs/observability.md)
engine = make_engine(settings.database_url)
tracing.instrument_engine(engine)
# Each worker process publishes the tasks it accepts itself, right after their commit (on RabbitMQ).
relay = webhook_relay(settings, engine)
app = create_app(settings, engine=engine, publish=relay and relay.offer, overview_sources=overview_sources())
tracing.instrument_app(app)
