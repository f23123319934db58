"""The `taskgate` command group and what its commands share: settings, the engine, the schema
check, stopping cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import threading
import time

import click
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Settings
from messaging.db import is_unavailable, make_engine
from taskgate import database, logs
from taskgate.runtime import Runtime

log = logging.getLogger("taskgate")


class Commands(click.Group):
    """taskgate's commands: one that meets its database away ends with one line, not a traceback
    (serve and worker wait for it instead)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as error:
            if not is_unavailable(error):
                raise
            why = str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__]
            raise click.ClickException(f"the database is unavailable: {why[0]}") from None


@click.group(cls=Commands)
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


def command_engine(settings: Settings):
    """The command's engine, disposed of (connections closed) when the command ends."""
    database.ensure_sqlite_directory(settings.database_url)
    engine = make_engine(settings.database_url)
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def require_schema(settings: Settings, engine, *, long_running: bool = False) -> None:
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


def wait_for_schema(settings: Settings, engine) -> None:
    """Like require_schema, but a long-running process that starts while the database is away
    waits for it (SIGTERM ends the wait: see stoppable_start) rather than giving up."""
    pause = 0.5
    while True:
        try:
            require_schema(settings, engine, long_running=True)
            return
        except (SQLAlchemyError, database.MigrationUnavailable) as error:
            if isinstance(error, SQLAlchemyError) and not is_unavailable(error):
                raise
            log.warning("database unavailable (%s); retrying in %.1f s", type(error).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


class StoppedWhileStarting(Exception):
    """SIGTERM or SIGINT arrived before the process had started."""


def _stop_while_starting(*_) -> None:
    raise StoppedWhileStarting


def stoppable_start() -> None:
    """From here until stop_on_signals, SIGTERM or SIGINT ends the start-up (waiting for the
    database or the broker included) with StoppedWhileStarting, which the command turns into a
    clean exit, instead of killing the process."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_while_starting)


def stop_on_signals() -> threading.Event:
    """Once started: SIGTERM or SIGINT sets the event returned (replacing stoppable_start's
    handlers, with no gap between them: call it inside the start-up's try)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def until_signalled(runtime: Runtime, stop: threading.Event) -> bool:
    """Wait for a stop signal; True if a loop crashed first (the process must then exit non-zero,
    for its supervisor to start it again)."""
    while not stop.wait(0.5):
        if runtime.stopping.is_set():  # a loop crashed
            return True
    return False


def stopped_while_starting(runtime: Runtime | None) -> None:
    """Stop whatever loops had started already (nothing they took is acked before its commit)."""
    log.info("stopped while starting")
    if runtime is not None:
        runtime.stop()


def interrupt(*_) -> None:
    raise KeyboardInterrupt


def shown(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)
