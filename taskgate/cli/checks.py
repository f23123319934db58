"""Checking a quiet deployment: `check-order`, `check-visits`."""

from __future__ import annotations

import json

import click

from gateway.config import Settings
from taskgate import database
from taskgate.cli.base import command_engine, main


@main.command("check-order")
@click.option(
    "--callbacks",
    type=click.File("r"),
    help="The callbacks the client received, one JSON body (or its `data`) per line.",
)
@click.pass_obj
def check_order(settings: Settings, callbacks) -> None:
    """Check, once nothing is in flight, that no customer's task was overtaken by a later one."""
    from taskgate.order_check import check_order

    _run(settings, callbacks, check_order)


@main.command("check-visits")
@click.option(
    "--callbacks",
    type=click.File("r"),
    help="The callbacks the client received, one JSON body (or its `data`) per line.",
)
@click.pass_obj
def check_visits(settings: Settings, callbacks) -> None:
    """Check, once nothing is in flight, that every visit booked both sides or neither."""
    from taskgate.visit_check import check_visits

    _run(settings, callbacks, check_visits)


def _run(settings: Settings, callbacks, check) -> None:
    """Run check over the database (and the callbacks file, if given), say what it found, and
    exit 1 if it found problems."""
    received = None if callbacks is None else _received(callbacks)
    engine = command_engine(settings)
    if not database.is_current(engine):
        raise click.ClickException("the database schema is not current: run `taskgate db upgrade` first")
    with engine.connect() as connection:
        report = check(connection, received)
    click.echo(report.summary())
    for problem in report.problems[:50]:
        click.echo(f"  {problem}")
    if not report.ok:
        raise SystemExit(1)


def _received(callbacks) -> list[dict]:
    """The callbacks file's bodies (their `data`, if they have one), one JSON object per line."""
    received = []
    for number, line in enumerate(callbacks, start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError as error:
            raise click.ClickException(f"--callbacks line {number} is not JSON: {error}") from None
        data = body.get("data", body) if isinstance(body, dict) else None
        if not isinstance(data, dict) or not {"result_id", "outcome", "result"} <= data.keys():
            raise click.ClickException(
                f"--callbacks line {number} is not a callback: a JSON object with result_id, outcome "
                "and result (or with them in its data)"
            )
        received.append(data)
    return received
