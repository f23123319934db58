"""The command line as a newcomer meets it: a version, and one line (no traceback) when
taskgate or its database is not there."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from taskgate.cli import main
from taskgate.cli.base import until_signalled
from taskgate.tables import processes
from tests.e2e.helpers import BIN, environment, free_port
from tests.factories import upsert_task

TASK = json.dumps(upsert_task("T-1"))


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("taskgate, version ")


def test_send_with_no_server_says_so_in_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    arguments = ["send", "acme", "-", "--url", url, "--secret", "whsec_dGVzdA=="]
    result = CliRunner().invoke(main, arguments, input=TASK)
    assert result.exit_code == 1
    assert result.output == f"Error: no answer from taskgate at {url} (ConnectionError)\n"


def test_send_without_a_database_says_so_in_one_line(tmp_path):
    env = {"TASKGATE_DATABASE_URL": f"sqlite:///{tmp_path}/none.db"}
    result = CliRunner().invoke(main, ["send", "acme", "-"], input=TASK, env=env)
    assert result.exit_code == 1
    expected = "Error: cannot read client 'acme' from the database (OperationalError); pass --secret\n"
    assert result.output == expected


def test_migrating_prints_one_line_at_the_default_log_level(tmp_path):
    env = {
        **os.environ,
        "TASKGATE_DATABASE_URL": f"sqlite:///{tmp_path}/taskgate.db",
        "TASKGATE_LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [str(BIN / "taskgate"), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("database upgraded to head\n", "")


NOBODY_LISTENS = "postgresql+psycopg://taskgate@127.0.0.1:1/taskgate"


@pytest.mark.parametrize(
    "arguments",
    [
        ["clients", "list"],
        ["db", "upgrade"],
        ["deliveries", "list"],
        ["dead-letters", "list"],
        ["check-order"],
    ],
)
def test_a_command_whose_database_is_away_says_so_in_one_line(arguments):
    result = CliRunner().invoke(main, arguments, env={"TASKGATE_DATABASE_URL": NOBODY_LISTENS})
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: the database is unavailable: "), result.output
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize(
    "arguments",
    [
        ["serve", "--port", "70000"],
        ["receive", "--port", "70000"],
        ["send", "acme", "-", "--secret", "whsec_abc"],
        ["receive", "--secret", "whsec_abc"],
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it(arguments):
    result = CliRunner().invoke(main, arguments, input=TASK)
    assert result.exit_code == 2, result.output
    assert f"'{arguments[-2]}'" in result.output


@pytest.mark.parametrize(
    "line, why",
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "is not a callback"),
        ('{"data": {"x": 1}}', "is not a callback"),
    ],
)
@pytest.mark.parametrize("command", ["check-order", "check-visits"])
def test_a_callbacks_file_that_is_not_callbacks_says_which_line(tmp_path, command, line, why):
    callbacks = tmp_path / "callbacks.jsonl"
    callbacks.write_text('{"data": {"result_id": "r", "outcome": "o", "result": {}}}\n\n' + line + "\n")
    result = CliRunner().invoke(main, [command, "--callbacks", str(callbacks)], env=unmigrated(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: --callbacks line 3 {why}"), result.output


def unmigrated(tmp_path) -> dict[str, str]:
    """A database never migrated: a new data directory, as on a first install or another cwd."""
    return {"TASKGATE_DATABASE_URL": f"sqlite:///{tmp_path}/fresh/taskgate.db"}


@pytest.mark.parametrize("arguments", [["check-order"], ["check-visits"]])
def test_a_check_on_an_unmigrated_database_says_so_in_one_line(tmp_path, arguments):
    result = CliRunner().invoke(main, arguments, env=unmigrated(tmp_path))
    assert result.exit_code == 1
    assert result.output == "Error: the database schema is not current: run `taskgate db upgrade` first\n"


def test_status_of_an_unmigrated_database_is_not_healthy(tmp_path):
    result = CliRunner().invoke(main, ["status", "--json"], env=unmigrated(tmp_path))
    assert result.exit_code == 1
    assert json.loads(result.output)["database"].startswith("not migrated")


def test_upgrading_to_an_unknown_revision_says_so_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["db", "upgrade", "--revision", "nonsense"], env=unmigrated(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "nonsense" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "env",
    [
        {"TASKGATE_LOG_LEVEL": "VERBOSE"},
        {"TASKGATE_DATABASE_URL": "notaurl"},
        {"TASKGATE_DATABASE_URL": "postgresql+psycopg://u@h:abc/db"},
        {"TASKGATE_BROKER_URL": "rabbitmq://h//"},
        {"TASKGATE_BROKER_URL": "amqp://h:abc/"},
        {"TASKGATE_SECRET_ROTATION_GRACE_SECONDS": str(10**12)},
        {"TASKGATE_INBOX_KEEP_DAYS": str(10**9)},
    ],
    ids=lambda env: next(iter(env)),
)
def test_a_bad_setting_is_a_usage_error_naming_it(env):
    result = CliRunner().invoke(main, ["clients", "list"], env=env)
    assert result.exit_code == 2
    assert next(iter(env)) in result.output


def test_a_bad_context_setting_is_a_usage_error_before_anything_starts(tmp_path):
    env = {**unmigrated(tmp_path), "TASKGATE_WAIT_TIMEOUT_SECONDS": "an hour"}
    result = CliRunner().invoke(main, ["worker", "--context", "appointment"], env=env)
    assert result.exit_code == 2
    assert "TASKGATE_WAIT_TIMEOUT_SECONDS" in result.output
    assert not (tmp_path / "fresh").exists()  # refused before touching the database


def test_a_process_whose_loop_crashed_is_told_to_exit_non_zero():
    """`serve` and `worker` exit 1 when until_signalled says a loop crashed, so that a supervisor
    (systemd's Restart=on-failure, say) starts them again."""
    crashed = SimpleNamespace(stopping=threading.Event())
    crashed.stopping.set()
    assert until_signalled(crashed, threading.Event()) is True
    signalled = threading.Event()
    signalled.set()
    assert until_signalled(SimpleNamespace(stopping=threading.Event()), signalled) is False


def test_serve_on_a_busy_port_says_so_and_leaves_no_heartbeat_behind(tmp_path):
    """Else `taskgate status` would show a dead process for a day."""
    url = f"sqlite:///{tmp_path}/taskgate.db"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(BIN / "taskgate"), "serve", "--port", str(port)],
            env=environment(TASKGATE_DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(select(processes.c.process_id)).all() == []
    engine.dispose()
