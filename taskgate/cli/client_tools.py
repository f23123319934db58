"""Playing the client: `send`, `receive`, `demo`."""

from __future__ import annotations

import logging
import signal
import sys

import click
import requests
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import signatures
from gateway.clients import add_client, find_client
from gateway.config import Settings
from taskgate.cli.base import command_engine, interrupt, main, require_schema, shown
from taskgate.sender import post_task


def _signing_secret(_ctx, _param, value: str | None) -> str | None:
    """--secret, if given, as `clients add` prints one."""
    if value is not None and not signatures.is_secret(value):
        raise click.BadParameter("a signing secret is whsec_ followed by base64, as `clients add` prints it")
    return value


@main.command()
@click.argument("client_id")
@click.argument("body", type=click.File("rb"), default="-")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="Where taskgate listens.")
@click.option(
    "--secret",
    envvar="TASKGATE_SIGNING_SECRET",
    callback=_signing_secret,
    help="The client's signing secret; read from the database when omitted.",
)
@click.pass_obj
def send(settings: Settings, client_id: str, body, url: str, secret: str | None) -> None:
    """Sign BODY (a task as JSON; - for stdin) as CLIENT_ID and POST it, as the client would."""
    raw = body.read()
    if secret is None:
        try:
            with Session(command_engine(settings)) as session:
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


@main.command()
@click.option("--port", default=9000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--secret",
    envvar="TASKGATE_SIGNING_SECRET",
    callback=_signing_secret,
    help="Verify signatures with this secret.",
)
def receive(port: int, secret: str | None) -> None:
    """Act as a client's callback endpoint on 127.0.0.1:PORT: print each result as it arrives."""
    from taskgate.receiver import make_server

    try:
        server = make_server(port, secret, lambda callback: click.echo(callback.line()))
    except OSError as error:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
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
        engine = command_engine(settings)
        require_schema(settings, engine)
        with Session(engine) as session, session.begin():
            # The demo's own endpoint is on 127.0.0.1; the server decides whether it may call it.
            return add_client(session, client_id, callback_url, allow_private=True)

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the tour's own lines are the output
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        code = tour.run(url, register, click.echo, timeout=timeout, database=shown(settings.database_url))
    except tour.DemoFailed as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)
