"""Operating taskgate: `db`, `clients`, `deliveries`, `dead-letters`, `contexts`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, timedelta

import click
from sqlalchemy.orm import Session

from gateway import deliveries as delivery_store
from gateway import tables as gateway_tables
from gateway.clients import ClientError, add_client, list_clients, rotate_secret
from gateway.config import Settings
from messaging import dead_letters
from taskgate import database, operations
from taskgate.cli.base import command_engine, main, require_schema


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from alembic.util.exc import CommandError  # not at import: serve and worker never load alembic

    try:
        database.upgrade(settings.database_url, revision)
    except CommandError as error:  # e.g. no such revision
        raise click.ClickException(str(error)) from None
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
    engine = command_engine(settings)
    require_schema(settings, engine)
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
    engine = command_engine(settings)
    require_schema(settings, engine)
    with Session(engine) as session:
        for client in list_clients(session):
            click.echo(json.dumps(client))


@clients.command("rotate-secret")
@click.argument("client_id")
@click.pass_obj
def clients_rotate_secret(settings: Settings, client_id: str) -> None:
    """Give CLIENT_ID a new signing secret; the old one keeps working for the grace period."""
    engine = command_engine(settings)
    require_schema(settings, engine)
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
    engine = command_engine(settings)
    require_schema(settings, engine)
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
    engine = command_engine(settings)
    require_schema(settings, engine)
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
    engine = command_engine(settings)
    require_schema(settings, engine)
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
    engine = command_engine(settings)
    require_schema(settings, engine)
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
    engine = command_engine(settings)
    require_schema(settings, engine)
    outcome = operations.rebuild_read_models(engine, names or operations.replicating_contexts())
    click.echo(json.dumps(outcome))
