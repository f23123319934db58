"""Settings from TASKGATE_* environment variables, with defaults that run with no setup."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from messaging import broker

DEFAULT_NAMESPACE = uuid.UUID("8e9f8d72-6645-5ef3-93fb-5e5e41c1dae7")
DEFAULT_RETRY_SCHEDULE = (0, 5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str = "memory://"
    namespace: uuid.UUID = DEFAULT_NAMESPACE
    max_body_bytes: int = 64 * 1024
    signature_tolerance_seconds: int = 300
    callback_timeout_seconds: float = 10.0
    callback_retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    retry_after_seconds: int = 5
    log_level: str = "INFO"
    allow_private_callbacks: bool = False
    secret_rotation_grace_seconds: int = 86400
    callback_concurrency: int = 8
    callback_concurrency_per_client: int = 2
    heartbeat_seconds: float = 5.0
    max_outbox_backlog: int = 20_000
    max_undelivered_callbacks: int = 50_000
    # One client's share of undelivered callbacks: over it, that client's new tasks get 429.
    max_undelivered_per_client: int = 10_000
    # Optional: how many tasks a client may send, e.g. "100/second" (limits' notation); off if None.
    client_rate_limit: str | None = None
    # Failed authentication (bad signature, API token, operator token) allowed before 429.
    auth_failures_per_source: str = "120/minute"
    auth_failures_per_client: str = "300/minute"
    # Reverse proxies in front of the HTTP side whose X-Forwarded-For/-Proto are trusted (0: none),
    # so that the throttles see each client's own address and the console knows HTTPS.
    proxy_hops: int = 0
    max_unfinished_tasks: int = 10_000
    operator_token: str | None = None
    # Under load (its last batch held more than one item), how long a woken consumer or
    # dispatcher waits for more work before it starts the next batch: fewer, larger transactions
    # for at most this much latency per stage. A lone item never waits. (A relay never waits: what
    # is offered while it waits for a batch's confirms goes out in its next batch.)
    batch_linger_ms: int = 10
    # How long a context remembers a message it processed, to tell a redelivery (days; 0: for ever).
    inbox_keep_days: int = 7

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite") and self.broker_url.startswith("memory://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("TASKGATE_DATA_DIR", "data"))
        values = {
            "database_url": _database_url(env.get("TASKGATE_DATABASE_URL"))
            or f"sqlite:///{(data_dir / 'taskgate.db').absolute()}",
            "broker_url": _broker_url(env.get("TASKGATE_BROKER_URL")) or "memory://",
        }
        parsers = {
            "namespace": ("TASKGATE_NAMESPACE", uuid.UUID),
            "max_body_bytes": ("TASKGATE_MAX_BODY_BYTES", _positive_int),
            "signature_tolerance_seconds": ("TASKGATE_SIGNATURE_TOLERANCE_SECONDS", _positive_int),
            "callback_timeout_seconds": ("TASKGATE_CALLBACK_TIMEOUT_SECONDS", _positive_float),
            "callback_retry_schedule": ("TASKGATE_CALLBACK_RETRY_SCHEDULE", _seconds_list),
            "retry_after_seconds": ("TASKGATE_RETRY_AFTER_SECONDS", _non_negative_int),
            "log_level": ("TASKGATE_LOG_LEVEL", _log_level),
            "allow_private_callbacks": ("TASKGATE_ALLOW_PRIVATE_CALLBACKS", _flag),
            "secret_rotation_grace_seconds": ("TASKGATE_SECRET_ROTATION_GRACE_SECONDS", _up_to(100 * YEAR)),
            "callback_concurrency": ("TASKGATE_CALLBACK_CONCURRENCY", _positive_int),
            "callback_concurrency_per_client": ("TASKGATE_CALLBACK_CONCURRENCY_PER_CLIENT", _positive_int),
            "heartbeat_seconds": ("TASKGATE_HEARTBEAT_SECONDS", _positive_float),
            "max_outbox_backlog": ("TASKGATE_MAX_OUTBOX_BACKLOG", _non_negative_int),
            "max_undelivered_callbacks": ("TASKGATE_MAX_UNDELIVERED_CALLBACKS", _non_negative_int),
            "max_undelivered_per_client": ("TASKGATE_MAX_UNDELIVERED_PER_CLIENT", _non_negative_int),
            "client_rate_limit": ("TASKGATE_CLIENT_RATE_LIMIT", _rate),
            "auth_failures_per_source": ("TASKGATE_AUTH_FAILURES_PER_SOURCE", _rate),
            "auth_failures_per_client": ("TASKGATE_AUTH_FAILURES_PER_CLIENT", _rate),
            "proxy_hops": ("TASKGATE_PROXY_HOPS", _non_negative_int),
            "max_unfinished_tasks": ("TASKGATE_MAX_UNFINISHED_TASKS", _non_negative_int),
            "operator_token": ("TASKGATE_OPERATOR_TOKEN", str),
            "batch_linger_ms": ("TASKGATE_BATCH_LINGER_MS", _non_negative_int),
            "inbox_keep_days": ("TASKGATE_INBOX_KEEP_DAYS", _up_to(100 * 365)),
        }
        for field, (name, parse) in parsers.items():
            if env.get(name):
                try:
                    values[field] = parse(env[name])
                except ValueError as error:
                    raise ValueError(f"{name}: {error}") from None
        values.update(overrides)
        if "allow_private_callbacks" not in values:
            # The embedded defaults are a try-out on one machine, which calls back to itself; a
            # deployment on PostgreSQL or RabbitMQ refuses private addresses unless told otherwise.
            values["allow_private_callbacks"] = cls(**values).embedded
        return cls(**values)

    def sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and len(self.database_url) > len(prefix):
            return Path(self.database_url[len(prefix) :])
        return None


def _database_url(text: str | None) -> str | None:
    if not text:
        return None
    try:
        make_url(text).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:  # ValueError: a port not a number
        raise ValueError(f"TASKGATE_DATABASE_URL: not a database URL SQLAlchemy knows ({error})") from None
    return text


def _broker_url(text: str | None) -> str | None:
    if not text:
        return None
    try:
        broker.check_url(text)
    except ValueError as error:
        raise ValueError(f"TASKGATE_BROKER_URL: {error}") from None
    return text


def _flag(text: str) -> bool:
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("expected a positive integer")
    return value


# The longest wait a duration setting may ask for (the standard schedule's longest is a day).
MAX_SECONDS = 30 * 86400
YEAR = 365 * 86400


def _seconds_list(text: str) -> tuple[float, ...]:
    schedule = tuple(float(part) for part in text.split(",") if part.strip())
    if not schedule or not all(0 <= seconds <= MAX_SECONDS for seconds in schedule):  # nan fails too
        raise ValueError(f"expected comma-separated seconds, each from 0 to {MAX_SECONDS}")
    return schedule


def _up_to(maximum: int):
    """A parser of a whole number from 0 to maximum (a bound against overflowing dates)."""

    def parse(text: str) -> int:
        value = int(text)
        if not 0 <= value <= maximum:
            raise ValueError(f"expected a whole number from 0 to {maximum}")
        return value

    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_SECONDS:  # nan fails too
        raise ValueError(f"must be a number of seconds above 0, at most {MAX_SECONDS}")
    return value


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 (off) or more")
    return value


def _rate(text: str) -> str:
    """A rate in the notation of the limits package, e.g. "20/minute" or "5 per second"."""
    from limits import parse

    parse(text)  # raises ValueError when it is not one
    return text.strip()
