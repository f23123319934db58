import runpy
from pathlib import Path

import pytest

from contexts.reservations import ttl as reservation_ttl
from gateway.config import DEFAULT_RETRY_SCHEDULE, Settings
from messaging.context import wait_timeout


def test_defaults_are_embedded(tmp_path):
    settings = Settings.from_env({"TASKGATE_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'taskgate.db'}"
    assert settings.broker_url == "memory://"
    assert settings.embedded
    assert settings.callback_retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert settings.max_body_bytes == 65536


@pytest.mark.parametrize(
    ("environment", "allowed"),
    [
        ({}, True),  # the embedded defaults: a try-out on one machine calls back to itself
        ({"TASKGATE_ALLOW_PRIVATE_CALLBACKS": "0"}, False),
        ({"TASKGATE_DATABASE_URL": "postgresql+psycopg://db/taskgate"}, False),
        ({"TASKGATE_BROKER_URL": "amqp://guest:guest@rabbit//"}, False),
        (
            {"TASKGATE_BROKER_URL": "amqp://guest:guest@rabbit//", "TASKGATE_ALLOW_PRIVATE_CALLBACKS": "1"},
            True,
        ),
    ],
)
def test_private_callback_addresses_are_allowed_by_default_only_when_embedded(tmp_path, environment, allowed):
    settings = Settings.from_env({"TASKGATE_DATA_DIR": str(tmp_path), **environment})
    assert settings.allow_private_callbacks is allowed


def test_the_default_for_private_callbacks_follows_the_urls_given_as_overrides_too(tmp_path):
    settings = Settings.from_env(
        {"TASKGATE_DATA_DIR": str(tmp_path)},
        database_url="postgresql+psycopg://db/taskgate",
        broker_url="amqp://guest:guest@rabbit//",
    )
    assert settings.allow_private_callbacks is False


def test_values_from_the_environment():
    settings = Settings.from_env(
        {
            "TASKGATE_DATABASE_URL": "postgresql+psycopg://db/taskgate",
            "TASKGATE_BROKER_URL": "amqp://broker//",
            "TASKGATE_CALLBACK_RETRY_SCHEDULE": "0, 1.5,10",
            "TASKGATE_MAX_BODY_BYTES": "1024",
            "TASKGATE_BATCH_LINGER_MS": "0",
        }
    )
    assert settings.database_url == "postgresql+psycopg://db/taskgate"
    assert settings.broker_url == "amqp://broker//"
    assert settings.callback_retry_schedule == (0.0, 1.5, 10.0)
    assert settings.max_body_bytes == 1024
    assert settings.batch_linger_ms == 0  # 0 is allowed: never wait for more work
    assert not settings.embedded


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASKGATE_CALLBACK_RETRY_SCHEDULE", "soon"),
        ("TASKGATE_MAX_BODY_BYTES", "big"),
        ("TASKGATE_NAMESPACE", "x"),
        ("TASKGATE_BATCH_LINGER_MS", "-5"),
        # Values that parse but make no sense: refused at start rather than failing every request
        # or callback (found by a hunt: a schedule with inf left attempts unrecorded).
        ("TASKGATE_MAX_BODY_BYTES", "0"),
        ("TASKGATE_SIGNATURE_TOLERANCE_SECONDS", "-1"),
        ("TASKGATE_CALLBACK_TIMEOUT_SECONDS", "0"),
        ("TASKGATE_CALLBACK_TIMEOUT_SECONDS", "nan"),
        ("TASKGATE_CALLBACK_RETRY_SCHEDULE", "0,inf"),
        ("TASKGATE_CALLBACK_RETRY_SCHEDULE", "0,nan"),
        ("TASKGATE_RETRY_AFTER_SECONDS", "-5"),
        ("TASKGATE_SECRET_ROTATION_GRACE_SECONDS", "-5"),
        ("TASKGATE_HEARTBEAT_SECONDS", "inf"),
        ("TASKGATE_HEARTBEAT_SECONDS", "1e12"),
        ("TASKGATE_LOG_LEVEL", "VERBOSE"),
    ],
)
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASKGATE_WAIT_TIMEOUT_SECONDS", "99999999999"),
        ("TASKGATE_RESERVATION_TTL_SECONDS", "10000000000000000"),
    ],
)
def test_a_contexts_duration_beyond_30_days_names_its_variable(name, value):
    """Beyond, the dates a sweeper computes overflow on every pass."""
    with pytest.raises(ValueError, match=name):
        (wait_timeout if name == "TASKGATE_WAIT_TIMEOUT_SECONDS" else reservation_ttl)({name: value})


GUNICORN_SETTINGS = Path(__file__).parents[2] / "gunicorn.conf.py"


@pytest.mark.parametrize("value", ["0", "-1", "four"])
@pytest.mark.parametrize("name", ["TASKGATE_HTTP_WORKERS", "TASKGATE_HTTP_THREADS"])
def test_gunicorn_stops_naming_a_size_that_is_not_a_positive_number(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=name):
        runpy.run_path(str(GUNICORN_SETTINGS))


def test_gunicorn_takes_its_sizes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TASKGATE_HTTP_WORKERS", "3")
    monkeypatch.setenv("TASKGATE_HTTP_THREADS", "2")
    settings = runpy.run_path(str(GUNICORN_SETTINGS))
    assert (settings["workers"], settings["threads"]) == (3, 2)


def test_a_long_rotation_grace_and_inbox_keep_are_taken():
    env = {"TASKGATE_SECRET_ROTATION_GRACE_SECONDS": str(60 * 86400), "TASKGATE_INBOX_KEEP_DAYS": "365"}
    settings = Settings.from_env(env)
    assert (settings.secret_rotation_grace_seconds, settings.inbox_keep_days) == (60 * 86400, 365)
