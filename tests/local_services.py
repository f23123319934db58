"""`make test`'s launcher: run the suite against PostgreSQL and RabbitMQ whenever they answer on
this machine, as CI does, instead of skipping their tests.

    python -m tests.local_services pytest [ARGS...]

A TASKGATE_TEST_* variable already set is left alone. Otherwise PostgreSQL is used if
postgres@127.0.0.1:5432 accepts a connection, and RabbitMQ if guest@127.0.0.1:5672 does (its vhost
`taskgate-test`, which the tests may purge, is created with rabbitmqctl when it is missing and
rabbitmqctl can). It says in one line what it found, then runs the command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/taskgate-test"
VHOST = "taskgate-test"


def postgres_answers(url: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def rabbitmq_answers(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def ensure_vhost() -> None:
    """Create the tests' vhost (guest may use it) if rabbitmqctl is here and allowed to."""
    if shutil.which("rabbitmqctl") is None:
        return
    for command in (["add_vhost", VHOST], ["set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *command], capture_output=True, timeout=60, check=False)


def main(command: list[str]) -> int:
    environ = dict(os.environ)
    found = []
    if "TASKGATE_TEST_POSTGRES_URL" not in environ and postgres_answers(POSTGRES_URL):
        environ["TASKGATE_TEST_POSTGRES_URL"] = POSTGRES_URL
        found.append("PostgreSQL")
    if "TASKGATE_TEST_RABBITMQ_URL" not in environ:
        if not rabbitmq_answers(RABBITMQ_URL):
            ensure_vhost()
        if rabbitmq_answers(RABBITMQ_URL):
            environ["TASKGATE_TEST_RABBITMQ_URL"] = RABBITMQ_URL
            found.append("RabbitMQ")
    given = [name for name in ("POSTGRES", "RABBITMQ") if f"TASKGATE_TEST_{name}_URL" in os.environ]
    if found:
        print(f"testing against the local {' and '.join(found)} too", flush=True)
    elif not given:
        print("no local PostgreSQL or RabbitMQ answers: their tests are skipped", flush=True)
    return subprocess.call(command, env=environ)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
