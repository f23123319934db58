"""The `taskgate` command: serve, worker, clients, db, send, demo."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, timedelta

import click
import requests
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import create_app
from gateway import deliveries as delivery_store
from gateway import tables as gateway_tables
from gateway.clients import ClientError, add_client, find_client, list_clients, rotate_secret
from gateway.config import Settings
from gateway.tables import outbox as gateway_outbox
from messaging import dead_letters
from messaging.db import is_unavailable, make_engine
from taskgate import database, logs, operations
from taskgate.memory import limit_malloc_arenas
from taskgate.registry import NAMES, overview_sources
from taskgate.runtime import Runtime
from taskgate.sender import post_task

log = logging.getLogger("taskgate")


@click.group()
@click.version_option(package_name="taskgate", prog_name="taskgate")
@click.pass_context
def main(ctx: click.Context) -> None:
    """taskgate: a task-integration gateway. Settings come from TASKGATE_* variables."""
    try:
        settings = Settings.from_env()
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    logs.configure(settings.log_level)
    ctx.obj = settings


def _engine(settings: Settings):
    """The command's engine, disposed of (connections closed) when the command ends."""
    database.ensure_sqlite_directory(settings.database_url)
    engine = make_engine(settings.database_url)
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def _require_schema(settings: Settings, engine, *, long_running: bool = False) -> None:
    """SQLite is migrated on the spot (by a child process if this one is long-running, see
    taskgate.database); a shared database must be migrated by `taskgate db upgrade`."""
    if settings.database_url.startswith("sqlite"):
        if database.is_current(engine):
            return
        if long_running:
            try:
                database.upgrade_apart(settings.database_url)
            except RuntimeError as error:
                raise click.ClickException(str(error)) from None
            if not database.is_current(engine):
                raise click.ClickException(
                    f"the database is at {database.current_revision(engine)} after migrating, "
                    f"not at {database.head()}"
                )
        else:
            database.upgrade(settings.database_url)
    elif not database.is_current(engine):
        raise click.ClickException("the database schema is not current: run `taskgate db upgrade` first")


def _wait_for_schema(settings: Settings, engine) -> None:
    """Like _require_schema, but a long-running process that starts while the database is away
    waits for it (SIGTERM ends the wait: see _stoppable_start) rather than giving up."""
    pause = 0.5
    while True:
        try:
            _require_schema(settings, engine, long_running=True)
            return
        except (SQLAlchemyError, database.MigrationUnavailable) as error:
            if isinstance(error, SQLAlchemyError) and not is_unavailable(error):
                raise
            log.warning("database unavailable (%s); retrying in %.1f s", type(error).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


class _StoppedWhileStarting(Exception):
    """SIGTERM or SIGINT arrived before the process had started."""


def _stop_while_starting(*_) -> None:
    raise _StoppedWhileStarting


def _stoppable_start() -> None:
    """From here until _stop_on_signals, SIGTERM or SIGINT ends the start-up (waiting for the
    database or the broker included) with _StoppedWhileStarting, which the command turns into a
    clean exit, instead of killing the process."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_while_starting)


def _stop_on_signals() -> threading.Event:
    """Once started: SIGTERM or SIGINT sets the event returned (replacing _stoppable_start's
    handlers, with no gap between them: call it inside the start-up's try)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _until_signalled(runtime: Runtime, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        if runtime.stopping.is_set():  # a loop crashed
            break


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.pass_obj
def serve(settings: Settings, host: str, port: int) -> None:
    """HTTP and every worker in one process."""
    _stoppable_start()
    limit_malloc_arenas()
    runtime = None
    try:
        engine = _engine(settings)
        _wait_for_schema(settings, engine)
        runtime = Runtime(settings, engine)
        runtime.start(NAMES, role="serve")
        app = create_app(
            settings,
            engine=engine,
            publish=runtime.relay(gateway_outbox).offer,
            overview_sources=overview_sources(),
        )
        from taskgate.http_server import http_server

        server = http_server(app, settings, host, port)
        http = threading.Thread(target=server.run, name="http", daemon=True)
        http.start()
        stop = _stop_on_signals()
    except _StoppedWhileStarting:
        _stopped_while_starting(runtime)
        return
    log.info(
        "taskgate serving on http://%s:%s (database %s, broker %s)",
        host,
        server.effective_port,
        engine.url.render_as_string(hide_password=True),
        settings.broker_url.split("@")[-1],
    )
    _until_signalled(runtime, stop)
    log.info("stopping")
    server.close()
    runtime.stop()
    log.info("stopped")


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
    _stoppable_start()
    limit_malloc_arenas()
    runtime = None
    try:
        engine = _engine(settings)
        _wait_for_schema(settings, engine)
        runtime = Runtime(settings, engine)
        runtime.start(dict.fromkeys(contexts))
        stop = _stop_on_signals()
    except _StoppedWhileStarting:
        _stopped_while_starting(runtime)
        return
    log.info("worker running: %s", ", ".join(contexts))
    _until_signalled(runtime, stop)
    runtime.stop()
    log.info("worker stopped")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON document.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Database, broker, worker processes (heartbeats) and backlogs; exits 1 unless all is well."""
    from taskgate.status import read_status, render

    current = read_status(settings, _engine(settings))
    if as_json:
        click.echo(json.dumps(current.to_json()))
    else:
        for line in render(current):
            click.echo(line)
    sys.exit(0 if current.healthy else 1)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION."""
    database.upgrade(settings.database_url, revision)
    click.echo(f"database upgraded to {revision}")


@main.group()
def clients() -> None:
    """Registered clients."""


@clients.command("add")
@click.argument("client_id")
@click.option("--callback-url", required=True)
@click.pass_obj
def clients_add(settings: Settings, client_id: str, callback_url: str) -> None:
    """Register CLIENT_ID; prints its credentials as JSON (the token is shown only once)."""
    engine = _engine(settings)
    _require_schema(settings, engine)
    try:
        with Session(engine) as session, session.begin():
            credentials = add_client(
                session, client_id, callback_url, allow_private=settings.allow_private_callbacks
            )
    except ClientError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(credentials))


@clients.command("list")
@click.pass_obj
def clients_list(settings: Settings) -> None:
    """Print the clients (without secrets) as JSON lines."""
    engine = _engine(settings)
    _require_schema(settings, engine)
    with Session(engine) as session:
        for client in list_clients(session):
            click.echo(json.dumps(client))


@clients.command("rotate-secret")
@click.argument("client_id")
@click.pass_obj
def clients_rotate_secret(settings: Settings, client_id: str) -> None:
    """Give CLIENT_ID a new signing secret; the old one keeps working for the grace period."""
    engine = _engine(settings)
    _require_schema(settings, engine)
    grace = timedelta(seconds=settings.secret_rotation_grace_seconds)
    try:
        with Session(engine) as session, session.begin():
            rotated = rotate_secret(session, client_id, grace)
    except ClientError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(rotated))


@main.group()
def deliveries() -> None:
    """Result callbacks: list them, replay dead ones."""


@deliveries.command("list")
@click.option("--client", "client_id", help="Only this client's deliveries.")
@click.option("--status", type=click.Choice(delivery_store.STATUSES))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def deliveries_list(settings: Settings, client_id: str | None, status: str | None, limit: int) -> None:
    """Print deliveries, newest first, as JSON lines."""
    engine = _engine(settings)
    _require_schema(settings, engine)
    with Session(engine) as session:
        for delivery in delivery_store.list_deliveries(
            session, client_id=client_id, status=status, limit=limit
        ):
            click.echo(json.dumps(delivery, default=str))


@deliveries.command("retry")
@click.option("--result-id", type=click.UUID, help="Replay this one delivery.")
@click.option("--client", "client_id", help="Replay this client's failed deliveries (with --failed).")
@click.option("--failed", is_flag=True, help="With --client: every failed delivery.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    help="With --client --failed: only deliveries created since this time (UTC unless given).",
)
@click.pass_obj
def deliveries_retry(settings: Settings, result_id, client_id, failed: bool, since) -> None:
    """Put dead deliveries back in line now, with a fresh schedule and the same webhook-id."""
    if (result_id is None) == (client_id is None) or (client_id and not failed) or (since and not client_id):
        raise click.UsageError("use --result-id ID, or --client C --failed [--since T]")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    engine = _engine(settings)
    _require_schema(settings, engine)
    with Session(engine) as session, session.begin():
        replayed = delivery_store.replay(session, result_id=result_id, client_id=client_id, since=since)
    if result_id is not None and not replayed:
        raise click.ClickException(
            f"no delivery {result_id} that could be replayed (unknown, or still pending)"
        )
    click.echo(json.dumps({"replayed": [str(result) for result in replayed]}))


@main.group("dead-letters")
def dead_letters_group() -> None:
    """Messages no worker could handle, with the reason: list them, replay them."""


@dead_letters_group.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Include those already replayed.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def dead_letters_list(settings: Settings, include_replayed: bool, limit: int) -> None:
    """Print dead letters, newest first, as JSON lines."""
    engine = _engine(settings)
    _require_schema(settings, engine)
    with Session(engine) as session:
        for row in dead_letters.list_dead_letters(
            session, gateway_tables.dead_letters, include_replayed=include_replayed, limit=limit
        ):
            click.echo(json.dumps(row, default=str))


@dead_letters_group.command("replay")
@click.argument("ids", nargs=-1, type=click.UUID)
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter not replayed yet.")
@click.pass_obj
def dead_letters_replay(settings: Settings, ids: tuple, replay_all: bool) -> None:
    """Publish dead letters (by id, or --all) again on their original exchange."""
    if bool(ids) == replay_all:
        raise click.UsageError("give dead letter ids, or --all")
    engine = _engine(settings)
    _require_schema(settings, engine)
    table = gateway_tables.dead_letters
    with Session(engine) as session:
        chosen = ids or [row["id"] for row in dead_letters.list_dead_letters(session, table, limit=10_000)]
    replayed, refused = [], {}
    for dead_letter_id in chosen:
        try:
            with Session(engine) as session, session.begin():
                # On PostgreSQL the outbox's trigger wakes the relay; SQLite's relay polls.
                dead_letters.replay(session, table, gateway_tables.outbox, dead_letter_id)
            replayed.append(str(dead_letter_id))
        except dead_letters.NotReplayable as error:
            refused[str(dead_letter_id)] = str(error)
    click.echo(json.dumps({"replayed": replayed, "refused": refused}))
    if refused and not replayed:
        sys.exit(1)


@main.group("contexts")
def contexts_group() -> None:
    """The bounded contexts."""


@contexts_group.command("rebuild-read-models")
@click.option(
    "--context",
    "names",
    multiple=True,
    type=click.Choice(operations.replicating_contexts()),
    help="Repeatable; every context with a customer replica when omitted.",
)
@click.pass_obj
def rebuild_read_models(settings: Settings, names: tuple[str, ...]) -> None:
    """Rebuild the contexts' customer replicas from the customers' current state."""
    engine = _engine(settings)
    _require_schema(settings, engine)
    outcome = operations.rebuild_read_models(engine, names or operations.replicating_contexts())
    click.echo(json.dumps(outcome))


@main.command()
@click.argument("client_id")
@click.argument("body", type=click.File("rb"), default="-")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="Where taskgate listens.")
@click.option(
    "--secret",
    envvar="TASKGATE_SIGNING_SECRET",
    help="The client's signing secret; read from the database when omitted.",
)
@click.pass_obj
def send(settings: Settings, client_id: str, body, url: str, secret: str | None) -> None:
    """Sign BODY (a task as JSON; - for stdin) as CLIENT_ID and POST it, as the client would."""
    raw = body.read()
    if secret is None:
        try:
            with Session(_engine(settings)) as session:
                client = find_client(session, client_id)
        except SQLAlchemyError as error:
            raise click.ClickException(
                f"cannot read client {client_id!r} from the database ({type(error).__name__}); pass --secret"
            ) from None
        if client is None:
            raise click.ClickException(f"no client {client_id!r}; pass --secret")
        secret = client.signing_secret
    try:
        response = post_task(url, client_id, secret, raw)
    except requests.RequestException as error:
        raise click.ClickException(f"no answer from taskgate at {url} ({type(error).__name__})") from None
    click.echo(f"{response.status_code} {response.reason}")
    click.echo(response.text)
    sys.exit(0 if response.ok else 1)


@main.command("check-order")
@click.option(
    "--callbacks",
    type=click.File("r"),
    help="The callbacks the client received, one JSON body (or its `data`) per line.",
)
@click.pass_obj
def check_order(settings: Settings, callbacks) -> None:
    """Check, once nothing is in flight, that no customer's task was overtaken by a later one."""
    from taskgate.order_check import check_order as check

    received = None
    if callbacks is not None:
        received = [json.loads(line) for line in callbacks if line.strip()]
        received = [body.get("data", body) for body in received]
    with _engine(settings).connect() as connection:
        report = check(connection, received)
    click.echo(report.summary())
    for problem in report.problems[:50]:
        click.echo(f"  {problem}")
    if not report.ok:
        raise SystemExit(1)


@main.command("check-visits")
@click.option(
    "--callbacks",
    type=click.File("r"),
    help="The callbacks the client received, one JSON body (or its `data`) per line.",
)
@click.pass_obj
def check_visits(settings: Settings, callbacks) -> None:
    """Check, once nothing is in flight, that every visit booked both sides or neither."""
    from taskgate.visit_check import check_visits as check

    received = None
    if callbacks is not None:
        received = [json.loads(line) for line in callbacks if line.strip()]
        received = [body.get("data", body) for body in received]
    with _engine(settings).connect() as connection:
        report = check(connection, received)
    click.echo(report.summary())
    for problem in report.problems[:50]:
        click.echo(f"  {problem}")
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.option("--port", default=9000, show_default=True, type=int)
@click.option("--secret", envvar="TASKGATE_SIGNING_SECRET", help="Verify signatures with this secret.")
def receive(port: int, secret: str | None) -> None:
    """Act as a client's callback endpoint on 127.0.0.1:PORT: print each result as it arrives."""
    from taskgate.receiver import make_server

    server = make_server(port, secret, lambda callback: click.echo(callback.line()))
    click.echo(f"listening on http://127.0.0.1:{port}/callbacks", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command()
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="Where taskgate listens.")
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds to wait per step.",
)
@click.pass_obj
def demo(settings: Settings, url: str, timeout: float) -> None:
    """A guided tour: play a client against the taskgate at URL (started here if none answers)."""
    from taskgate import demo as tour

    def register(client_id: str, callback_url: str) -> dict:
        engine = _engine(settings)
        _require_schema(settings, engine)
        with Session(engine) as session, session.begin():
            # The demo's own endpoint is on 127.0.0.1; the server decides whether it may call it.
            return add_client(session, client_id, callback_url, allow_private=True)

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the tour's own lines are the output
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = tour.run(url, register, click.echo, timeout=timeout, database=_shown(settings.database_url))
    except tour.DemoFailed as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)


def _stopped_while_starting(runtime: Runtime | None) -> None:
    """Stop whatever loops had started already (nothing they took is acked before its commit)."""
    log.info("stopped while starting")
    if runtime is not None:
        runtime.stop()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _shown(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)
