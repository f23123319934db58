"""WSGI entry point: `gunicorn wsgi:app` (see gunicorn.conf.py)."""

from gateway import create_app
from gateway.config import Settings
from messaging.db import make_engine
from taskgate.registry import overview_sources
from taskgate.runtime import webhook_relay

settings = Settings.from_env()
engine = make_engine(settings.database_url)
# Each worker process publishes the tasks it accepts itself, right after their commit.
relay = webhook_relay(settings, engine)
app = create_app(settings, engine=engine, publish=relay.offer, overview_sources=overview_sources())
