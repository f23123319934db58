"""The HTTP side of taskgate: webhook in, task reads out."""

from __future__ import annotations

import logging

from flask import Flask, request
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.accepting import Accepting
from gateway.backpressure import Backpressure
from gateway.clients import KnownClients
from gateway.config import Settings
from gateway.overview import Sources
from gateway.problems import Problem, problem_response
from gateway.state import BrokerProbe, GatewayState
from gateway.throttle import AuthFailures, Throttle
from messaging.db import is_unavailable, make_engine
from messaging.outbox import Publish

log = logging.getLogger(__name__)


def create_app(
    config: Settings | None = None,
    *,
    engine: Engine | None = None,
    publish: Publish | None = None,
    overview_sources: Sources | None = None,
) -> Flask:
    """The Flask app; settings from TASKGATE_* unless given. Builds no connection until a request.

    publish: who publishes the messages of the tasks accepted here once they are committed (see
    taskgate.runtime.webhook_relay); without it the workers' relays sweep them from the outbox a
    few seconds later.

    overview_sources: the outboxes and heartbeat table that /metrics (and the console) report on;
    by default the gateway's own outbox only.
    """
    settings = config or Settings.from_env()
    engine = engine or make_engine(settings.database_url)
    app = Flask(__name__)
    if settings.proxy_hops:
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    overview_sources = overview_sources or Sources()
    app.extensions["taskgate"] = GatewayState(
        settings=settings,
        engine=engine,
        publish=publish or (lambda rows: None),
        broker_probe=BrokerProbe(settings.broker_url),
        backpressure=Backpressure(
            engine,
            overview_sources.outboxes.values(),
            max_outbox=settings.max_outbox_backlog,
            max_undelivered=settings.max_undelivered_callbacks,
            max_unfinished=settings.max_unfinished_tasks,
            max_undelivered_per_client=settings.max_undelivered_per_client,
        ),
        clients=KnownClients(engine),
        auth_failures=AuthFailures(settings.auth_failures_per_source, settings.auth_failures_per_client),
        console_failures=Throttle(settings.auth_failures_per_source, "console-sign-in"),
        intake=Throttle(settings.client_rate_limit, "intake"),
        accepting=Accepting(engine),
        overview_sources=overview_sources,
    )

    from gateway import console, health, metrics, openapi, tasks, webhook

    for blueprint in (webhook.bp, tasks.bp, health.bp, metrics.bp, openapi.bp, console.bp):
        app.register_blueprint(blueprint)
    _register_error_handlers(app, settings)
    return app


def _register_error_handlers(app: Flask, settings: Settings) -> None:
    app.register_error_handler(Problem, problem_response)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        detail = error.description or error.name
        if error.code == 413:
            detail = f"the body is larger than {settings.max_body_bytes} bytes"
        # What the error says beside its page, e.g. a 405's Allow (which RFC 9110 requires).
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        return problem_response(Problem(error.code or 500, detail, headers=headers))

    @app.errorhandler(SQLAlchemyError)
    def storage_error(error: SQLAlchemyError):
        if is_unavailable(error):
            log.warning("storage unavailable: %s", error.__class__.__name__)
            headers = {"Retry-After": str(settings.retry_after_seconds)}
            return problem_response(Problem(503, "storage is unavailable", headers=headers))
        log.exception("storage error")
        return problem_response(Problem(500, "internal error"))

    @app.errorhandler(RecursionError)
    def nested_too_deeply(error: RecursionError):
        # Input nested deeper than a parser's recursion: bad input, worth a line, not a traceback.
        log.warning("request refused: nested too deeply (%s %s)", request.method, request.path)
        return problem_response(Problem(400, "the request is nested too deeply"))

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error")
        return problem_response(Problem(500, "internal error"))
