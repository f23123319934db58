"""The command line as a newcomer meets it: a version, and one line (no traceback) when
taskgate or its database is not there."""

from __future__ import annotations

import json
import os
import subprocess

from click.testing import CliRunner

from taskgate.cli import main
from tests.e2e.helpers import BIN, free_port
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
