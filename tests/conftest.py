from __future__ import annotations

import pytest

from gateway.config import Settings
from tests import backends


@pytest.fixture(scope="session")
def postgres_database():
    db = backends.PostgresDatabase(backends.require(backends.POSTGRES_URL, "TASKGATE_TEST_POSTGRES_URL"))
    yield db
    db.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return backends.sqlite_url(tmp_path)
    db = request.getfixturevalue("postgres_database")
    db.empty()
    return db.url


@pytest.fixture(params=["memory", "rabbitmq"])
def broker_url(request):
    url = (
        "memory://"
        if request.param == "memory"
        else backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    )
    backends.empty_broker(url)
    return url


@pytest.fixture(params=["embedded", "services"])
def stack(request, tmp_path):
    """(database_url, broker_url): SQLite + in-process broker, or PostgreSQL + RabbitMQ."""
    if request.param == "embedded":
        database_url, broker_url = backends.sqlite_url(tmp_path), "memory://"
    else:
        broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
        db = request.getfixturevalue("postgres_database")
        db.empty()
        database_url = db.url
    backends.empty_broker(broker_url)
    return database_url, broker_url


def make_settings(database_url: str, broker_url: str = "memory://", **overrides) -> Settings:
    overrides.setdefault("allow_private_callbacks", True)  # the tests' endpoints are local or stubbed
    return Settings.from_env({}, database_url=database_url, broker_url=broker_url, **overrides)
