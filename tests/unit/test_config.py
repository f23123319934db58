import pytest

from gateway.config import DEFAULT_RETRY_SCHEDULE, Settings


def test_defaults_are_embedded(tmp_path):
    settings = Settings.from_env({"TASKGATE_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'taskgate.db'}"
    assert settings.broker_url == "memory://"
    assert settings.embedded
    assert settings.callback_retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert settings.max_body_bytes == 65536


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
    ],
)
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
