"""The benchmark's own PostgreSQL database and RabbitMQ vhost, made anew for every run so that
tables and queues start empty. Nothing else on the servers is touched."""

from __future__ import annotations

import dataclasses
import subprocess
from urllib.parse import urlsplit

from sqlalchemy import create_engine, make_url, text


@dataclasses.dataclass(frozen=True)
class Services:
    postgres_url: str  # the server, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    rabbitmq_url: str  # the server, e.g. amqp://guest:guest@127.0.0.1:5672
    database: str = "taskgate_bench"
    vhost: str = "taskgate-bench"

    @property
    def database_url(self) -> str:
        return make_url(self.postgres_url).set(database=self.database).render_as_string(hide_password=False)

    @property
    def broker_url(self) -> str:
        return f"{self.rabbitmq_url.rstrip('/')}/{self.vhost}"

    def fresh_database(self) -> str:
        """Drop and create the benchmark database; returns its URL."""
        engine = create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
                connection.execute(text(f'CREATE DATABASE "{self.database}"'))
        finally:
            engine.dispose()
        return self.database_url

    def analyze(self) -> None:
        """Planner statistics for the benchmark database, as a database in service has them
        (autovacuum gathers them within a minute or so, longer than a point runs)."""
        engine = create_engine(self.database_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text("ANALYZE"))
        finally:
            engine.dispose()

    def fresh_vhost(self) -> str:
        """Delete and create the benchmark vhost (needs rabbitmqctl); returns the broker URL."""
        user = urlsplit(self.rabbitmq_url).username or "guest"
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True, check=False)
        for args in (
            ["add_vhost", self.vhost],
            ["set_permissions", "-p", self.vhost, user, ".*", ".*", ".*"],
        ):
            subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, check=True, timeout=60)
        return self.broker_url
