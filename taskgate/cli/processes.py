"""Running taskgate: `serve`, `worker`, `status`."""

from __future__ import annotations

import json
import sys
import threading

import click

from gateway import create_app
from gateway.config import Settings
from gateway.tables import outbox as gateway_outbox
from messaging import broker
from taskgate import tracing
from taskgate.cli.base import (
    StoppedWhileStarting,
    command_engine,
    log,
    main,
    stop_on_signals,
    stoppable_start,
    stopped_while_starting,
    until_signalled,
    wait_for_schema,
)
from taskgate.memory import limit_malloc_arenas
from taskgate.registry import NAMES, overview_sources, spec
from taskgate.runtime import Runtime


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.pass_obj
def serve(settings: Settings, host: str, port: int) -> None:
    """HTTP and every worker in one process."""
    check_context_settings(NAMES)
    stoppable_start()
    limit_malloc_arenas()
    runtime = None
    try:
        tracing.setup("serve")
        engine = command_engine(settings)
        tracing.instrument_engine(engine)
        wait_for_schema(settings, engine)
        runtime = Runtime(settings, engine)
        runtime.start(NAMES, role="serve")
        app = create_app(
            settings,
            engine=engine,
            publish=runtime.relay(gateway_outbox).offer,
            overview_sources=overview_sources(),
        )
        tracing.instrument_app(app)
        from taskgate.http_server import http_server

        try:
            server = http_server(app, settings, host, port)
        except OSError as error:  # the port is taken, say: stop the workers, whose heartbeat goes too
            runtime.stop()
            raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        http = threading.Thread(target=server.run, name="http", daemon=True)
        http.start()
        stop = stop_on_signals()
    except StoppedWhileStarting:
        stopped_while_starting(runtime)
        return
    log.info(
        "taskgate serving on http://%s:%s (database %s, broker %s)",
        host,
        server.effective_port,
        engine.url.render_as_string(hide_password=True),
        settings.broker_url.split("@")[-1],
    )
    crashed = until_signalled(runtime, stop)
    log.info("stopping")
    server.close()
    runtime.stop()
    log.info("stopped")
    if crashed:
        sys.exit(1)


@main.command()
@click.option(
    "--context",
    "contexts",
    multiple=True,
    required=True,
    type=click.Choice(NAMES),
    help="Repeatable: which contexts this process serves.",
)
@click.pass_obj
def worker(settings: Settings, contexts: tuple[str, ...]) -> None:
    """Consumers (and outbox relays) of the given contexts, without HTTP."""
    check_context_settings(contexts)
    if broker.is_volatile(settings.broker_url):
        log.warning(
            "no TASKGATE_BROKER_URL: the in-process broker is this process's own, which no other "
            "process reaches; workers apart from `taskgate serve` need RabbitMQ"
        )
    stoppable_start()
    limit_malloc_arenas()
    runtime = None
    try:
        tracing.setup("worker-" + "+".join(contexts))
        engine = command_engine(settings)
        tracing.instrument_engine(engine)
        wait_for_schema(settings, engine)
        runtime = Runtime(settings, engine)
        runtime.start(dict.fromkeys(contexts))
        stop = stop_on_signals()
    except StoppedWhileStarting:
        stopped_while_starting(runtime)
        return
    log.info("worker running: %s", ", ".join(contexts))
    crashed = until_signalled(runtime, stop)
    runtime.stop()
    log.info("worker stopped")
    if crashed:
        sys.exit(1)


def check_context_settings(contexts) -> None:
    """The contexts' own TASKGATE_* settings, read before anything starts: a bad one is a usage
    error naming its variable."""
    try:
        for name in contexts:
            spec(name)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON document.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Database, broker, worker processes (heartbeats) and backlogs; exits 1 unless all is well."""
    from taskgate.status import read_status, render

    current = read_status(settings, command_engine(settings))
    if as_json:
        click.echo(json.dumps(current.to_json()))
    else:
        for line in render(current):
            click.echo(line)
    sys.exit(0 if current.healthy else 1)
