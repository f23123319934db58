"""WSGI entry point: `gunicorn wsgi:app` (see gunicorn.conf.py)."""

from gateway import create_app
from taskgate.registry import overview_sources

app = create_app(overview_sources=overview_sources())
