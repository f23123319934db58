"""Rebuilding the contexts' customer replicas from the customers' current state."""

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from contexts.appointment.tables import replica as appointment_replica
from contexts.survey.tables import replica as survey_replica
from taskgate.cli import main
from taskgate.operations import rebuild_read_models
from tests.factories import survey_task, upsert_task, wait_for
from tests.integration.conftest import CALLBACK_URL


@pytest.fixture(autouse=True)
def endpoint(callbacks):
    callbacks.post(CALLBACK_URL, status=204)


def replicated(engine, replica):
    with Session(engine) as session:
        return session.execute(select(replica.customers.c.customer_id, replica.customers.c.email)).all()


def test_a_rebuilt_replica_holds_the_current_state_again(gateway, client):
    engine = gateway.extensions["taskgate"].engine
    client.submit(upsert_task("T-1", customer_id="C-1", email="old@example.com"))
    client.submit(upsert_task("T-2", customer_id="C-1", email="new@example.com"))
    client.submit(upsert_task("T-3", customer_id="C-2", email="c2@example.com"))
    client.wait_for_status("T-3", "succeeded")
    wait_for(
        lambda: (
            len(replicated(engine, survey_replica)) == 2 and len(replicated(engine, appointment_replica)) == 2
        )
    )

    outcome = rebuild_read_models(engine, ["survey"])
    assert outcome == {"cleared": {"survey": 2}, "published": 2}
    wait_for(
        lambda: (
            sorted(replicated(engine, survey_replica))
            == [("C-1", "new@example.com"), ("C-2", "c2@example.com")]
        )
    )
    # the other replica was not cleared, and the snapshot (same versions) changed nothing there
    assert len(replicated(engine, appointment_replica)) == 2

    client.submit(survey_task("S-1", customer_id="C-1"))
    client.wait_for_status("S-1", "succeeded")
    assert client.outcome("S-1")[1]["email"] == "new@example.com"


def test_the_cli_rebuilds_every_replica_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("taskgate.logs.configure", lambda level: None)  # keep pytest's log handlers
    result = CliRunner().invoke(main, ["contexts", "rebuild-read-models"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1]) == {
        "cleared": {"survey": 0, "appointment": 0, "maintenance": 0, "visits": 0},
        "published": 0,
    }
    unknown = CliRunner().invoke(main, ["contexts", "rebuild-read-models", "--context", "customers"])
    assert unknown.exit_code != 0
